"""The pure parts of dbt-databricks' connector over the cluster session (runtime/dbsql_session.py)
and the information_schema it answers (runtime/information_schema.py): statement text in, text or
rows out, no Spark. Their real use (dbt-databricks building projects on a local cluster) is
tests/test_dbt_databricks.py and tests/test_dbt_specs.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from dbx_assets.local_workspace.runtime import dbsql_session
from dbx_assets.local_workspace.runtime.information_schema import (
    VIEW_COLUMNS,
    InformationSchema,
    Relation,
    Scope,
    UnknownInformationSchemaView,
    parse_table_information,
    references,
    scope_of,
)


def test_information_schema_references_name_their_catalog_and_view():
    text = (
        "SELECT * FROM `system`.`information_schema`.`tables` t "
        "JOIN dev.information_schema.columns c USING (table_name) "
        "JOIN information_schema.VIEWS v USING (table_name)"
    )
    found = [(r.catalog, r.view, text[r.start : r.end]) for r in references(text, "main")]
    assert found == [
        ("system", "tables", "`system`.`information_schema`.`tables`"),
        ("dev", "columns", "dev.information_schema.columns"),
        ("main", "views", "information_schema.VIEWS"),  # a bare one: the connection's catalog
    ]
    assert references("select information_schema_x from t", "main") == []


def test_the_scope_is_what_the_statements_literal_filters_name():
    sql = (
        "SELECT table_name FROM x WHERE table_catalog = 'main' AND (table_schema = 'Sales' OR "
        "kcu.table_schema = 'ops') AND table_name = 'Orders'"
    )
    scope = scope_of(sql, "system", ["main", "dev"])
    assert scope.catalogs == ("dev", "main")  # `system` sees every catalog
    assert scope.schemas == {"sales", "ops"} and scope.tables == {"orders"}
    assert scope.wants_schema("SALES") and not scope.wants_schema("hr")
    unfiltered = scope_of("SELECT * FROM x", "dev", ["main", "dev"])
    assert unfiltered.catalogs == ("dev",) and unfiltered.schemas is None and unfiltered.wants_table("any")


def test_show_table_extended_information_is_parsed_with_multi_line_view_text():
    info = (
        "Catalog: spark_catalog\nDatabase: analytics\nTable: v1\nCreated Time: Tue Dec 08 00:01:39 UTC 2026\n"
        "Type: VIEW\nView Text: select id\nfrom analytics.t1\nView Original Text: select id\n"
        "Schema: root\n |-- id: integer (nullable = true)\n"
    )
    parsed = parse_table_information(info)
    assert parsed["Type"] == "VIEW" and parsed["Table"] == "v1"
    assert parsed["View Text"] == "select id\nfrom analytics.t1"
    assert parsed["Schema"] == "root"  # the tree lines are not keys


def test_an_unknown_view_is_a_table_not_found_error_naming_what_exists():
    schema = InformationSchema(spark=None, catalogs=lambda: [])
    with pytest.raises(UnknownInformationSchemaView, match=r"^\[TABLE_OR_VIEW_NOT_FOUND\].*`volumes`.*tables"):
        schema.view("volumes", scope_of("", "main", []))
    # dbt-databricks' lookups read these columns (metadata.sql, constraints.sql, tags.sql, catalog.sql)
    for view, needed in {
        "tables": {"table_name", "table_type", "data_source_format", "table_owner", "last_altered", "comment"},
        "columns": {"column_name", "ordinal_position", "full_data_type", "is_nullable", "comment"},
        "key_column_usage": {"constraint_name", "column_name", "ordinal_position"},
        "table_tags": {"catalog_name", "schema_name", "tag_name", "tag_value"},
    }.items():
        assert needed <= {name for name, _ in VIEW_COLUMNS[view]}, view


def test_seed_values_are_rendered_inline_the_way_the_connector_does():
    sql = dbsql_session._render_inline(
        "insert into t values (%s, %s, %s, %s, %s)",
        [1, "O'Brien \\ x", None, datetime.date(2025, 3, 1), 2.5],
    )
    assert sql == "insert into t values (1, 'O\\'Brien \\\\ x', NULL, '2025-03-01', 2.5)"
    assert dbsql_session._render_inline("select '100%'", None) == "select '100%'"  # no parameters: untouched


class _NoSpark:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Spark was used for {name}")


def test_the_runtime_version_question_is_answered_without_spark():
    conn = dbsql_session.SessionConnection(_NoSpark(), "main", InformationSchema(_NoSpark(), lambda: []))
    with conn.cursor() as cursor:
        cursor.execute('/* {"app": "dbt"} */ SET spark.databricks.clusterUsageTags.sparkVersion')
        assert cursor.fetchone() == ("spark.databricks.clusterUsageTags.sparkVersion", "15.4.x-scala2.12")
        assert cursor.fetchone() is None
        assert [d[0] for d in cursor.description or []] == ["key", "value"]
    with pytest.raises(Exception, match="Cursor is not open"):
        cursor.fetchall()
    assert len(conn.get_session_id_hex()) == 32


def test_metadata_patterns_are_sql_like():
    assert dbsql_session._like("Orders_2024", "orders%")
    assert dbsql_session._like("ab", "a_") and not dbsql_session._like("abc", "a_")
    assert not dbsql_session._like("xorders", "orders%")


def test_install_replaces_the_connector_and_the_spog_probe():
    import databricks.sql
    from dbt.adapters.databricks.spog import probe

    before = (databricks.sql.connect, probe.probe_host)
    try:
        dbsql_session.install()
        assert databricks.sql.connect is dbsql_session.connect
        assert probe.probe_host("127.0.0.1:1").host_type is None  # no request: nothing is routed here
    finally:
        databricks.sql.connect, probe.probe_host = before


class _Catalog(InformationSchema):
    """The local catalog as lists (what SHOW SCHEMAS / SHOW TABLE EXTENDED would answer)."""

    def __init__(self, relations: list[Relation]):
        super().__init__(spark=None, catalogs=lambda: [])
        self._relations = relations

    def schemas(self, catalog: str) -> list[str]:
        return sorted({r.schema for r in self._relations if r.catalog == catalog})

    def relations(self, scope: Scope) -> list[Relation]:
        return [r for r in self._relations if r.catalog in scope.catalogs and scope.wants_schema(r.schema)]


def _relation(schema: str, name: str, kind: str) -> Relation:
    return Relation("main", schema, name, kind, "delta", "local", None, None, None, None)


def test_the_metadata_calls_answer_as_the_connectors_do():
    catalog = _Catalog(
        [
            _relation("shop", "orders", "MANAGED"),
            _relation("shop", "v_orders", "VIEW"),
            _relation("hr", "staff", "EXTERNAL"),
        ]
    )
    cursor = dbsql_session.SessionConnection(_NoSpark(), "main", catalog).cursor()
    # dbt-databricks' hive_metastore path: list_tables(database, schema) reads TABLE_NAME / TABLE_TYPE
    rows = cursor.tables("hive_metastore", "shop").fetchall()
    assert [d[0] for d in cursor.description or []][:4] == ["TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE"]
    assert [(r[2], r[3]) for r in rows] == [("orders", "TABLE"), ("v_orders", "VIEW")]
    assert [r[2] for r in cursor.tables("main", None, "v%", ["VIEW"]).fetchall()] == ["v_orders"]
    assert cursor.schemas("main", "s%").fetchall() == [("shop", "main")]
