"""Table metadata on materializations, without a JVM: the local workspace's Unity Catalog tables
endpoint and its SQL statement execution (row counts from parquet footers) through the real SDK,
the reader that turns them into Dagster's table metadata, and a notebook asset naming its table.

Tables are put where a Spark task leaves them, which is how the local workspace's read-only Unity
Catalog is fed: parquet files under the shared warehouse dir (tests/data holds a 7-row file Spark
wrote) and the columns snapshot a task process writes after each task (runtime/catalog_sync.py);
Delta tables as a `_delta_log` written by hand (tests/delta_logs.py) beside their parquet files,
removed ones included, as Delta leaves them until VACUUM.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
from databricks.sdk.service.catalog import DataSourceFormat, TableInfo
from databricks.sdk.service.sql import StatementState
from delta_logs import Log, add, meta, protocol, remove
from workflow_support import NOTEBOOKS, make_resource, materialization_metadata

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.tables import (
    COLUMN_SCHEMA,
    DELTA_COMMIT_TIMESTAMP,
    DELTA_TIME_TRAVEL,
    DELTA_VERSION,
    ROW_COUNT,
    ROW_COUNT_SOURCE,
    TABLE_NAME,
    TABLE_WARNING,
    TableMetadataReader,
    delta_version_metadata,
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


# -- Delta tables ---------------------------------------------------------------------------------
DELTA_SCHEMA = {
    "type": "struct",
    "fields": [
        {"name": "order_id", "type": "long", "nullable": False, "metadata": {"comment": "the order's id"}},
        {"name": "customer_id", "type": "string", "nullable": True, "metadata": {}},
        {"name": "amount", "type": "decimal(10,2)", "nullable": True, "metadata": {}},
        {"name": "tags", "type": {"type": "array", "elementType": "string", "containsNull": True}, "nullable": True,
         "metadata": {}},
        {"name": "order_date", "type": "date", "nullable": True, "metadata": {}},
    ],
}  # fmt: skip
CREATED_MS, WRITTEN_MS, MERGED_MS = 1_799_000_000_000, 1_800_000_000_000, 1_800_000_060_000


def _delta_table(warehouse: Path, schema: str, table: str) -> Log:
    """A Delta table as Delta leaves it: its log, and the data files of every version until VACUUM."""
    log = Log(warehouse / f"{schema}.db" / table)
    for name in ("part-00000.snappy.parquet", "part-00001.snappy.parquet"):
        shutil.copy(SEVEN_ROWS, log.table / name)
    return log


@pytest.fixture
def delta_schema(fake_dbx) -> str:
    """`orders`: created with change data feed and a comment, written, then rewritten by a MERGE (both
    versions' files on disk: their footers add up to 14 rows, the table has 7). `no_stats`: its live
    file has no statistics. `cleaned`: its log lost the commits before an unreadable checkpoint."""
    name = "d" + uuid.uuid4().hex[:10]
    warehouse = fake_dbx.paths.warehouse
    orders = _delta_table(warehouse, name, "orders")
    orders.commit(
        protocol(1, 7, writerFeatures=["changeDataFeed", "appendOnly", "invariants"]),
        meta(
            ("order_date",),
            {"delta.enableChangeDataFeed": "true"},
            schema=DELTA_SCHEMA,
            description="Orders, one row per order",
            createdTime=CREATED_MS,
        ),
        operation="CREATE TABLE",
        at_ms=CREATED_MS,
    )
    orders.commit(add("part-00000.snappy.parquet", 7), at_ms=WRITTEN_MS)
    orders.commit(
        remove("part-00000.snappy.parquet"), add("part-00001.snappy.parquet", 7), operation="MERGE", at_ms=MERGED_MS
    )
    no_stats = _delta_table(warehouse, name, "no_stats")
    no_stats.create()
    no_stats.commit(add("part-00000.snappy.parquet", 7))
    no_stats.commit(remove("part-00000.snappy.parquet"), add("part-00001.snappy.parquet", None))
    cleaned = _delta_table(warehouse, name, "cleaned")
    cleaned.create()
    cleaned.commit(add("part-00000.snappy.parquet", 7))
    (cleaned.dir / f"{1:020d}.checkpoint.parquet").write_bytes(b"PAR1 not a checkpoint")
    cleaned.commit(add("part-00001.snappy.parquet", 7))
    cleaned.drop_commits_before(1)
    return name


def test_tables_get_describes_a_delta_table_from_its_log(fake_dbx, delta_schema):
    table = fake_dbx.client.tables.get(f"main.{delta_schema}.orders")
    assert table.data_source_format == DataSourceFormat.DELTA
    assert table.table_type and table.table_type.value == "MANAGED"
    assert table.storage_location and table.storage_location.endswith(f"{delta_schema}.db/orders")
    assert table.comment == "Orders, one row per order"
    assert (table.created_at, table.updated_at) == (CREATED_MS, MERGED_MS)
    assert table.properties == {
        "delta.enableChangeDataFeed": "true",
        "delta.minReaderVersion": "1",
        "delta.minWriterVersion": "7",
        "delta.feature.appendOnly": "supported",
        "delta.feature.changeDataFeed": "supported",
        "delta.feature.invariants": "supported",
        "delta.lastUpdateVersion": "2",
        "delta.lastCommitTimestamp": str(MERGED_MS),
    }
    columns = table.columns or []
    assert [
        (c.name, c.type_text, c.type_name.value if c.type_name else None, c.position, c.nullable, c.partition_index)
        for c in columns
    ] == [
        ("order_id", "bigint", "LONG", 0, False, None),
        ("customer_id", "string", "STRING", 1, True, None),
        ("amount", "decimal(10,2)", "DECIMAL", 2, True, None),
        ("tags", "array<string>", "ARRAY", 3, True, None),
        ("order_date", "date", "DATE", 4, True, 0),
    ]
    assert columns[0].comment == "the order's id"
    assert json.loads(columns[0].type_json or "") == DELTA_SCHEMA["fields"][0]
    assert (columns[2].type_precision, columns[2].type_scale) == (10, 2)


def test_tables_list_tells_delta_from_parquet(fake_dbx, delta_schema, schema):
    listed = {t.name: t for t in fake_dbx.client.tables.list(catalog_name="main", schema_name=delta_schema)}
    assert set(listed) == {"orders", "no_stats", "cleaned"}
    assert {t.data_source_format for t in listed.values()} == {DataSourceFormat.DELTA}
    assert (listed["orders"].properties or {})["delta.lastUpdateVersion"] == "2"
    parquet = fake_dbx.client.tables.get(f"main.{schema}.orders")
    assert parquet.data_source_format == DataSourceFormat.PARQUET and parquet.properties is None


def test_count_of_a_delta_table_comes_from_its_log(fake_dbx, delta_schema):
    run = fake_dbx.client.statement_execution.execute_statement
    answer = run(statement=f"SELECT COUNT(*) FROM main.{delta_schema}.orders", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert answer.result and answer.result.data_array == [["7"]]  # the parquet footers on disk say 14
    # a live file without statistics is counted from its own footer, a removed one not at all
    no_stats = run(statement=f"SELECT COUNT(*) FROM main.{delta_schema}.no_stats", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert no_stats.result and no_stats.result.data_array == [["7"]]
    # when the log no longer says which files are live, the count fails rather than guess
    cleaned = run(statement=f"SELECT COUNT(*) FROM main.{delta_schema}.cleaned", warehouse_id=LOCAL_WAREHOUSE_ID)
    assert cleaned.status and cleaned.status.state == StatementState.FAILED and cleaned.status.error
    assert "commits before version 1 are gone" in (cleaned.status.error.message or "")
    # Unity Catalog still knows the table is Delta, and its version
    table = fake_dbx.client.tables.get(f"main.{delta_schema}.cleaned")
    assert table.data_source_format == DataSourceFormat.DELTA
    assert (table.properties or {})["delta.lastUpdateVersion"] == "2"


def test_reader_adds_the_delta_version(fake_dbx, delta_schema, schema):
    reader = TableMetadataReader(fake_dbx.client, lambda: LOCAL_WAREHOUSE_ID)
    facts = reader.read(f"main.{delta_schema}.orders")
    assert facts.warnings == []
    assert facts.metadata[ROW_COUNT] == 7
    assert facts.metadata[DELTA_VERSION] == dg.MetadataValue.int(2)
    assert facts.metadata[DELTA_COMMIT_TIMESTAMP] == dg.MetadataValue.timestamp(MERGED_MS / 1000)
    assert facts.metadata[DELTA_TIME_TRAVEL] == dg.MetadataValue.text(
        f"SELECT * FROM `main`.`{delta_schema}`.`orders` VERSION AS OF 2"
    )
    assert [c.name for c in facts.metadata[COLUMN_SCHEMA].columns][:2] == ["order_id", "customer_id"]
    assert DELTA_VERSION not in reader.read(f"main.{schema}.orders").metadata  # parquet: no version


def test_delta_version_metadata_only_for_delta_tables():
    delta = TableInfo(data_source_format=DataSourceFormat.DELTA, properties={"delta.lastUpdateVersion": "5"})
    assert delta_version_metadata("c.s.t", delta)[DELTA_VERSION] == dg.MetadataValue.int(5)
    assert DELTA_COMMIT_TIMESTAMP not in delta_version_metadata("c.s.t", delta)
    assert delta_version_metadata("c.s.t", TableInfo(data_source_format=DataSourceFormat.DELTA)) == {}
    parquet = TableInfo(data_source_format=DataSourceFormat.PARQUET, properties={"delta.lastUpdateVersion": "5"})
    assert delta_version_metadata("c.s.t", parquet) == {}


def test_a_notebook_asset_writing_a_delta_table_records_its_version(dbx_env, delta_schema):
    name = "t" + uuid.uuid4().hex[:10]
    notebooks = NotebookTasks(
        [
            NotebookAsset(
                key=f"{name}/orders",
                notebook="slow.py",
                params={"seconds": "0"},
                table=f"{{catalog}}.{delta_schema}.orders",
            )
        ],
        notebooks_dir=NOTEBOOKS,
    )
    assets = build_workflow_assets(Workflow(name=name, sources=[notebooks]))
    result = dg.materialize([assets], resources={"databricks": make_resource(name, catalog="main")})
    orders = materialization_metadata(result, dg.AssetKey([name, "orders"]))
    assert orders[ROW_COUNT] == 7 and orders[DELTA_VERSION] == 2
    assert orders[DELTA_COMMIT_TIMESTAMP] == MERGED_MS / 1000
    assert orders[DELTA_TIME_TRAVEL].endswith("VERSION AS OF 2")
