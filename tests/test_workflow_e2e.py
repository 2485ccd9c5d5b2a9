"""Notebook assets end to end: Dagster → databricks-sdk → the local workspace over HTTP → local Spark."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg

from workflow_support import (
    ENV_NAME,
    build_test_job,
    flag_dbfs_path,
    key,
    make_assets,
    make_resource,
    make_workflow,
    materialization_metadata,
    new_name,
    step_failure_message,
)
from dbx_assets.integration.workflow.assets import build_workflow_assets

TESTS_DIR = Path(__file__).parent


def _materialize(name, state_dir, selection=None, slow_seconds=1, instance=None, **kwargs):
    assets = make_assets(name, slow_seconds, partitioned=kwargs.pop("partitioned", False))
    return dg.materialize(
        [assets],
        selection=selection,
        resources={"databricks": make_resource(state_dir, name)},
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def _job_runs(client, name):
    job = next(iter(client.jobs.list(name=name)))
    return job.job_id, list(client.jobs.list_runs(job_id=job.job_id))


def test_full_graph_is_one_run_on_one_cluster(local_workspace, workspace_client):
    name = new_name()
    result = _materialize(name, local_workspace.state_dir)
    assert result.success
    metas = {a: materialization_metadata(result, key(name, a)) for a in ("source", "flaky", "sink", "slow")}
    run_ids = {m["databricks_run_id"] for m in metas.values()}
    assert len(run_ids) == 1
    run = workspace_client.jobs.get_run(run_ids.pop())
    clusters = {t.cluster_instance.cluster_id for t in run.tasks}
    assert len(run.tasks) == 4 and len(clusters) == 1
    assert {m["databricks_cluster_id"] for m in metas.values()} == clusters
    # exit values: a JSON object becomes entries, plain text stays text
    assert metas["source"]["rows"] == 10
    assert metas["flaky"]["notebook_exit_value"] == "plain text result"
    assert "notebook_exit_value" not in metas["sink"]
    assert metas["source"]["databricks_run_url"] == run.run_page_url
    assert all(m["databricks_task_run_id"] != m["databricks_run_id"] for m in metas.values())
    assert metas["source"]["execution_duration_s"] > 0
    _, runs = _job_runs(workspace_client, name)
    assert len(runs) == 1


def test_subset_runs_only_selected_tasks(local_workspace, workspace_client):
    name = new_name()
    result = _materialize(name, local_workspace.state_dir, selection=[key(name, "source"), key(name, "slow")])
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {key(name, "source"), key(name, "slow")}
    run = workspace_client.jobs.get_run(materialization_metadata(result, key(name, "slow"))["databricks_run_id"])
    assert sorted(t.task_key for t in run.tasks) == [f"{name}__slow", f"{name}__source"]


def test_failure_fails_its_asset_and_reexecution_repairs_the_same_run(local_workspace, workspace_client, tmp_path, monkeypatch):
    name = new_name()
    workspace_client.dbfs.upload(flag_dbfs_path(name), io.BytesIO(b"fail"), overwrite=True)
    monkeypatch.setenv(ENV_NAME, name)
    monkeypatch.setenv("DBX_LOCAL_STATE_DIR", str(local_workspace.state_dir))
    job = dg.reconstructable(build_test_job)
    in_process = {"execution": {"config": {"in_process": {}}}}  # env vars above must reach the step
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.execute_job(job, instance=instance, run_config=in_process, raise_on_error=False) as first:
            assert not first.success
            materialized = {e.asset_key for e in first.get_asset_materialization_events()}
            assert materialized == {key(name, "source"), key(name, "slow")}  # siblings stay materialized
            message = step_failure_message(first)
            assert "flag file" in message and "says fail" in message  # the notebook's own error
            assert "#job/" in message  # and the run URL
            source_meta = materialization_metadata(first, key(name, "source"))
        databricks_run_id = source_meta["databricks_run_id"]
        run = workspace_client.jobs.get_run(databricks_run_id)
        states = {t.task_key.split("__")[1]: t.state.result_state.value for t in run.tasks}
        assert states == {"source": "SUCCESS", "flaky": "FAILED", "sink": "UPSTREAM_FAILED", "slow": "SUCCESS"}

        workspace_client.dbfs.delete(flag_dbfs_path(name))
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        with dg.execute_job(job, instance=instance, run_config=in_process, reexecution_options=options,
                            raise_on_error=False) as second:
            assert second.success
            materialized = {e.asset_key for e in second.get_asset_materialization_events()}
            assert materialized == {key(name, "flaky"), key(name, "sink")}
            assert materialization_metadata(second, key(name, "flaky"))["databricks_run_id"] == databricks_run_id
    repaired = workspace_client.jobs.get_run(databricks_run_id, include_history=True)
    assert [h.type.value for h in repaired.repair_history] == ["ORIGINAL", "REPAIR"]
    _, runs = _job_runs(workspace_client, name)
    assert len(runs) == 1  # repaired, not rerun
    source_runs = {t.run_id for t in repaired.tasks if t.task_key == f"{name}__source"}
    assert source_runs == {source_meta["databricks_task_run_id"]}  # the successful task was not rerun


_SUBPROCESS_MATERIALIZE = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from workflow_support import key, make_assets, make_resource
    name, state_dir, run_id, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    assets = make_assets(name, seconds)
    job = dg.Definitions(assets=[assets], resources={"databricks": make_resource(state_dir, name)}).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(run_id=run_id, asset_selection=[key(name, "slow")], raise_on_error=False)
    print("SUCCESS" if result.success else "FAILURE", flush=True)
    """
)


