"""Notebook languages and formats, pure logic (no JVM): SQL SOURCE and IPYNB notebooks into cells,
conversions between the formats, SQL statement splitting, SQL parameters (CREATE WIDGET, `:name`
markers, IDENTIFIER(...), `${name}` / `$name`) and the %fs magic on the workspace's storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbx_assets.local_workspace.runtime.dbutils import FsUtils, Widgets
from dbx_assets.local_workspace.runtime.fs_magic import FsMagicError, parse_fs_command, run_fs_magic
from dbx_assets.local_workspace.runtime.notebook import (
    MalformedNotebook,
    UnsupportedNotebookLanguage,
    parse,
    run_cells,
)
from dbx_assets.local_workspace.runtime.notebook_formats import (
    Notebook,
    NotebookCell,
    NotebookFormatError,
    parse_ipynb,
    parse_source,
    to_ipynb,
    to_source,
)
from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper
from dbx_assets.local_workspace.runtime.sql_cells import (
    find_markers,
    fold_identifiers,
    run_sql_cell,
    split_sql,
    substitute_legacy,
    widget_statement,
)

# A SQL notebook the way Databricks exports one (and course notebooks are written).
SQL_NOTEBOOK = """-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Daily revenue
-- MAGIC Builds `revenue` for the `day` widget.

-- COMMAND ----------

-- DBTITLE 1,Parameters
CREATE WIDGET TEXT day DEFAULT '2024-01-01';
CREATE WIDGET DROPDOWN region DEFAULT 'emea' CHOICES SELECT * FROM (VALUES ('emea'), ('amer'))

-- COMMAND ----------

-- several statements; the last one's result is the cell's
CREATE OR REPLACE TEMP VIEW orders AS SELECT 1 AS id, 'emea' AS region;
SELECT region, count(*) AS n FROM orders WHERE region = :region GROUP BY region

-- COMMAND ----------

-- MAGIC %python
-- MAGIC display(_sqldf)
-- MAGIC
-- MAGIC assert _sqldf.count() == 1

-- COMMAND ----------

-- MAGIC %fs ls dbfs:/tmp
"""


def ipynb(cells: list[tuple[str, str]], language: str = "python", **extra_metadata: Any) -> str:
    """An .ipynb as Databricks exports one: cell metadata, the notebook's language in its own key."""
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": kind,
                    "metadata": {"application/vnd.databricks.v1+cell": {"title": "", "showTitle": False}},
                    "source": source.splitlines(keepends=True),
                    **({"execution_count": 0, "outputs": []} if kind == "code" else {}),
                }
                for kind, source in cells
            ],
            "metadata": {
                "application/vnd.databricks.v1+notebook": {"language": language, "notebookName": "nb", "widgets": {}},
                "language_info": {"name": language},
                **extra_metadata,
            },
            "nbformat": 4,
            "nbformat_minor": 0,
        }
    )


# ----------------------------------------------------------------------------------- parsing
def test_a_sql_source_notebook_parses_into_sql_python_md_and_fs_cells():
    cells = parse(SQL_NOTEBOOK, "/Shared/revenue")
    assert [(c.number, c.kind) for c in cells] == [(1, "md"), (2, "sql"), (3, "sql"), (4, "python"), (5, "fs")]
    assert "DBTITLE" not in cells[1].source and cells[1].source.startswith("CREATE WIDGET TEXT day")
    assert cells[3].source.strip() == "display(_sqldf)\n\nassert _sqldf.count() == 1"
    assert cells[4].source == "ls dbfs:/tmp"
    assert len(split_sql(cells[2].source)) == 2


def test_an_ipynb_notebook_parses_its_cells_magics_and_language():
    text = ipynb(
        [
            ("markdown", "# Orders\nLoads the orders."),
            ("code", "df = spark.range(3)"),
            ("code", "%sql\nSELECT 1;\nSELECT 2"),
            ("code", "%fs ls /tmp"),
            ("code", "%run ./helpers $x=1"),
            ("code", "%pip install tomli-w==1.0.0"),
            ("code", "%sh\necho hi"),
            ("raw", "ignored"),
            ("code", ""),
        ]
    )
    cells = parse(text, "/Shared/orders")
    assert [(c.number, c.kind) for c in cells] == [
        (1, "md"),
        (2, "python"),
        (3, "sql"),
        (4, "fs"),
        (5, "run"),
        (6, "pip"),
        (7, "sh"),
        (8, "python"),
    ]
    assert cells[2].source.strip() == "SELECT 1;\nSELECT 2" and cells[3].source == "ls /tmp"
    assert cells[4].source == "./helpers $x=1" and cells[6].source.strip() == "echo hi"
    # A SQL .ipynb: plain cells are SQL, %python cells Python.
    sql_cells = parse(ipynb([("code", "SELECT 1"), ("code", "%python\nprint(_sqldf)")], "sql"))
    assert [c.kind for c in sql_cells] == ["sql", "python"]
    # Without Databricks' key, Jupyter's language_info (or the kernelspec) says the language.
    plain = json.dumps({"cells": [], "metadata": {"kernelspec": {"language": "sql"}}, "nbformat": 4})
    assert parse_ipynb(plain).language == "SQL"


