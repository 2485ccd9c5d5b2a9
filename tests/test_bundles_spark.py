"""A bundle's job on real Spark, through Dagster: tests/data/bundles/python_bundle (shaped like
Databricks' default_python template) loaded with DatabricksBundle and materialized on the local
workspace in ONE Databricks run: its .ipynb notebook task writes a table, its wheel task (built from
the bundle's whl artifact, on the bundle's serverless environment) reads it, and its pipeline_task,
which dbx_assets does not run, fails with the reason while the others stay green. And the
dbt_sql-shaped bundle: a Python file task, then its dbt task's models as dbt assets, in one run."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
from workflow_support import materialization_metadata, materialized, new_name, step_failure_message

from dbx_assets import DatabricksBundle, DatabricksResource, build_workflow_assets

BUNDLES = Path(__file__).parent / "data" / "bundles"
BUNDLE = BUNDLES / "python_bundle"


def test_python_bundle_job_in_one_run(local_workspace, workspace_client):
    name = new_name()
    bundle = DatabricksBundle(BUNDLE, variables={"schema": name}, user_name="tester@example.com")
    resource = DatabricksResource(
        host=local_workspace.host, token=local_workspace.token, workspace_root=f"/Shared/tests/{name}"
    )
    result = dg.materialize(
        [build_workflow_assets(bundle.workflow("sample_job"))],
        resources={"databricks": resource},
        raise_on_error=False,
    )

    notebook, wheel, pipeline = (dg.AssetKey(k) for k in ("notebook_task", "python_wheel_task", "refresh_pipeline"))
    assert materialized(result) == {notebook, wheel}
    message = step_failure_message(result)
    assert "refresh_pipeline" in message and "pipeline_task" in message and "not run by dbx_assets" in message, message
    meta = {k: materialization_metadata(result, k) for k in (notebook, wheel)}
    assert len({m["databricks_run_id"] for m in meta.values()}) == 1  # one Databricks run

    run = workspace_client.jobs.get_run(meta[notebook]["databricks_run_id"])
    tasks = {t.task_key: t for t in run.tasks}
    assert set(tasks) == {"notebook_task", "python_wheel_task", "refresh_pipeline"}
    # the bundle job's parameters are the job's, from the bundle's variables; they reach the notebook as widgets
    params = {p.name: p.value if p.value is not None else p.default for p in run.job_parameters}
    assert (params["catalog"], params["schema"]) == ("main", name)
    output = workspace_client.jobs.get_run_output(tasks["python_wheel_task"].run_id)
    assert "|  n|" in (output.logs or ""), output.logs  # the wheel showed the notebook's table


def test_dbt_bundle_job_in_one_run(local_workspace, tmp_path):
    from dbx_assets.integration.dbt.manifest import prepare

    name = new_name()
    project = tmp_path / "dbt_bundle"
    shutil.copytree(BUNDLES / "dbt_bundle", project, ignore=shutil.ignore_patterns("target", "logs"))
    prepare(project, target="dev", profiles_dir=project / "dbt_profiles")
    resource = DatabricksResource(
        host=local_workspace.host, token=local_workspace.token, workspace_root=f"/Shared/tests/{name}"
    )
    result = dg.materialize(
        [build_workflow_assets(DatabricksBundle(project).workflow())], resources={"databricks": resource}
    )
    keys = {dg.AssetKey(k) for k in ("land", "orders_raw", "orders_daily")}
    assert materialized(result) == keys
    assert len({materialization_metadata(result, k)["databricks_run_id"] for k in keys}) == 1