def _start_materialize_subprocess(name, state_dir, run_id, seconds):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", _SUBPROCESS_MATERIALIZE, name, str(state_dir), run_id, str(seconds)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _wait_for_running_task(client, name, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(client.jobs.list(name=name))
        if jobs:
            runs = list(client.jobs.list_runs(job_id=jobs[0].job_id))
            for run in runs:
                full = client.jobs.get_run(run.run_id)
                if any(t.state and t.state.life_cycle_state.value == "RUNNING" and t.start_time for t in full.tasks or []):
                    return full
        time.sleep(0.5)
    raise AssertionError(f"no running task for {name} within {timeout}s")


def test_interrupting_the_step_cancels_the_databricks_run(local_workspace, workspace_client):
    name = new_name()
    proc = _start_materialize_subprocess(name, local_workspace.state_dir, str(uuid.uuid4()), 600)
    try:
        run = _wait_for_running_task(workspace_client, name)
        time.sleep(1)  # the notebook is inside its sleep
        os.killpg(proc.pid, signal.SIGINT)  # what terminating a Dagster run delivers to its step
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = workspace_client.jobs.get_run(run.run_id).state
            if state.life_cycle_state.value == "TERMINATED":
                break
            time.sleep(0.25)
        assert state.result_state.value == "CANCELED", state
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_killed_step_reattaches_to_its_run(local_workspace, workspace_client):
    name = new_name()
    run_id = str(uuid.uuid4())
    proc = _start_materialize_subprocess(name, local_workspace.state_dir, run_id, 8)
    run = _wait_for_running_task(workspace_client, name)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to cancel: the Databricks run keeps going
    proc.wait(timeout=30)
    again = _start_materialize_subprocess(name, local_workspace.state_dir, run_id, 8)
    out, _ = again.communicate(timeout=300)
    assert out.strip().endswith("SUCCESS"), out[-3000:]
    _, runs = _job_runs(workspace_client, name)
    assert [r.run_id for r in runs] == [run.run_id]  # the restarted step reattached; no second run
    assert "Reattached to Databricks run" in out


def test_partition_key_and_range_reach_the_notebook(local_workspace):
    name = new_name()
    result = _materialize(name, local_workspace.state_dir, selection=[key(name, "source")], partitioned=True,
                          partition_key="2026-11-05")
    assert result.success
    meta = materialization_metadata(result, key(name, "source"))
    assert (meta["partition_key"], meta["partition_start"], meta["partition_end"]) == ("2026-11-05",) * 3

    assets = make_assets(name, partitioned=True)
    job = dg.Definitions(
        assets=[assets], resources={"databricks": make_resource(local_workspace.state_dir, name)}
    ).resolve_implicit_global_asset_job_def()
    ranged = job.execute_in_process(
        asset_selection=[key(name, "source")],
        tags={"dagster/asset_partition_range_start": "2026-11-02", "dagster/asset_partition_range_end": "2026-11-04"},
    )
    meta = materialization_metadata(ranged, key(name, "source"))
    assert (meta["partition_key"], meta["partition_start"], meta["partition_end"]) == ("", "2026-11-02", "2026-11-04")


def test_all_purpose_mode_deletes_its_cluster_even_on_failure(local_workspace, workspace_client):
    name = new_name()
    workspace_client.dbfs.upload(flag_dbfs_path(name), io.BytesIO(b"fail"), overwrite=True)
    before = {c.cluster_id for c in workspace_client.clusters.list()}
    assets = build_workflow_assets(make_workflow(name, compute="all_purpose"))
    result = dg.materialize([assets], resources={"databricks": make_resource(local_workspace.state_dir, name)},
                            raise_on_error=False)
    assert not result.success  # flaky failed ...
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {key(name, "source"), key(name, "slow")}
    meta = materialization_metadata(result, key(name, "source"))
    run = workspace_client.jobs.get_run(meta["databricks_run_id"])
    assert run.run_type.value == "SUBMIT_RUN"
    assert {t.existing_cluster_id for t in run.tasks} == {meta["databricks_cluster_id"]}
    # ... and the all-purpose cluster it ran on is gone anyway
    assert {c.cluster_id for c in workspace_client.clusters.list()} == before


def test_a_missing_task_library_fails_the_asset_with_the_package_named(local_workspace):
    from dbx_assets.integration.sources.notebook import NotebookAsset
    from dbx_assets.integration.workflow.assets import Workflow
    from workflow_support import NOTEBOOKS

    name = new_name()
    workflow = Workflow(name=name, notebooks_dir=NOTEBOOKS, notebooks=[
        NotebookAsset(key=f"{name}/needs_lib", notebook="sink.py", libraries=["definitely-not-installed-pkg==1.0"]),
    ])
    result = dg.materialize([build_workflow_assets(workflow)], raise_on_error=False,
                            resources={"databricks": make_resource(local_workspace.state_dir, name)})
    assert not result.success
    message = step_failure_message(result)
    assert "definitely-not-installed-pkg" in message and "Library installation failed" in message
