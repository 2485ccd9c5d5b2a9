"""Unit tests of SOURCE-format parsing and SQL statement splitting (pure logic)."""

from __future__ import annotations

import pytest

from dbx_assets.local_workspace.runtime.dbutils import Widgets
from dbx_assets.local_workspace.runtime.notebook import MalformedNotebook, parse, split_sql

SOURCE = """# Databricks notebook source
# DBTITLE 1,Setup
x = 1

# COMMAND ----------

# MAGIC %md
# MAGIC # Heading

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT 1;
# MAGIC SELECT 2

# COMMAND ----------

# MAGIC %python
# MAGIC y = x + 1
"""


def test_cells_are_split_and_magics_recognised():
    cells = parse(SOURCE)
    assert [(c.number, c.kind) for c in cells] == [(1, "python"), (2, "md"), (3, "sql"), (4, "python")]
    assert cells[0].source.strip() == "x = 1"  # DBTITLE dropped
    assert split_sql(cells[2].source) == ["SELECT 1", "SELECT 2"]
    assert cells[3].source.strip() == "y = x + 1"


def test_missing_header_and_unsupported_magic_are_rejected():
    with pytest.raises(MalformedNotebook, match="first line must be '# Databricks notebook source'"):
        parse("x = 1\n", "/Repos/a/nb")
    with pytest.raises(MalformedNotebook, match="Cell 2 uses %scala"):
        parse("# Databricks notebook source\nx=1\n# COMMAND ----------\n# MAGIC %scala\n# MAGIC val x = 1\n")


def test_sql_split_respects_quotes_and_comments():
    text = "SELECT 'a;b' AS s; -- trailing; comment\nSELECT `c;d` FROM t;\n\n"
    assert split_sql(text) == ["SELECT 'a;b' AS s", "SELECT `c;d` FROM t"]


def test_widget_precedence_passed_over_default():
    w = Widgets({"a": "passed"})
    w.text("a", "default")
    w.text("b", "default_b")
    assert (w.get("a"), w.get("b"), w.getArgument("c", "fallback")) == ("passed", "default_b", "fallback")
    w.remove("b")
    with pytest.raises(Exception, match="No input widget named b is defined"):
        w.get("b")