def test_scala_and_r_notebooks_fail_with_a_clear_message():
    with pytest.raises(
        UnsupportedNotebookLanguage, match=r"^local clusters run Python and SQL notebooks; /a/etl is SCALA"
    ):
        parse("// Databricks notebook source\nval x = 1\n", "/a/etl")
    with pytest.raises(UnsupportedNotebookLanguage, match="/a/model is R"):
        parse("# Databricks notebook source\nx <- 1\n", "/a/model", language="R")  # R has Python's header
    with pytest.raises(UnsupportedNotebookLanguage, match="/a/nb is SCALA"):
        parse(ipynb([("code", "val x = 1")], "scala"), "/a/nb")
    assert isinstance(UnsupportedNotebookLanguage("x"), MalformedNotebook)  # the task fails, it does not crash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"cells": [', "is not a valid Jupyter notebook: Expecting"),
        ('{"metadata": {}}', "it has no 'cells' list"),
        ('{"cells": [{"source": "x"}]}', "cell 1 has no cell_type"),
        ('{"cells": [{"cell_type": "code", "source": 5}]}', "cell 1's source is not text"),
        ('{"cells": [], "nbformat": 3}', "nbformat 3; only nbformat 4"),
        ('{"cells": [], "metadata": {"language_info": {"name": "julia"}}}', "'julia' is not one of python"),
    ],
)
def test_malformed_ipynb_is_rejected_naming_the_problem(text, message):
    with pytest.raises(NotebookFormatError, match=message):
        parse_ipynb(text, "/Shared/bad")
    with pytest.raises(MalformedNotebook, match=message):
        parse(text, "/Shared/bad")


# ----------------------------------------------------------------------------------- conversions
def test_source_and_ipynb_convert_both_ways_as_databricks_exports_them():
    source = parse_source(SQL_NOTEBOOK)
    exported = json.loads(to_ipynb(source, "revenue"))
    meta = exported["metadata"]["application/vnd.databricks.v1+notebook"]
    assert (meta["language"], meta["notebookName"], exported["nbformat"]) == ("sql", "revenue", 4)
    kinds = [(c["cell_type"], "".join(c["source"]).split("\n")[0]) for c in exported["cells"]]
    assert kinds == [
        ("markdown", "# Daily revenue"),
        ("code", "CREATE WIDGET TEXT day DEFAULT '2024-01-01';"),
        ("code", "-- several statements; the last one's result is the cell's"),
        ("code", "%python"),
        ("code", "%fs ls dbfs:/tmp"),
    ]
    assert exported["cells"][1]["metadata"]["application/vnd.databricks.v1+cell"]["title"] == "Parameters"
    back = parse_ipynb(json.dumps(exported))
    assert back == source  # nothing lost either way
    assert to_source(back) == to_source(source)
    assert to_source(back).startswith("-- Databricks notebook source\n-- MAGIC %md\n-- MAGIC # Daily revenue\n")
    assert "\n\n-- COMMAND ----------\n\n-- DBTITLE 1,Parameters\nCREATE WIDGET" in to_source(back)
    python = Notebook("PYTHON", (NotebookCell("x = 1"), NotebookCell("%sql\nSELECT 1\n\nSELECT 2")))
    assert to_source(python) == (
        "# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\n"
        "# MAGIC %sql\n# MAGIC SELECT 1\n# MAGIC\n# MAGIC SELECT 2\n"
    )
    assert parse_source(to_source(python)) == python


