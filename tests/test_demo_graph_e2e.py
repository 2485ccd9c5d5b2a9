"""The demo graph end to end on the local workspace: notebooks → dbt models → report notebook,
one Databricks run on one cluster; dbt selections, checks and the incremental model."""

from __future__ import annotations

import csv
import datetime as dt
import io

import dagster as dg
import pytest

from dbx_assets.demo.data import orders_csv
from dbx_assets.demo.landing import day_dir, land_customers, land_day, upload
from dbx_assets.demo.definitions import demo_assets
from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.integration.resource import DatabricksResource
from workflow_support import materialization_metadata, step_failure_message

DAY1, DAY2, BAD_DAY = dt.date(2026, 11, 10), dt.date(2026, 11, 11), dt.date(2026, 11, 12)
K = dg.AssetKey


@pytest.fixture(scope="module")
def own_workspace(tmp_path_factory):
    """A workspace of its own: these tests rewrite the demo tables (one lands bad data on purpose),
    and the demo tables of the shared workspace belong to the UI test."""
    state_dir = tmp_path_factory.mktemp("demo_graph_workspace")
    ensure_running(state_dir)
    yield state_dir
    stop(state_dir)


@pytest.fixture(scope="module")
def resource(own_workspace):
    resource = DatabricksResource(local_state_dir=str(own_workspace), workspace_root="/Shared/tests/demo")
    land_customers(resource.get_client())
    for day in (DAY1, DAY2):
        land_day(resource.get_client(), day)
    return resource


@pytest.fixture(scope="module")
def workspace_client(resource):
    return resource.get_client()


def _materialize(resource, partition_key=None, selection=None, tags=None):
    return dg.materialize(
        [demo_assets],
        selection=selection,
        partition_key=partition_key,
        resources={"databricks": resource},
        raise_on_error=False,
        tags=tags,
    )


def test_full_graph_is_one_run_one_cluster_and_the_report_reads_dbt(resource, workspace_client):
    result = _materialize(resource, DAY1.isoformat())
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(demo_assets.keys)
    run_ids = {m.materialization.metadata["databricks_run_id"].value for m in result.get_asset_materialization_events()}
    assert len(run_ids) == 1
    run = workspace_client.jobs.get_run(run_ids.pop())
    assert sorted(t.task_key for t in run.tasks) == sorted(
        ["bronze_orders", "bronze_customers", "silver_orders", "dbt_build", "revenue_report"])
    assert len({t.cluster_instance.cluster_id for t in run.tasks}) == 1
    report = materialization_metadata(result, K("revenue_report"))
    assert report["report_period"] == f"{DAY1}..{DAY1}" and report["days"] == 1
    assert report["revenue"] > 0 and report["orders"] > 100
    fct = materialization_metadata(result, K("fct_daily_revenue"))
    assert fct["databricks_run_url"] == run.run_page_url
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    assert checks[(K("stg_orders"), "unique_stg_orders_order_id")].passed
    warn = next(c for (k, n), c in checks.items() if k == K("dim_customers") and n.startswith("accepted_values"))
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN  # CH customers: a warning only
    assert all(c.passed for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR)


def test_one_model_selection_builds_only_that_model(resource, workspace_client):
    result = _materialize(resource, DAY1.isoformat(), selection=[K("stg_customers")])
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {K("stg_customers")}
    run = workspace_client.jobs.get_run(materialization_metadata(result, K("stg_customers"))["databricks_run_id"])
    assert [t.task_key for t in run.tasks] == ["dbt_build"]
    (command,) = run.overriding_parameters.dbt_commands
    assert "fqn:dbx_assets_demo.staging.stg_customers" in command
    assert "stg_orders" not in command and "--indirect-selection empty" in command


def test_incremental_model_appends_the_next_day(resource):
    first = _materialize(resource, DAY2.isoformat(),
                         selection=[K("bronze_orders"), K("silver_orders"), K("stg_orders"), K("fct_daily_revenue")])
    assert first.success
    both_days = _materialize(
        resource,
        selection=[K("revenue_report")],
        tags={"dagster/asset_partition_range_start": DAY1.isoformat(),
              "dagster/asset_partition_range_end": DAY2.isoformat()},
    )
    assert both_days.success
    report = materialization_metadata(both_days, K("revenue_report"))
    assert report["days"] == 2  # day 1 kept from the first build, day 2 appended by the incremental run


def test_failing_dbt_test_fails_its_check_and_skips_downstream(resource, workspace_client):
    rows = list(csv.reader(io.StringIO(orders_csv(BAD_DAY).decode())))
    rows[1][4] = "lost"  # not an accepted status: an error-severity dbt test fails
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    upload(workspace_client, f"{day_dir(BAD_DAY)}/orders.csv", out.getvalue().encode())
    result = _materialize(resource, BAD_DAY.isoformat(),
                          selection=[K("bronze_orders"), K("silver_orders"), K("stg_orders"), K("fct_daily_revenue")])
    assert not result.success
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    status_check = next(c for (k, n), c in checks.items() if k == K("stg_orders") and n.startswith("accepted_values"))
    assert not status_check.passed and status_check.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert K("stg_orders") in materialized and K("fct_daily_revenue") not in materialized
    assert "fct_daily_revenue" in step_failure_message(result)
