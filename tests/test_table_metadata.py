"""Table metadata on materializations, without a JVM: the local workspace's Unity Catalog tables
endpoint and its SQL statement execution (row counts from parquet footers) through the real SDK,
the reader that turns them into Dagster's table metadata, and a notebook asset naming its table.

Tables are put where a Spark task leaves them, which is how the local workspace's read-only Unity
Catalog is fed: parquet files under the shared warehouse dir (tests/data holds a 7-row file Spark
wrote) and the columns snapshot a task process writes after each task (runtime/catalog_sync.py).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
from databricks.sdk.service.catalog import TableInfo
from databricks.sdk.service.sql import StatementState
from workflow_support import NOTEBOOKS, make_resource, materialization_metadata

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.tables import (
    COLUMN_SCHEMA,
    ROW_COUNT,
    ROW_COUNT_SOURCE,
    TABLE_NAME,
    TABLE_WARNING,
    TableMetadataReader,
    statistics_row_count,
    validate_table_name,
)
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.local_workspace.engine.parquet_footer import file_row_count
from dbx_assets.local_workspace.engine.warehouses import LOCAL_WAREHOUSE_ID

SEVEN_ROWS = Path(__file__).parent / "data" / "orders_7_rows.parquet"  # what Spark wrote: 7 rows, 4 columns
SPARK_SCHEMA = {
    "type": "struct",
    "fields": [
        {"name": "order_id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "customer_id", "type": "string", "nullable": True, "metadata": {"comment": "CRM id"}},
        {"name": "amount", "type": "decimal(10,2)", "nullable": True, "metadata": {}},
        {"name": "order_date", "type": "string", "nullable": True, "metadata": {}},
    ],
}


def _write_table(warehouse: Path, schema: str, table: str, files: dict[str, Path]) -> None:
    """A `main.<schema>.<table>` as a Spark task leaves it: parquet files (relative path -> source)
    and the columns snapshot."""
    folder = warehouse / f"{schema}.db" / table
    for rel, source in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / rel)
    (folder / "_SUCCESS").write_text("")
    snapshot = warehouse / "_unity_catalog" / "columns" / schema / f"{table}.json"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_text(json.dumps({"signature": "test", "schema": SPARK_SCHEMA, "partition_columns": []}))


@pytest.fixture
def schema(fake_dbx) -> str:
    name = "t" + uuid.uuid4().hex[:10]
    _write_table(fake_dbx.paths.warehouse, name, "orders", {"part-00000.snappy.parquet": SEVEN_ROWS})
    _write_table(
        fake_dbx.paths.warehouse,
        name,
        "by_day",
        {f"order_date=2026-11-1{d}/part-00000.snappy.parquet": SEVEN_ROWS for d in range(3)},
    )
    return name


def test_row_counts_come_from_parquet_footers():
    # Spark's footers: long names, string logical types, timestamps, a date (what the demo's silver table holds).
    assert file_row_count(SEVEN_ROWS) == 7
    assert file_row_count(Path(__file__).parent / "data" / "orders_enriched_145_rows.parquet") == 145


def test_tables_get_serves_columns_type_storage(fake_dbx, schema):
    table = fake_dbx.client.tables.get(f"main.{schema}.orders")
    assert table.full_name == f"main.{schema}.orders" and table.table_type and table.table_type.value == "MANAGED"
    assert table.storage_location and table.storage_location.endswith(f"{schema}.db/orders")
    assert [(c.name, c.type_text, c.position) for c in table.columns or []] == [
        ("order_id", "bigint", 0),
        ("customer_id", "string", 1),
        ("amount", "decimal(10,2)", 2),
        ("order_date", "string", 3),
    ]
    assert [c.type_name.value for c in table.columns or [] if c.type_name] == ["LONG", "STRING", "DECIMAL", "STRING"]


def test_count_statement_on_the_local_warehouse(fake_dbx, schema):
    run = fake_dbx.client.statement_execution.execute_statement
    answer = run(statement=f"SELECT COUNT(*) FROM main.`{schema}`.orders", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert answer.status and answer.status.state == StatementState.SUCCEEDED
    assert answer.result and answer.result.data_array == [["7"]]
    assert answer.manifest and answer.manifest.schema and answer.manifest.schema.columns
    assert answer.manifest.schema.columns[0].type_text == "BIGINT"
    # Two-part names resolve in the request's catalog; a partitioned table counts every partition's files.
    partitioned = run(statement=f"select count(1) from {schema}.by_day;", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert partitioned.result and partitioned.result.data_array == [["21"]]
    again = fake_dbx.client.statement_execution.get_statement(answer.statement_id or "")
    assert again.result and again.result.data_array == [["7"]]


def test_statements_fail_as_sql_errors_do(fake_dbx, schema):
    run = fake_dbx.client.statement_execution.execute_statement
    missing = run(statement=f"SELECT COUNT(*) FROM main.{schema}.nope", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert missing.status and missing.status.state == StatementState.FAILED and missing.status.error
    assert "TABLE_OR_VIEW_NOT_FOUND" in (missing.status.error.message or "")
    other = run(statement=f"SELECT * FROM main.{schema}.orders", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert other.status and other.status.state == StatementState.FAILED and other.status.error
    assert "SELECT COUNT(*)" in (other.status.error.message or "")


def test_reader_assembles_dagster_table_metadata(fake_dbx, schema):
    reader = TableMetadataReader(fake_dbx.client, lambda: LOCAL_WAREHOUSE_ID)
    facts = reader.read(f"main.{schema}.orders")
    assert facts.warnings == []
    assert facts.metadata[TABLE_NAME] == f"main.{schema}.orders"
    assert facts.metadata[ROW_COUNT] == 7
    assert facts.metadata[ROW_COUNT_SOURCE] == f"SELECT COUNT(*) on SQL warehouse {LOCAL_WAREHOUSE_ID}"
    columns = facts.metadata[COLUMN_SCHEMA].columns
    assert [(c.name, c.type) for c in columns][:2] == [("order_id", "bigint"), ("customer_id", "string")]
    assert columns[1].description == "CRM id"

    missing = reader.read(f"main.{schema}.never_written")
    assert ROW_COUNT not in missing.metadata and COLUMN_SCHEMA not in missing.metadata
    assert "does not exist in Unity Catalog" in missing.metadata[TABLE_WARNING]


def test_no_warehouse_means_no_row_count_and_says_why(fake_dbx, schema):
    def no_warehouse() -> str:
        raise RuntimeError("2 warehouses, none chosen")

    facts = TableMetadataReader(fake_dbx.client, no_warehouse).read(f"main.{schema}.orders")
    assert COLUMN_SCHEMA in facts.metadata and ROW_COUNT not in facts.metadata
    assert "2 warehouses, none chosen" in facts.metadata[TABLE_WARNING]


def test_statistics_row_count_wins_over_a_query():
    table = TableInfo(full_name="c.s.t", properties={"spark.sql.statistics.numRows": "42"})
    assert statistics_row_count(table) == 42
    assert statistics_row_count(TableInfo(full_name="c.s.t", properties={"delta.minReaderVersion": "1"})) is None


@pytest.mark.parametrize("bad", ["orders", "s.orders", "a.b.c.d", "main.{catalog}.orders", "x{catalog}.s.t", "a..t"])
def test_table_names_are_checked_at_load(bad):
    with pytest.raises(WorkflowDefinitionError, match="catalog.schema.table"):
        validate_table_name(bad, "Notebook asset 'x'")
    with pytest.raises(WorkflowDefinitionError, match="Notebook asset 'x'"):
        NotebookTasks([NotebookAsset(key="x", notebook="slow.py", table=bad)], notebooks_dir=NOTEBOOKS)


def test_a_notebook_asset_materializes_with_its_tables_metadata(dbx_env, schema):
    name = "t" + uuid.uuid4().hex[:10]
    notebooks = NotebookTasks(
        [
            NotebookAsset(
                key=f"{name}/orders", notebook="slow.py", params={"seconds": "0"}, table=f"{{catalog}}.{schema}.orders"
            ),
            NotebookAsset(key=f"{name}/lost", notebook="slow.py", params={"seconds": "0"}, table=f"main.{schema}.lost"),
        ],
        notebooks_dir=NOTEBOOKS,
    )
    assets = build_workflow_assets(Workflow(name=name, sources=[notebooks]))
    # The spec names a table without {catalog} before any run (the catalog page shows it).
    assert assets.specs_by_key[dg.AssetKey([name, "lost"])].metadata[TABLE_NAME] == f"main.{schema}.lost"
    result = dg.materialize(
        [assets], resources={"databricks": make_resource(name, catalog="main")}, raise_on_error=False
    )
    assert result.success  # a missing table is a warning, not a failed asset
    orders = materialization_metadata(result, dg.AssetKey([name, "orders"]))
    assert orders[TABLE_NAME] == f"main.{schema}.orders"
    assert orders[ROW_COUNT] == 7
    assert [c.name for c in orders[COLUMN_SCHEMA].columns] == ["order_id", "customer_id", "amount", "order_date"]
    lost = materialization_metadata(result, dg.AssetKey([name, "lost"]))
    assert lost[TABLE_NAME] == f"main.{schema}.lost" and ROW_COUNT not in lost
    assert f"main.{schema}.lost does not exist" in lost[TABLE_WARNING]