# ----------------------------------------------------------------------------------- splitting
def test_statements_split_around_strings_comments_and_semicolons():
    text = """
    -- a comment; with a semicolon
    SELECT 'it''s; fine', "a;b", `c;d` AS `e;f`;  /* block; comment */
    SELECT /*+ BROADCAST(t) */ 'escaped \\' quote; still a string' FROM t;;
    /* only a comment; */
    SELECT 3 -- trailing; comment
    ;
    -- nothing after this
    """
    assert split_sql(text) == [
        "SELECT 'it''s; fine', \"a;b\", `c;d` AS `e;f`",
        "/* block; comment */\n    SELECT /*+ BROADCAST(t) */ 'escaped \\' quote; still a string' FROM t",
        "/* only a comment; */\n    SELECT 3",  # a comment is part of the statement it precedes
    ]
    assert split_sql("/* nested /* comment; */ still; */ SELECT 1") == ["/* nested /* comment; */ still; */ SELECT 1"]
    assert split_sql("  \n-- just a comment\n") == []


# ----------------------------------------------------------------------------------- parameters
VALUES = {"catalog": "main", "schema": "sales", "table": "orders", "day": "2024-05-01", "min_total": "10"}


def test_named_markers_skip_casts_strings_comments_and_json_paths():
    text = (
        "SELECT raw:customer.id, amount::double, '10:30:00' AS t, `a:b` -- :not_me\n"
        "FROM t WHERE day = :day AND total >= :min_total /* :nor_me */ AND x IN (:a,:b) AND y=:c"
    )
    assert [name for name, _, _ in find_markers(text)] == ["day", "min_total", "a", "b", "c"]
    assert find_markers(":first") == [("first", 0, 6)]


def test_identifier_clauses_fold_into_names_when_every_marker_has_a_value():
    fold = lambda text: fold_identifiers(text, VALUES.get)  # noqa: E731
    assert fold("SELECT * FROM IDENTIFIER(:catalog || '.' || :schema || '.' || :table) WHERE d = :day") == (
        "SELECT * FROM main.sales.orders WHERE d = :day"
    )
    assert fold("INSERT INTO identifier(:table) SELECT 1") == "INSERT INTO orders SELECT 1"
    assert fold("SELECT 'IDENTIFIER(:table)'") == "SELECT 'IDENTIFIER(:table)'"  # inside a string
    assert fold("SELECT * FROM IDENTIFIER(:missing || '.t')") == "SELECT * FROM IDENTIFIER(:missing || '.t')"
    assert fold("SELECT * FROM IDENTIFIER(upper(:table))") == "SELECT * FROM IDENTIFIER(upper(:table))"
    # A value that is not a name stays Spark's to judge (no SQL injection through a parameter).
    evil = {"t": "x; DROP TABLE y"}
    assert fold_identifiers("SELECT * FROM IDENTIFIER(:t)", evil.get) == "SELECT * FROM IDENTIFIER(:t)"


def test_legacy_substitution_fills_dollar_names_but_not_comments_or_escapes():
    text = "SELECT * FROM ${schema}.$table WHERE d = '${day}' AND price = '\\$5' AND x = $unknown -- $table"
    assert substitute_legacy(text, VALUES.get) == (
        "SELECT * FROM sales.orders WHERE d = '2024-05-01' AND price = '\\$5' AND x = $unknown -- $table"
    )
    assert substitute_legacy("SELECT '${spark.sql.x}'", VALUES.get) == "SELECT '${spark.sql.x}'"


def test_widget_statements():
    text = widget_statement('CREATE WIDGET TEXT `day` DEFAULT "2024-01-01"')
    assert text is not None and (text.action, text.kind, text.name, text.default) == (
        "create",
        "TEXT",
        "day",
        "2024-01-01",
    )
    dropdown = widget_statement("create widget dropdown region default 'emea' choices select distinct r from t")
    assert dropdown is not None and (dropdown.kind, dropdown.default, dropdown.choices) == (
        "DROPDOWN",
        "emea",
        "select distinct r from t",
    )
    removed = widget_statement("-- done with it\nREMOVE WIDGET region")
    assert removed is not None and (removed.action, removed.name) == ("remove", "region")
    assert widget_statement("CREATE TABLE widget AS SELECT 1") is None


class FakeSpark:
    """Records what reaches spark.sql; a DataFrame is a list of rows here."""

    def __init__(self, answers: dict[str, list[tuple]] | None = None):
        self.calls: list[tuple[str, dict | None]] = []
        self.answers = answers or {}

    def sql(self, text: str, args: dict | None = None) -> Any:
        self.calls.append((text, args))
        return FakeFrame(self.answers.get(text, []))


class FakeFrame(list):
    columns = ["x"]

    def collect(self) -> list:
        return list(self)


