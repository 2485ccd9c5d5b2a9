"""Materialize the whole demo graph without the UI and print what happened, per asset."""

from __future__ import annotations

import dagster as dg

STANDARD_METADATA = {
    "databricks_job_id",
    "databricks_run_id",
    "databricks_task_run_id",
    "databricks_run_url",
    "databricks_cluster_id",
    "setup_duration_s",
    "execution_duration_s",
}


def materialize_all(partition_key: str) -> int:
    from dbx_assets.demo.definitions import databricks_resource, defs, demo_assets, notebooks

    notebook_keys = {d.asset_key for d in notebooks.declarations}

    result = dg.materialize(
        [demo_assets],
        partition_key=partition_key,
        resources={"databricks": databricks_resource},
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    print(f"\nDagster run {result.run_id} for partition {partition_key}: {'SUCCESS' if result.success else 'FAILURE'}")
    materialized = {e.asset_key: e for e in result.get_asset_materialization_events()}
    all_keys = sorted(defs.resolve_all_asset_keys(), key=lambda k: k.to_user_string())
    for key in all_keys:
        event = materialized.get(key)
        if event is None:
            print(f"  FAILED        {key.to_user_string()}")
            continue
        meta = event.materialization.metadata
        url = meta.get("databricks_run_url")
        cluster = meta.get("databricks_cluster_id")
        print(
            f"  materialized  {key.to_user_string():<24} cluster={cluster.value if cluster else '-'}  "
            f"{url.value if url else ''}"
        )
        if key in notebook_keys:  # the notebook's exit value, as metadata entries
            exit_value = {k: v.value for k, v in meta.items() if k not in STANDARD_METADATA}
            if exit_value:
                print(f"{'':16}{exit_value}")
    for check in result.get_asset_check_evaluations():
        status = "passed" if check.passed else f"FAILED ({check.severity.value})"
        print(f"  check         {check.asset_key.to_user_string()}:{check.check_name} {status}")
    run_ids = {
        run_id.value
        for e in materialized.values()
        if isinstance(run_id := e.materialization.metadata.get("databricks_run_id"), dg.IntMetadataValue)
        and run_id.value is not None
    }
    databricks_run_id = max(run_ids) if run_ids else None
    if databricks_run_id:
        dbx_run = databricks_resource.get_client().jobs.get_run(databricks_run_id)
        clusters = {
            t.cluster_instance.cluster_id
            for t in dbx_run.tasks or []
            if t.cluster_instance and t.cluster_instance.cluster_id
        }
        print(
            f"Databricks run {databricks_run_id}: {dbx_run.state.result_state.value if dbx_run.state and dbx_run.state.result_state else '?'}, "
            f"{len(dbx_run.tasks or [])} task(s) on {len(clusters)} cluster(s) started: {', '.join(sorted(clusters))}"
        )
        print(f"Run page: {dbx_run.run_page_url}")
    return 0 if result.success else 1
