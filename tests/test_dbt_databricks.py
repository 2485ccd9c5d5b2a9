"""dbt projects written for Databricks (profile `type: databricks`, no file_format) build unchanged
on the local workspace as dbt assets: dbt-databricks' own macros on a local cluster's Spark session
(runtime/dbsql_session.py), Delta tables, Unity Catalog names.

One workspace for the module, and the Dagster runs a team would make (a workflow holds one dbt
project: run-now's `dbt_commands` applies to every dbt task of a job), each one Databricks run on
a job cluster of its own:
1. tests/data/dbt_shop, laid out the way dbt-labs' example project is (three CSV seeds, three
   staging views, two marts tables, their tests as asset checks);
2. tests/data/dbt_strategies' first batch (an incremental model for each of merge, append,
   insert_overwrite and replace_where, a snapshot, a seed);
3. its second batch: each incremental model merges, appends or replaces as its strategy says, the
   snapshot closes a changed row. What each table must hold is in
   that project's singular tests, which run as asset checks, and row counts are read back through
   the SQL Statement Execution API on the workspace's warehouse.
The real jaffle_shop (dbt-labs/jaffle_shop) was built the same way by hand; see the README.
Measured: 330 s and 482 s for the module under load average 7-10 on 2 cores (three runs, each a job
cluster start and a dbt build: 24 nodes, then 11 and 11).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.source import DbtProjectTasks
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.local_workspace.launcher import Connection, ensure_running, stop

DATA = Path(__file__).parent / "data"
BATCHES = dg.StaticPartitionsDefinition(["1", "2"])
SHOP_NODES = {"raw_patrons", "raw_tickets", "raw_settlements", "stg_patrons", "stg_tickets", "stg_settlements"}
SHOP_NODES |= {"patrons", "tickets"}
STRATEGY_NODES = {"events", "inc_merge", "inc_append", "inc_insert_overwrite", "inc_replace_where", "events_snapshot"}


def _project(name: str, dest: Path) -> Path:
    shutil.copytree(DATA / name, dest, ignore=shutil.ignore_patterns("target", "logs"))
    dbt_manifest.prepare(dest)  # the project's own tooling: dbt parse with its databricks profile
    return dest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    state_dir = tmp_path_factory.mktemp("dbt_databricks_workspace")
    conn = ensure_running(state_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABRICKS_HOST", conn.host)
        mp.setenv("DATABRICKS_TOKEN", conn.token)
        try:
            yield conn
        finally:
            stop(state_dir)


@pytest.fixture(scope="module")
def built(workspace: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shop project, then the strategies project's two batches."""
    root = tmp_path_factory.mktemp("dbt_projects")
    shop = DbtProjectTasks(_project("dbt_shop", root / "shop"), schema="tea_shop")
    strategies = DbtProjectTasks(
        _project("dbt_strategies", root / "strategies"), schema="strategies", partitions_def=BATCHES
    )
    shop_assets = build_workflow_assets(Workflow(name="tea_shop", sources=[shop]))
    strategy_assets = build_workflow_assets(Workflow(name="strategies", sources=[strategies]), partitions_def=BATCHES)
    resources = {"databricks": DatabricksResource(workspace_root="/Shared/tests/dbt_databricks")}
    out: dict = {"shop": shop, "strategies": strategies, "client": resources["databricks"].get_client()}
    out["shop_run"] = dg.materialize([shop_assets], resources=resources, raise_on_error=False)
    for batch in ("1", "2"):
        out[batch] = dg.materialize([strategy_assets], partition_key=batch, resources=resources, raise_on_error=False)
    return out


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.message or "" for e in result.all_events if e.is_failure]


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        assert event.asset_key is not None
        out[event.asset_key.path[-1]] = {k: v.value for k, v in event.materialization.metadata.items()}
    return out


def _checks(result: dg.ExecuteInProcessResult) -> dict[dg.AssetCheckKey, bool]:
    return {e.asset_check_key: e.passed for e in result.get_asset_check_evaluations()}


def _count(built: dict, schema: str, table: str) -> int:
    client = built["client"]
    warehouse = next(iter(client.warehouses.list())).id
    response = client.statement_execution.execute_statement(
        statement=f"SELECT COUNT(*) FROM main.{schema}.{table}", warehouse_id=warehouse
    )
    assert response.status and response.status.state and response.status.state.value == "SUCCEEDED", response
    return int(response.result.data_array[0][0])


def test_a_project_laid_out_like_jaffle_shop_builds_green_as_dbt_assets(built: dict):
    run, shop = built["shop_run"], built["shop"]
    assert run.success, _failures(run)
    materialized = _materialized(run)
    assert set(materialized) == SHOP_NODES  # seeds, staging views and marts: 8 of 8
    assert len({m["databricks_run_id"] for m in materialized.values()}) == 1  # one Databricks run
    checks = _checks(run)
    assert set(checks) == shop.check_keys() and len(checks) == 16  # every dbt test, as an asset check
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}
    assert _count(built, "tea_shop", "tickets") == 7 and _count(built, "tea_shop", "raw_patrons") == 5
    tables = {t.name: t for t in built["client"].tables.list(catalog_name="main", schema_name="tea_shop")}
    assert tables["patrons"].data_source_format and tables["patrons"].data_source_format.value == "DELTA"


def test_incremental_strategies_snapshot_and_seed_across_two_batches(built: dict):
    first, second, strategies = built["1"], built["2"], built["strategies"]
    assert first.success and second.success, _failures(first) + _failures(second)
    assert set(_materialized(first)) == set(_materialized(second)) == STRATEGY_NODES
    for result in (first, second):  # each batch's expectations (tests/data/dbt_strategies/tests)
        checks = _checks(result)
        assert set(checks) == strategies.check_keys() and len(checks) == 5
        assert all(checks.values()), checks
    counts = {
        t: _count(built, "strategies", t)
        for t in ("inc_merge", "inc_append", "inc_insert_overwrite", "inc_replace_where", "events_snapshot")
    }
    # merge: id 1 updated in place; append: both batches; overwrite/replace_where: batch 1 rewritten,
    # not duplicated; snapshot: id 1's old version closed, ids 2 and 3 current
    assert counts == {
        "inc_merge": 3,
        "inc_append": 4,
        "inc_insert_overwrite": 4,
        "inc_replace_where": 4,
        "events_snapshot": 4,
    }