def test_a_sql_cell_defines_widgets_and_binds_parameters_from_task_parameters():
    spark = FakeSpark({"SELECT * FROM (VALUES ('emea'), ('amer'))": [("emea",), ("amer",)]})
    widgets = Widgets({"day": "2024-05-01", "schema": "sales"})  # the task's base/job parameters
    cell = (
        parse(SQL_NOTEBOOK)[1].source
        + ";\n"
        + ("SELECT * FROM IDENTIFIER('main.' || :schema || '.orders') WHERE d = :day AND r = :region AND s = '${day}'")
    )
    run_sql_cell(cell, spark, widgets)
    assert widgets.get("day") == "2024-05-01"  # passed wins over the widget's DEFAULT
    assert widgets.get("region") == "emea"  # the default, one of its CHOICES
    assert spark.calls == [
        ("SELECT * FROM (VALUES ('emea'), ('amer'))", None),
        (
            "SELECT * FROM main.sales.orders WHERE d = :day AND r = :region AND s = '2024-05-01'",
            {"day": "2024-05-01", "region": "emea"},
        ),
    ]
    with pytest.raises(ValueError, match="is not one of its choices"):
        run_sql_cell(
            "CREATE WIDGET DROPDOWN r DEFAULT 'apac' CHOICES SELECT * FROM (VALUES ('emea'), ('amer'))", spark, widgets
        )
    run_sql_cell("REMOVE WIDGET region", spark, widgets)
    with pytest.raises(Exception, match="No input widget named region"):
        widgets.get("region")
    spark.calls.clear()
    run_sql_cell("SELECT :nope", spark, widgets)  # unbound: Spark's UNBOUND_SQL_PARAMETER names it
    assert spark.calls == [("SELECT :nope", {})]


def test_sql_cells_set_sqldf_and_show_only_the_last_statement():
    spark = FakeSpark({"SELECT 2": [(2,)]})
    shown: list[Any] = []
    namespace: dict[str, Any] = {"dbutils": type("D", (), {"widgets": Widgets({})})()}
    run_cells(parse("-- Databricks notebook source\nSELECT 1;\nSELECT 2\n"), namespace, spark, shown.append)
    assert shown == [[(2,)]] and namespace["_sqldf"] == [(2,)]
    assert [c[0] for c in spark.calls] == ["SELECT 1", "SELECT 2"]


# ----------------------------------------------------------------------------------- %fs
def test_fs_commands_parse_like_databricks():
    assert parse_fs_command("cp -r dbfs:/a dbfs:/b") == ("cp", ["dbfs:/a", "dbfs:/b"], {"recurse": "true"})
    assert parse_fs_command('put --overwrite=true /x "two words"') == (
        "put",
        ["/x", "two words"],
        {"overwrite": "true"},
    )
    assert parse_fs_command("head --maxBytes=5 /x") == ("head", ["/x"], {"maxBytes": "5"})


def test_fs_magic_runs_dbutils_fs_on_the_workspace_storage(tmp_path: Path, capsys):
    fs = FsUtils(PathMapper(tmp_path / "dbfs", tmp_path / "volumes"))
    shown: list[Any] = []

    def fs_cell(text: str) -> str:
        run_fs_magic(text, fs, shown.append)
        return capsys.readouterr().out

    assert fs_cell("mkdirs dbfs:/landing/day=1") == "True\n"
    assert fs_cell('put dbfs:/landing/day=1/a.csv "id,name\n1,ada"') == "Wrote 13 bytes.\n"
    with pytest.raises(FileExistsError):
        fs_cell('put dbfs:/landing/day=1/a.csv "again"')
    fs_cell('put -f /landing/day=1/a.csv "id,name\n1,ada\n2,alan"')
    assert fs_cell("head --maxBytes=7 dbfs:/landing/day=1/a.csv") == "id,name\n"
    fs_cell("cp -r dbfs:/landing dbfs:/copy")
    fs_cell("mv dbfs:/copy/day=1/a.csv dbfs:/copy/b.csv")
    fs_cell("ls dbfs:/copy")
    assert [(f.name, f.size) for f in shown[-1]] == [("b.csv", 20), ("day=1/", 0)]
    assert shown[-1][0].path == "dbfs:/copy/b.csv"
    with pytest.raises(OSError, match="non-empty directory"):
        fs_cell("rm dbfs:/landing")
    assert fs_cell("rm -r dbfs:/landing") == "True\n" and not (tmp_path / "dbfs" / "landing").exists()
    for bad, message in [
        ("rmdir /x", "%fs rmdir is not supported on the local workspace; use one of ls, head"),
        ("cp /a", r"Usage: %fs cp \[-r\] FROM TO"),
        ("ls -f /", "does not take --overwrite"),
        ("  ", "needs a command"),
    ]:
        with pytest.raises(FsMagicError, match=message):
            run_fs_magic(bad, fs, shown.append)
