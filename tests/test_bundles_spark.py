"""Bundles shaped like Databricks' templates, on real Spark through Dagster, each job in ONE Databricks
run per materialization (tests/data/bundles; the upstream templates themselves were run the same way by
hand, see the README):
- python_bundle (default_python): its .ipynb notebook imports the bundle's package through
  `sys.path.append("../src")` (it runs in its own folder, with the bundle's modules deployed next to
  it) and copies `samples.nyctaxi.trips`; its wheel task (built from the bundle's whl artifact, on the
  bundle's serverless environment) reads both tables; its pipeline_task, which dbx_assets does not
  run, fails with the reason while the others stay green.
- sql_bundle (default_sql): two SQL file tasks on the warehouse, a streaming table over
  `STREAM READ_FILES` of /databricks-datasets/retail-org/sales_orders/ and a materialized view over
  it, `{{name}}` parameters from the job's; a second run ingests nothing twice.
- dbt_bundle (dbt_sql): a Python file task landing a new batch of JSON orders, then dbt-databricks'
  `streaming_table` and `materialized_view` models over `read_files` (the sample orders and the
  landed batches; one more over `STREAM` of a Delta table), built, then refreshed after a second batch
  landed.
Row counts are read back through the SQL Statement Execution API on the workspace's warehouse."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from workflow_support import materialization_metadata, materialized, new_name, step_failure_message

from dbx_assets import DatabricksBundle, DatabricksResource, build_workflow_assets
from dbx_assets.local_workspace.runtime.sample_data import SALES_ORDERS, TRIPS

BUNDLES = Path(__file__).parent / "data" / "bundles"
BUNDLE = BUNDLES / "python_bundle"
AUGUST_2019_DAYS = 31  # the generated sales orders cover 90 days from 2019-08-01, every day of August


def _count(client, table: str) -> int:
    warehouse = next(iter(client.warehouses.list())).id
    response = client.statement_execution.execute_statement(
        statement=f"SELECT COUNT(*) FROM {table}", warehouse_id=warehouse
    )
    assert response.status and response.status.state and response.status.state.value == "SUCCEEDED", response
    return int(response.result.data_array[0][0])


def _resource(local_workspace, name: str) -> DatabricksResource:
    return DatabricksResource(
        host=local_workspace.host, token=local_workspace.token, workspace_root=f"/Shared/tests/{name}"
    )


def test_python_bundle_job_in_one_run(local_workspace, workspace_client):
    name = new_name()
    bundle = DatabricksBundle(BUNDLE, variables={"schema": name}, user_name="tester@example.com")
    result = dg.materialize(
        [build_workflow_assets(bundle.workflow("sample_job"))],
        resources={"databricks": _resource(local_workspace, name)},
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
    # the notebook imported the bundle's taxis module and copied the sample trips
    assert _count(workspace_client, f"main.{name}.bundle_trips") == TRIPS
    columns = [c.name for c in workspace_client.tables.get(f"main.{name}.bundle_trips").columns or []]
    assert columns[:3] == ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"], columns
    output = workspace_client.jobs.get_run_output(tasks["python_wheel_task"].run_id)
    assert "|  n|" in (output.logs or ""), output.logs  # the wheel showed the notebook's table
    # on another cluster (serverless) than the notebook's, the sample table has its columns too
    assert f"taxi trips: {TRIPS}" in (output.logs or ""), output.logs


def test_sql_bundle_streaming_table_and_materialized_view(local_workspace, workspace_client):
    name = new_name()
    bundle = DatabricksBundle(BUNDLES / "sql_bundle", variables={"schema": name}, user_name="tester@example.com")
    assets = build_workflow_assets(bundle.workflow("sql_bundle_sql_job"))
    resources = {"databricks": _resource(local_workspace, name)}
    keys = {dg.AssetKey("orders_raw"), dg.AssetKey("orders_daily")}

    first = dg.materialize([assets], resources=resources, raise_on_error=False)
    assert first.success and materialized(first) == keys
    assert len({materialization_metadata(first, k)["databricks_run_id"] for k in keys}) == 1
    assert _count(workspace_client, f"main.{name}.orders_raw") == SALES_ORDERS
    assert _count(workspace_client, f"main.{name}.orders_daily") == AUGUST_2019_DAYS  # dev: August only

    second = dg.materialize([assets], resources=resources, raise_on_error=False)
    assert second.success and materialized(second) == keys
    # the refresh found no new file: nothing ingested twice
    assert _count(workspace_client, f"main.{name}.orders_raw") == SALES_ORDERS


@pytest.fixture(scope="module")
def dbt_bundle(tmp_path_factory, local_workspace):
    from dbx_assets.integration.dbt.manifest import prepare

    name = new_name()
    project = tmp_path_factory.mktemp("dbt") / "dbt_bundle"
    shutil.copytree(BUNDLES / "dbt_bundle", project, ignore=shutil.ignore_patterns("target", "logs"))
    with pytest.MonkeyPatch.context() as mp:  # the template's profile reads them (dbt parse only)
        mp.setenv("DBT_HOST", local_workspace.host)
        mp.setenv("DBT_ACCESS_TOKEN", local_workspace.token)
        prepare(project, target="dev", profiles_dir=project / "dbt_profiles", dbt_vars={"dev_schema": name})
    # the schema is the user's short name, as `${workspace.current_user.short_name}` in the task's --vars
    return name, DatabricksBundle(project, user_name=f"{name}@example.com")


def test_dbt_bundle_streaming_tables_and_materialized_views_built_then_refreshed(
    dbt_bundle, local_workspace, workspace_client
):
    name, bundle = dbt_bundle
    assets = build_workflow_assets(bundle.workflow())
    resources = {"databricks": _resource(local_workspace, name)}
    models = ("orders_raw", "orders_daily", "web_orders", "web_orders_daily", "web_orders_stream")
    keys = {dg.AssetKey(k) for k in ("land", *models)}

    def table(t: str) -> str:
        return f"main.{name}.{t}"

    first = dg.materialize([assets], resources=resources, raise_on_error=False)
    assert first.success and materialized(first) == keys
    assert len({materialization_metadata(first, k)["databricks_run_id"] for k in keys}) == 1
    checks = {e.asset_check_key.name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    assert _count(workspace_client, table("orders_raw")) == SALES_ORDERS
    assert _count(workspace_client, table("orders_daily")) == AUGUST_2019_DAYS
    assert _count(workspace_client, table("web_orders")) == 3  # batch 1
    assert _count(workspace_client, table("web_orders_daily")) == 1
    assert _count(workspace_client, table("web_orders_stream")) == 3  # a streaming table over a Delta table

    second = dg.materialize([assets], resources=resources, raise_on_error=False)  # lands batch 2, refreshes
    assert second.success and materialized(second) == keys
    assert _count(workspace_client, table("web_orders")) == 6  # both batches, each once
    assert _count(workspace_client, table("web_orders_daily")) == 2  # batch 2 is a day later
    assert _count(workspace_client, table("web_orders_stream")) == 6
    assert _count(workspace_client, table("orders_raw")) == SALES_ORDERS  # no new sample file: unchanged
