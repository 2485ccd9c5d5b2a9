"""Unity Catalog names without a JVM: the catalog.schema -> Spark database mapping, SQL text
rewriting, error text, the catalog registry, and the UC REST API over a warehouse dir laid out
the way task processes leave it (the real-Spark side is test_uc_runtime.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime import uc_catalogs, uc_sql
from dbx_assets.local_workspace.runtime import uc_names as uc
from dbx_assets.local_workspace.runtime.uc_catalogs import CatalogRegistry
from dbx_assets.local_workspace.runtime.uc_names import Context
from dbx_assets.local_workspace.runtime.uc_sql import Sql, plan_sql

MAIN = Context("default", frozenset({"dev"}))
IN_DEV = Context("dev__sales", frozenset({"dev"}))


def text(sql: str, ctx: Context = MAIN, **kwargs) -> str:
    plan = plan_sql(sql, ctx, **kwargs)
    assert isinstance(plan, Sql), plan
    return plan.text


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("catalog", "schema", "database"),
    [
        ("main", "sales", "sales"),
        ("hive_metastore", "sales", "sales"),
        ("spark_catalog", "Sales", "sales"),
        ("dev", "sales", "dev__sales"),
        ("DEV", "a_b", "dev__a_b"),
    ],
)
def test_catalog_schema_maps_to_one_spark_database_and_back(catalog, schema, database):
    assert uc.spark_database(catalog, schema) == database
    back = uc.uc_schema(database, {"dev"})
    assert back == ("main" if catalog.lower() in uc.DEFAULT_CATALOG_ALIASES else catalog.lower(), schema.lower())


def test_a_double_underscore_database_belongs_to_main_unless_its_prefix_is_a_catalog():
    assert uc.uc_schema("qa__x", {"dev"}) == ("main", "qa__x")
    assert uc.uc_schema("qa__x", {"dev", "qa"}) == ("qa", "x")
    assert uc.uc_schema("dev__", {"dev"}) == ("main", "dev__")


def test_current_catalog_follows_sparks_current_database():
    assert (MAIN.current_catalog, MAIN.current_schema) == ("main", "default")
    assert (IN_DEV.current_catalog, IN_DEV.current_schema) == ("dev", "sales")


def test_python_api_names():
    assert uc.spark_table_name("main.uc_demo.t", MAIN) == "uc_demo.t"
    assert uc.spark_table_name("hive_metastore.uc_demo.t", MAIN) == "uc_demo.t"
    assert uc.spark_table_name("dev.s.t", MAIN) == "dev__s.t"
    assert uc.spark_table_name("`dev`.`my schema`.t", MAIN) == "`dev__my schema`.t"
    assert uc.spark_table_name("s.t", MAIN) == "s.t"  # two levels: the current catalog, main
    assert uc.spark_table_name("s.t", IN_DEV) == "dev__s.t"  # ... or dev
    assert uc.spark_table_name("t", IN_DEV) == "t"  # one level: Spark's current database is already dev__sales
    assert uc.spark_database_name("dev.s", MAIN) == "dev__s" and uc.spark_database_name("s", IN_DEV) == "dev__s"
    assert uc.split_name("a.`b.c`.`d``e`") == ["a", "b.c", "d`e"]


def test_unknown_catalog_is_databricks_no_such_catalog():
    with pytest.raises(uc.UcNameError, match=r"^\[NO_SUCH_CATALOG_EXCEPTION\] The catalog 'nope' was not found") as err:
        uc.spark_table_name("nope.s.t", MAIN)
    assert err.value.error_class == "NO_SUCH_CATALOG_EXCEPTION"
    with pytest.raises(uc.UcNameError, match="NO_SUCH_CATALOG_EXCEPTION"):
        plan_sql("CREATE SCHEMA nope.s", MAIN)
    with pytest.raises(uc.UcNameError, match="NO_SUCH_CATALOG_EXCEPTION"):
        plan_sql("USE CATALOG nope", MAIN)


# --------------------------------------------------------------------------- SQL text


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT o.id FROM main.s.orders o JOIN dev.s.x USING (id)",
            "SELECT o.id FROM s.orders o JOIN dev__s.x USING (id)",
        ),
        ("CREATE SCHEMA IF NOT EXISTS main.uc_demo", "CREATE SCHEMA IF NOT EXISTS uc_demo"),
        ("CREATE DATABASE dev.s COMMENT 'x'", "CREATE DATABASE dev__s COMMENT 'x'"),
        ("DROP SCHEMA IF EXISTS `dev`.s CASCADE", "DROP SCHEMA IF EXISTS dev__s CASCADE"),
        (
            "CREATE TABLE dev.s.t USING parquet PARTITIONED BY (v) AS SELECT 1 AS id, 'a' AS v",
            "CREATE TABLE dev__s.t USING parquet PARTITIONED BY (v) AS SELECT 1 AS id, 'a' AS v",
        ),
        (
            "INSERT OVERWRITE TABLE `dev`.`s`.`t` SELECT * FROM hive_metastore.a.b",
            "INSERT OVERWRITE TABLE dev__s.t SELECT * FROM a.b",
        ),
        ("DESCRIBE TABLE EXTENDED dev.s.t", "DESCRIBE TABLE EXTENDED dev__s.t"),
        ("SHOW COLUMNS IN dev.s.t", "SHOW COLUMNS IN dev__s.t"),
        ("SHOW TABLES IN dev.s LIKE 'o*'", "SHOW TABLES IN dev__s LIKE 'o*'"),
        ("USE dev.s", "USE dev__s"),
        ("USE SCHEMA main.s", "USE SCHEMA s"),
        ("DROP TABLE IF EXISTS main.s.t", "DROP TABLE IF EXISTS s.t"),
        ("ALTER TABLE dev.s.t RENAME TO dev.s.u", "ALTER TABLE dev__s.t RENAME TO dev__s.u"),
        ("SELECT current_catalog()", "SELECT 'main'"),
    ],
)
def test_sql_names_are_rewritten_in_place(sql, expected):
    assert text(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM s.t WHERE note = 'main.s.t' -- main.x.y",  # literals and comments are not names
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "SELECT * FROM parquet.`dbfs:/x/y`",  # a file, not a table
        "select  *\n  from   t  where x=1;",  # unqualified: Spark's current database
        "SELECT * FROM range(3)",
        "this is not sql at all ((",
        "OPTIMIZE main_table ZORDER BY (a)",
    ],
)
def test_sql_without_uc_names_is_left_byte_for_byte(sql):
    assert text(sql) == sql


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Delta's own statements, which sqlglot does not parse: the name after the keywords.
        ("DESCRIBE DETAIL dev.s.t", "DESCRIBE DETAIL dev__s.t"),
        ("DESC HISTORY main.s.t LIMIT 4", "DESC HISTORY s.t LIMIT 4"),
        ("RESTORE TABLE dev.s.t TO VERSION AS OF 1", "RESTORE TABLE dev__s.t TO VERSION AS OF 1"),
        ("restore dev.s.t timestamp as of '2026-01-01'", "restore dev__s.t timestamp as of '2026-01-01'"),
        ("OPTIMIZE dev.s.t WHERE d > 1 ZORDER BY (id)", "OPTIMIZE dev__s.t WHERE d > 1 ZORDER BY (id)"),
        ("VACUUM dev.s.t RETAIN 168 HOURS", "VACUUM dev__s.t RETAIN 168 HOURS"),
        ("VACUUM delta.`dbfs:/x/y`", "VACUUM delta.`dbfs:/x/y`"),  # a path, not a schema
        ("CONVERT TO DELTA parquet.`/Volumes/c/s/v/t`", "CONVERT TO DELTA parquet.`/Volumes/c/s/v/t`"),
        # The change data feed names its table in a string.
        (
            "SELECT * FROM table_changes('dev.s.t', 1, 3) WHERE id = 'dev.s.t'",
            "SELECT * FROM table_changes('dev__s.t', 1, 3) WHERE id = 'dev.s.t'",
        ),
        # Databricks' time travel shorthand, in the open-source syntax; never inside a literal.
        ("SELECT * FROM dev.s.t@v12 WHERE m = 'a@v1'", "SELECT * FROM dev__s.t VERSION AS OF 12 WHERE m = 'a@v1'"),
        ("SELECT * FROM t@20260102030405678", "SELECT * FROM t TIMESTAMP AS OF '2026-01-02 03:04:05.678'"),
    ],
)
def test_delta_statements_get_spark_names(sql, expected):
    assert text(sql) == expected


def test_two_level_names_follow_the_current_catalog():
    sql = "SELECT * FROM sales.orders o JOIN main.ref.c c ON o.id = c.id"
    assert text(sql, MAIN) == "SELECT * FROM sales.orders o JOIN ref.c c ON o.id = c.id"
    assert text(sql, IN_DEV) == "SELECT * FROM dev__sales.orders o JOIN ref.c c ON o.id = c.id"
    assert text("USE other", IN_DEV) == "USE dev__other"
    assert text("SELECT current_catalog(), current_schema()", IN_DEV) == "SELECT 'dev', 'sales'"


def test_pyspark_placeholders_survive_and_names_around_them_are_rewritten():
    assert (
        text("SELECT * FROM {df} JOIN dev.s.t USING (id)", mask_braces=True)
        == "SELECT * FROM {df} JOIN dev__s.t USING (id)"
    )


def test_column_qualifiers_are_not_taken_for_tables():
    assert text("SELECT o.id, s.v FROM dev.a.orders o JOIN b.c s ON o.id = s.id", IN_DEV) == (
        "SELECT o.id, s.v FROM dev__a.orders o JOIN dev__b.c s ON o.id = s.id"
    )


def test_catalog_statements_are_plans_not_spark_sql():
    assert plan_sql("CREATE CATALOG IF NOT EXISTS qa COMMENT 'it''s'", MAIN) == uc_sql.CreateCatalog("qa", True, "it's")
    assert plan_sql("create catalog qa;", MAIN) == uc_sql.CreateCatalog("qa", False, None)
    assert plan_sql("DROP CATALOG IF EXISTS dev CASCADE", MAIN) == uc_sql.DropCatalog("dev", True, True)
    assert plan_sql("USE CATALOG `dev`", MAIN) == uc_sql.UseCatalog("dev")
    assert plan_sql("SHOW CATALOGS LIKE 'd*'", MAIN) == uc_sql.ShowCatalogs("d*")
    assert plan_sql("SHOW SCHEMAS", IN_DEV) == uc_sql.ShowSchemas("dev", None)
    assert plan_sql("SHOW DATABASES IN hive_metastore", IN_DEV) == uc_sql.ShowSchemas("main", None)
    # SHOW TABLES reads back as UC schemas only where names were mapped
    assert plan_sql("SHOW TABLES IN dev.s", MAIN) == Sql("SHOW TABLES IN dev__s", show_tables_in="dev__s")
    assert plan_sql("SHOW TABLES IN dev__s", MAIN) == Sql("SHOW TABLES IN dev__s")  # dbt-spark's own names
    assert plan_sql("SHOW TABLES", IN_DEV) == Sql("SHOW TABLES", show_tables_in="dev__sales")


def test_create_schema_plans_say_which_database_they_create():
    assert plan_sql("CREATE SCHEMA IF NOT EXISTS dev.s", MAIN) == Sql(
        "CREATE SCHEMA IF NOT EXISTS dev__s", creates_database="dev__s"
    )
    assert plan_sql("CREATE SCHEMA plain", MAIN) == Sql("CREATE SCHEMA plain", creates_database="plain")


def test_spark_errors_read_in_uc_names():
    msg = "[TABLE_OR_VIEW_NOT_FOUND] The table or view `dev__s`.`t` cannot be found. Verify ... `spark_catalog`.`x`.`y`"
    assert uc.uc_error_text(msg, {"dev"}) == (
        "[TABLE_OR_VIEW_NOT_FOUND] The table or view `dev`.`s`.`t` cannot be found. Verify ... `main`.`x`.`y`"
    )
    assert uc.uc_error_text("[SCHEMA_NOT_FOUND] The schema `qa__s` cannot be found.", {"dev"}) == (
        "[SCHEMA_NOT_FOUND] The schema `qa__s` cannot be found."  # qa is no catalog: main's schema qa__s
    )


def test_dbt_schema_is_the_database_of_catalog_and_schema():
    assert uc_catalogs.dbt_schema(None, "analytics") == "analytics"
    assert uc_catalogs.dbt_schema("main", "analytics") == "analytics"
    assert uc_catalogs.dbt_schema("dev", "analytics") == "dev__analytics"


# --------------------------------------------------------------------------- registry


def test_catalog_registry_survives_instances_and_rejects_ambiguous_names(tmp_path):
    reg = CatalogRegistry(tmp_path)
    assert reg.create("dev", "for development") is True
    assert reg.create("dev") is False
    assert CatalogRegistry(tmp_path).entries()["dev"].comment == "for development"
    for bad in ("a__b", "trailing_", "Upper", "main", "hive_metastore"):
        with pytest.raises(uc.UcNameError):
            reg.create(bad)
    reg.drop("dev")
    assert CatalogRegistry(tmp_path).names() == frozenset()


def test_concurrent_create_catalog_registers_once(tmp_path):
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(CatalogRegistry(tmp_path).create("race"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


# --------------------------------------------------------------------------- REST API over a warehouse dir


def _table(warehouse: Path, database: str, name: str, fields: list[dict], partitions: tuple[str, ...] = ()) -> None:
    folder = (warehouse if database == "default" else warehouse / f"{database}.db") / name
    folder.mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"PAR1")
    snapshot = warehouse / "_unity_catalog" / "columns" / database / f"{name}.json"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_text(
        json.dumps(
            {"signature": "x", "schema": {"type": "struct", "fields": fields}, "partition_columns": list(partitions)}
        )
    )


def test_unity_catalog_api_lists_what_is_on_disk(fake_workspace, fake_client):
    from databricks.sdk.errors import NotFound

    warehouse = fake_workspace.paths.warehouse
    CatalogRegistry(warehouse).create("apitest", "api test catalog")
    f = lambda n, t, null=True: {"name": n, "type": t, "nullable": null, "metadata": {}}  # noqa: E731
    _table(
        warehouse,
        "uc_api_sales",
        "orders",
        [
            f("id", "long", False),
            f("amount", "decimal(10,2)"),
            f("tags", {"type": "array", "elementType": "string", "containsNull": True}),
            f("day", "date"),
        ],
        partitions=("day",),
    )
    _table(warehouse, "apitest__raw", "events", [f("payload", "string")])
    (warehouse / "apitest__empty.db").mkdir()

    catalogs = {c.name: c for c in fake_client.catalogs.list()}
    assert {"main", "apitest"} <= set(catalogs) and "hive_metastore" not in catalogs
    assert catalogs["apitest"].comment == "api test catalog"
    assert fake_client.catalogs.get("apitest").full_name == "apitest"

    main_schemas = {s.name for s in fake_client.schemas.list("main")}
    assert {"default", "uc_api_sales"} <= main_schemas and not any(s.startswith("apitest") for s in main_schemas)
    assert sorted(s.full_name for s in fake_client.schemas.list("apitest")) == ["apitest.empty", "apitest.raw"]
    assert fake_client.schemas.get("apitest.raw").catalog_name == "apitest"

    tables = list(fake_client.tables.list("main", "uc_api_sales"))
    assert [t.full_name for t in tables] == ["main.uc_api_sales.orders"]
    orders = fake_client.tables.get("main.uc_api_sales.orders")
    assert orders.table_type.value == "MANAGED" and orders.data_source_format.value == "PARQUET"
    assert orders.storage_location == (warehouse / "uc_api_sales.db" / "orders").as_uri()
    cols = [(c.name, c.type_name.value, c.type_text, c.position, c.nullable, c.partition_index) for c in orders.columns]
    assert cols == [
        ("id", "LONG", "bigint", 0, False, None),
        ("amount", "DECIMAL", "decimal(10,2)", 1, True, None),
        ("tags", "ARRAY", "array<string>", 2, True, None),
        ("day", "DATE", "date", 3, True, 0),
    ]
    assert orders.columns[1].type_precision == 10 and orders.columns[1].type_scale == 2
    assert [c.name for c in fake_client.tables.get("apitest.raw.events").columns] == ["payload"]

    for call, code in [
        (lambda: fake_client.catalogs.get("nope"), "CATALOG_DOES_NOT_EXIST"),
        (lambda: fake_client.schemas.get("main.nope"), "SCHEMA_DOES_NOT_EXIST"),
        (lambda: fake_client.tables.get("main.uc_api_sales.nope"), "TABLE_DOES_NOT_EXIST"),
        (lambda: fake_client.tables.get("main.nope.t"), "TABLE_DOES_NOT_EXIST"),
        (lambda: list(fake_client.tables.list("nope", "s")), "CATALOG_DOES_NOT_EXIST"),
    ]:
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.error_code == code


def test_a_generated_dbt_profile_targets_the_catalogs_database_and_refuses_unknown_catalogs(tmp_path):
    import yaml

    from dbx_assets.local_workspace.runtime.contract import DbtInvocation
    from dbx_assets.local_workspace.runtime.dbt_task import ProfileError, generated_profile

    project = tmp_path / "proj"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: p\nversion: '1.0'\nconfig-version: 2\nprofile: shop\n")
    registry = CatalogRegistry(tmp_path / "warehouse")
    registry.create("dev")

    def schema_for(catalog: str) -> str:
        dbt = DbtInvocation(("dbt build",), project, None, schema="analytics", catalog=catalog, warehouse_id="w")
        out = generated_profile(dbt, project, tmp_path / catalog)
        return yaml.safe_load((out / "profiles.yml").read_text())["shop"]["outputs"]["default"]["schema"]

    uc_catalogs.set_active_registry(registry)  # what install_uc_patches does in a task process
    try:
        assert schema_for("main") == "analytics" and schema_for("hive_metastore") == "analytics"
        # the UC schema itself: the dbt task process resolves `analytics.x` in catalog dev (set_process_catalog)
        assert schema_for("dev") == "analytics"
        with pytest.raises(
            ProfileError, match=r"catalog 'sales': \[NO_SUCH_CATALOG_EXCEPTION\] The catalog 'sales' was not found"
        ):
            schema_for("sales")
    finally:
        uc_catalogs.set_active_registry(None)
