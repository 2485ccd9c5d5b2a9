"""The demo graph end to end on real Spark and real dbt: notebooks → dbt models (on the
workspace's SQL warehouse) → report notebook, one Databricks run on one cluster; dbt selections,
checks. Three Databricks runs in all (the incremental model's day-by-day append is tested on real
dbt in test_dbt_specs.py, and the newcomer test runs a range of days and then one more).

Each test has a workspace of its own (a server process; Spark starts per run): they land data
and rewrite the demo tables (one lands bad data on purpose), so neither may see the other's."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io

import dagster as dg
import pytest
from workflow_support import materialization_metadata, step_failure_message

from dbx_assets.demo.data import orders_csv
from dbx_assets.demo.definitions import CATALOG, demo_assets
from dbx_assets.demo.landing import CRM_API_KEY, SECRET_SCOPE, day_dir, land_customers, land_day, upload
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.local_workspace.launcher import ensure_running, stop

DAY1, DAY2, BAD_DAY = dt.date(2026, 11, 10), dt.date(2026, 11, 11), dt.date(2026, 11, 12)
K = dg.AssetKey
ORDERS_CHAIN = [K("bronze_orders"), K("bronze_customers"), K("silver_orders"), K("stg_orders"), K("fct_daily_revenue")]


@pytest.fixture
def resource(tmp_path, monkeypatch):
    """A local workspace served over TLS as a team's shared dev server would be, and addressed only
    by DATABRICKS_HOST (https) and DATABRICKS_TOKEN: the way a real workspace is."""
    state_dir = tmp_path / "demo_workspace"
    conn = ensure_running(state_dir, tls=True)
    monkeypatch.setenv("DATABRICKS_HOST", conn.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", conn.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(conn.ca_cert))
    try:
        # The demo's own catalog setting: its dev deployment writes (and dbt reads) dbx_demo_dev.
        resource = DatabricksResource(workspace_root="/Shared/tests/demo", catalog=CATALOG)
        assert conn.host.startswith("https://") and resource.get_client().config.host == conn.host
        land_customers(resource.get_client())
        yield resource
    finally:
        stop(state_dir)


def _materialize(resource, partition_key=None, selection=None, tags=None):
    return dg.materialize(
        [demo_assets],
        selection=selection,
        partition_key=partition_key,
        resources={"databricks": resource},
        raise_on_error=False,
        tags=tags,
    )


def test_full_graph_then_a_narrowed_dbt_selection(resource):
    client = resource.get_client()
    for day in (DAY1, DAY2):
        land_day(client, day)

    # Day 1, everything: one run on one cluster; the report notebook reads what dbt built.
    result = _materialize(resource, DAY1.isoformat())
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(demo_assets.keys)
    # Everything landed in the deployment's own catalog, dbt's models (built from sources there) included.
    catalog = f"dbx_demo_{resource.deployment_name()}"
    assert client.catalogs.get(catalog).name == catalog
    assert client.tables.get(f"{catalog}.analytics.fct_daily_revenue").columns
    assert "silver" not in {s.name for s in client.schemas.list("main")}  # nothing in the workspace default
    run_ids = {m.materialization.metadata["databricks_run_id"].value for m in result.get_asset_materialization_events()}
    assert len(run_ids) == 1
    run = client.jobs.get_run(run_ids.pop())
    assert sorted(t.task_key for t in run.tasks) == sorted(
        ["bronze_orders", "bronze_customers", "silver_orders", "dbt_build", "revenue_report"]
    )
    assert len({t.cluster_instance.cluster_id for t in run.tasks}) == 1
    report = materialization_metadata(result, K("revenue_report"))
    assert report["report_period"] == f"{DAY1}..{DAY1}" and report["days"] == 1
    assert report["revenue"] > 0 and report["orders"] > 100
    # Each notebook asset names its table: columns from Unity Catalog, row count from the warehouse,
    # and every task's share of the cluster with a DBU estimate (i3.xlarge driver + 1 worker).
    tables = {
        "bronze_orders": "bronze.orders",
        "bronze_customers": "bronze.customers",
        "silver_orders": "silver.orders_enriched",
    }
    for asset, table in tables.items():
        meta = materialization_metadata(result, K(asset))
        assert meta["dagster/table_name"] == f"dbx_demo_{resource.deployment_name()}.{table}", meta
        assert meta["dagster/row_count"] > 0 and meta["dagster/column_schema"].columns, meta
        assert meta["databricks_compute_s"] > 0
        assert meta["databricks_dbu_estimate"] == pytest.approx(2.0 * meta["databricks_compute_s"] / 3600, rel=1e-2)
    # The shared cluster's busy time is split among its tasks: the shares add up to it.
    busy: list[list[int]] = []
    for start, end in sorted((t.start_time, t.end_time) for t in run.tasks):
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    one_asset_per_task = ["bronze_orders", "bronze_customers", "silver_orders", "stg_orders", "revenue_report"]
    shares = sum(materialization_metadata(result, K(a))["databricks_compute_s"] for a in one_asset_per_task)
    assert shares == pytest.approx(sum(e - s for s, e in busy) / 1000, abs=0.02)
    bronze = materialization_metadata(result, K("bronze_orders"))
    assert bronze["dagster/row_count"] == bronze["rows_ingested"]  # a fresh workspace: the table is day 1
    silver_columns = {
        c.name for c in materialization_metadata(result, K("silver_orders"))["dagster/column_schema"].columns
    }
    assert {"order_id", "customer_name", "order_date"} <= silver_columns
    fct = materialization_metadata(result, K("fct_daily_revenue"))
    assert fct["databricks_run_url"] == run.run_page_url
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    assert checks[(K("stg_orders"), "unique_stg_orders_order_id")].passed
    warn = next(c for (k, n), c in checks.items() if k == K("dim_customers") and n.startswith("accepted_values"))
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN  # CH customers: a warning only
    assert all(c.passed for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR)
    # The customers notebook printed its secret: neither it nor the token reaches Dagster's events.
    secret = client.secrets.get_secret(SECRET_SCOPE, CRM_API_KEY).value
    assert secret is not None
    events_text = repr([e.event_specific_data for e in result.all_events]) + repr(result.all_events)
    assert base64.b64decode(secret).decode() not in events_text
    assert client.config.token not in events_text

    # Day 2, the orders chain only: dbt builds exactly the selected models.
    selection = [K("bronze_orders"), K("silver_orders"), K("stg_orders"), K("fct_daily_revenue")]
    day2 = _materialize(resource, DAY2.isoformat(), selection=selection)
    assert day2.success
    assert {e.asset_key for e in day2.get_asset_materialization_events()} == set(selection)
    run = client.jobs.get_run(materialization_metadata(day2, K("stg_orders"))["databricks_run_id"])
    assert sorted(t.task_key for t in run.tasks) == ["bronze_orders", "dbt_build", "silver_orders"]
    (command,) = run.overriding_parameters.dbt_commands
    assert "--indirect-selection empty" in command
    models = {part.rsplit(".", 1)[-1] for part in command.split() if part.startswith("fqn:")}
    assert {"stg_orders", "fct_daily_revenue"} <= models  # and the selected models' own tests
    assert not models & {"stg_customers", "dim_customers"}, command


def test_failing_dbt_test_fails_its_check_and_skips_downstream(resource):
    client = resource.get_client()
    rows = list(csv.reader(io.StringIO(orders_csv(BAD_DAY).decode())))
    rows[1][4] = "lost"  # not an accepted status: an error-severity dbt test fails
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    upload(client, f"{day_dir(BAD_DAY)}/orders.csv", out.getvalue().encode())
    result = _materialize(resource, BAD_DAY.isoformat(), selection=ORDERS_CHAIN)
    assert not result.success
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    status_check = next(c for (k, n), c in checks.items() if k == K("stg_orders") and n.startswith("accepted_values"))
    assert not status_check.passed and status_check.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert K("stg_orders") in materialized and K("fct_daily_revenue") not in materialized
    assert "fct_daily_revenue" in step_failure_message(result)
