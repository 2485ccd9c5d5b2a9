"""Ingestion without a JVM: Auto Loader option translation and schema handling at the schema
location, read_files / COPY INTO / CREATE STREAMING TABLE parsing, sample data generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime.auto_loader import (
    AutoLoaderError,
    SchemaLocation,
    UnknownFieldException,
    data_files,
    inference_options,
    parse_schema_hints,
    resolve_schema,
    translate_options,
)
from dbx_assets.local_workspace.runtime.read_files import (
    PipelineTable,
    find_calls,
    find_stream_tables,
    parse_copy_into,
    parse_pipeline_table,
    parse_streaming_table,
    plan_read,
)
from dbx_assets.local_workspace.runtime.sample_data import ReadOnlySamples, ensure_generated, refuse_writes


def field(name: str, kind: str = "string") -> dict:
    return {"name": name, "type": kind, "nullable": True, "metadata": {}}


def test_auto_loader_options_become_file_source_options():
    opts = translate_options(
        {
            "cloudFiles.format": "JSON",
            "cloudFiles.schemaLocation": "dbfs:/chk",
            "cloudFiles.maxFilesPerTrigger": "2",
            "multiLine": "true",
        },
        user_schema=False,
    )
    assert (opts.format, opts.evolution_mode, opts.rescued_column, opts.infer_column_types) == (
        "json",
        "addNewColumns",
        "_rescued_data",
        False,
    )
    assert opts.spark_options == {
        "multiLine": "true",
        "columnNameOfCorruptRecord": "_rescued_data",
        "mode": "PERMISSIVE",
        "maxFilesPerTrigger": "2",
    }
    assert inference_options(opts)["primitivesAsString"] == "true"  # JSON columns are strings unless asked
    typed = translate_options(
        {"cloudFiles.format": "csv", "cloudFiles.inferColumnTypes": "true", "header": "true"}, user_schema=True
    )
    assert typed.evolution_mode == "none" and typed.rescued_column is None  # a given schema: no rescue column
    assert inference_options(typed)["inferSchema"] == "true"
    assert translate_options(
        {"cloudFiles.format": "parquet", "cloudFiles.schemaLocation": "x"}, False
    ).infer_column_types


@pytest.mark.parametrize(
    ("options", "error_class"),
    [
        ({}, "CF_MISSING_FORMAT"),
        ({"cloudFiles.format": "xml"}, "CF_UNSUPPORTED_FORMAT"),
        ({"cloudFiles.format": "json"}, "CF_SCHEMA_LOCATION_REQUIRED"),
        (
            {"cloudFiles.format": "json", "cloudFiles.schemaLocation": "x", "cloudFiles.schemaEvolutionMode": "merge"},
            "CF_INVALID_SCHEMA_EVOLUTION_MODE",
        ),
        (
            {"cloudFiles.format": "json", "cloudFiles.schemaLocation": "x", "cloudFiles.includeExistingFiles": "false"},
            "CF_UNSUPPORTED_OPTION",
        ),
    ],
)
def test_auto_loader_refuses_what_databricks_refuses(options, error_class):
    with pytest.raises(AutoLoaderError) as raised:
        translate_options(options, user_schema=False)
    assert raised.value.error_class == error_class


def test_schema_is_inferred_once_then_new_columns_stop_the_stream_once(tmp_path: Path):
    landing = tmp_path / "landing"
    (landing / "_checkpoint").mkdir(parents=True)
    (landing / "a.json").write_text("{}")
    (landing / "_checkpoint" / "x").write_text("")  # `_` files are not data
    location = SchemaLocation(tmp_path / "schemas")
    opts = translate_options({"cloudFiles.format": "json", "cloudFiles.schemaLocation": "s"}, False)
    inferred: list[list[str]] = []

    def infer(files: list[Path]) -> list[dict]:
        inferred.append([f.name for f in files])
        return [field("id"), field("amount")] if any(f.name == "b.json" for f in files) else [field("id")]

    def resolve() -> list[str]:
        return [f["name"] for f in resolve_schema(opts, location, data_files(landing), infer, lambda t: t)]

    assert resolve() == ["id", "_rescued_data"]
    assert resolve() == ["id", "_rescued_data"] and inferred == [["a.json"]]  # reused, not inferred again
    assert (tmp_path / "schemas/_schemas/0").read_text().startswith("v1\n")
    (landing / "b.json").write_text("{}")
    with pytest.raises(UnknownFieldException, match="amount"):
        resolve()
    assert resolve() == ["id", "amount", "_rescued_data"]  # the restart picks the new column up
    assert sorted(p.name for p in (tmp_path / "schemas/_schemas").iterdir()) == ["0", "1"]

    rescue = translate_options(
        {"cloudFiles.format": "json", "cloudFiles.schemaLocation": "s", "cloudFiles.schemaEvolutionMode": "rescue"},
        False,
    )
    other = SchemaLocation(tmp_path / "rescue")
    resolve_schema(rescue, other, [landing / "a.json"], infer, lambda t: t)
    fields = resolve_schema(rescue, other, data_files(landing), infer, lambda t: t)
    assert [f["name"] for f in fields] == ["id", "_rescued_data"]  # rescue: the schema never grows


def test_schema_hints_parse_nested_types():
    assert parse_schema_hints("a int, b map<string,int>, `c d` decimal(10,2)") == [
        ("a", "int"),
        ("b", "map<string,int>"),
        ("c d", "decimal(10,2)"),
    ]


def test_read_files_calls_are_found_with_their_options():
    sql = (
        "SELECT * FROM read_files('dbfs:/in/orders', format => 'csv', header => true, schemaHints => 'amount double') "
        'JOIN STREAM read_files("/Volumes/c/s/v/x") USING (id)'
    )
    first, second = find_calls(sql)
    assert (first.path, first.stream, first.options) == (
        "dbfs:/in/orders",
        False,
        {"format": "csv", "header": "true", "schemaHints": "amount double"},
    )
    assert (second.path, second.stream) == ("/Volumes/c/s/v/x", True)
    assert sql[second.start : second.end].startswith("STREAM read_files(")
    plan = plan_read(first.path, first.options)
    assert plan.format == "csv" and plan.options["inferSchema"] == "true" and plan.rescued_column == "_rescued_data"
    assert plan_read("/x/data.json", {}).format == "json"  # from the extension
    assert plan_read("/x", {"format": "json", "schema": "id INT"}).rescued_column is None


def test_copy_into_and_streaming_table_statements_parse():
    copy = parse_copy_into(
        "COPY INTO main.ingest.orders\nFROM 'dbfs:/landing/orders'\nFILEFORMAT = CSV\n"
        "FORMAT_OPTIONS ('header' = 'true', 'inferSchema' = 'true')\nCOPY_OPTIONS ('mergeSchema' = 'true');"
    )
    assert copy is not None
    assert (copy.table, copy.path, copy.format) == ("main.ingest.orders", "dbfs:/landing/orders", "csv")
    assert copy.format_options == {"header": "true", "inferSchema": "true"}
    assert copy.copy_options == {"mergeschema": "true"}
    assert parse_copy_into("SELECT 1") is None
    assert parse_streaming_table(
        "CREATE OR REFRESH STREAMING TABLE raw_orders AS SELECT * FROM STREAM read_files('/x', format => 'json')"
    ) == ("raw_orders", "SELECT * FROM STREAM read_files('/x', format => 'json')")


def test_streaming_table_and_materialized_view_statements_as_dbt_databricks_writes_them():
    # dbt-databricks 1.12: a query comment first, a column list with comments, a table COMMENT, then AS
    dbt_create = (
        '/* {"app": "dbt", "node_id": "model.shop.orders_raw"} */\n'
        "  CREATE STREAMING TABLE `main`.`dev`.`orders_raw`\n"
        "  (\n    `customer_name` string COMMENT 'who, as named',\n    `amount` decimal(10,2)\n  )\n"
        "  COMMENT 'Raw orders'\n  AS -- ingest\n  select customer_name, amount\n"
        "  from stream read_files('/x', format => 'json');"
    )
    parsed = parse_pipeline_table(dbt_create)
    assert parsed == PipelineTable(
        "streaming_table",
        "`main`.`dev`.`orders_raw`",
        "-- ingest\n  select customer_name, amount\n  from stream read_files('/x', format => 'json')",
    )
    mv = parse_pipeline_table(
        "create or replace materialized view main.dev.daily\n  tblproperties ('a' = 'b')\nas\n  select 1 as n"
    )
    assert mv == PipelineTable("materialized_view", "main.dev.daily", "select 1 as n")
    assert parse_pipeline_table("refresh streaming table main.dev.orders_raw") == PipelineTable(
        "streaming_table", "main.dev.orders_raw", None
    )
    assert parse_pipeline_table("REFRESH MATERIALIZED VIEW daily FULL") == PipelineTable(
        "materialized_view", "daily", None
    )
    # a streaming read of a Delta table, as dbt-databricks renders `stream {{ ref(...) }}`
    assert find_stream_tables("select n from stream `main`.`dev`.`web_orders` where n > 0") == [
        (14, 46, "`main`.`dev`.`web_orders`")
    ]
    assert find_stream_tables("select * from STREAM(dev.t) join stream read_files('/x')") == [(14, 27, "dev.t")]
    assert find_stream_tables("select streamed from stream_log") == []
    assert parse_pipeline_table("CREATE TABLE t AS SELECT 1") is None
    assert parse_pipeline_table("CREATE MATERIALIZED VIEW v") is None  # no query: Spark reports it


def test_sample_data_is_deterministic_and_read_only(tmp_path: Path):
    one = ensure_generated(tmp_path / "a", tmp_path / "a/dbfs")
    two = ensure_generated(tmp_path / "b", tmp_path / "b/dbfs")
    for table in ("nyctaxi/trips", "tpch/nation", "tpch/customer", "tpch/orders", "tpch/lineitem"):
        assert (one / table / "part-00000.csv").read_bytes() == (two / table / "part-00000.csv").read_bytes()
    assert len((one / "nyctaxi/trips/part-00000.csv").read_text().splitlines()) == 3000
    sales = tmp_path / "a/dbfs/databricks-datasets/retail-org/sales_orders"
    record = json.loads((sales / "part-00000.json").read_text().splitlines()[0])
    assert {"customer_id", "customer_name", "number_of_line_items", "order_datetime", "order_number"} <= set(record)
    assert record["order_datetime"].isdigit() and isinstance(record["ordered_products"], list)
    for statement in ("INSERT INTO samples.nyctaxi.trips VALUES (1)", "DROP TABLE samples.tpch.orders"):
        with pytest.raises(ReadOnlySamples, match="read-only"):
            refuse_writes(statement)
    refuse_writes("SELECT * FROM samples.nyctaxi.trips")  # reading is fine
