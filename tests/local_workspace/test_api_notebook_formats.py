"""Notebook formats in the Workspace API, through the real SDK over HTTP (shared session server, no JVM):
import with SOURCE / JUPYTER / AUTO and a language, get-status, export in either format (converting as
Databricks does), and Databricks-shaped errors for malformed content."""

from __future__ import annotations

import base64
import io
import json

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

FOLDER = "/Shared/formats"

SQL_SOURCE = b"""-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Orders by region

-- COMMAND ----------

CREATE WIDGET TEXT region DEFAULT 'emea';
SELECT * FROM orders WHERE region = :region

-- COMMAND ----------

-- MAGIC %python
-- MAGIC print(_sqldf.count())
"""

IPYNB = json.dumps(
    {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Load\n", "Loads the landing files."]},
            {"cell_type": "code", "execution_count": 0, "metadata": {}, "outputs": [], "source": ["x = 1"]},
            {
                "cell_type": "code",
                "execution_count": 0,
                "metadata": {"application/vnd.databricks.v1+cell": {"title": "Count", "showTitle": True}},
                "outputs": [],
                "source": ["%sql\n", "SELECT count(*) FROM orders"],
            },
        ],
        "metadata": {
            "application/vnd.databricks.v1+notebook": {"language": "python", "notebookName": "load", "widgets": {}},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 0,
    },
    indent=1,
).encode()


@pytest.fixture(scope="module")
def w(workspace_client: WorkspaceClient) -> WorkspaceClient:
    workspace_client.workspace.mkdirs(FOLDER)
    return workspace_client


def export(w: WorkspaceClient, path: str, fmt: ExportFormat) -> tuple[bytes, str | None]:
    out = w.workspace.export(path, format=fmt)
    assert out.content is not None
    return base64.b64decode(out.content), out.file_type


def test_a_sql_source_notebook_imports_with_auto_and_exports_in_both_formats(w):
    w.workspace.upload(f"{FOLDER}/orders.sql", io.BytesIO(SQL_SOURCE), format=ImportFormat.AUTO, overwrite=True)
    status = w.workspace.get_status(f"{FOLDER}/orders")  # the extension goes, as on Databricks
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.SQL)
    assert export(w, f"{FOLDER}/orders", ExportFormat.SOURCE) == (SQL_SOURCE, "sql")
    assert export(w, f"{FOLDER}/orders", ExportFormat.AUTO) == (SQL_SOURCE, "sql")
    assert w.workspace.download(f"{FOLDER}/orders").read() == SQL_SOURCE
    content, file_type = export(w, f"{FOLDER}/orders", ExportFormat.JUPYTER)
    doc = json.loads(content)
    assert file_type == "ipynb" and doc["nbformat"] == 4
    assert doc["metadata"]["application/vnd.databricks.v1+notebook"]["language"] == "sql"
    assert [(c["cell_type"], "".join(c["source"])) for c in doc["cells"]] == [
        ("markdown", "# Orders by region"),
        ("code", "CREATE WIDGET TEXT region DEFAULT 'emea';\nSELECT * FROM orders WHERE region = :region"),
        ("code", "%python\nprint(_sqldf.count())"),
    ]
    # ...and that .ipynb imported elsewhere exports as the same SOURCE again.
    w.workspace.import_(
        f"{FOLDER}/orders_copy", content=base64.b64encode(content).decode(), format=ImportFormat.JUPYTER
    )
    assert w.workspace.get_status(f"{FOLDER}/orders_copy").language == Language.SQL
    assert export(w, f"{FOLDER}/orders_copy", ExportFormat.SOURCE) == (SQL_SOURCE, "sql")


def test_an_ipynb_imports_as_a_notebook_and_exports_as_source(w):
    w.workspace.upload(f"{FOLDER}/load.ipynb", io.BytesIO(IPYNB), format=ImportFormat.AUTO, overwrite=True)
    status = w.workspace.get_status(f"{FOLDER}/load")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.PYTHON)
    assert export(w, f"{FOLDER}/load", ExportFormat.JUPYTER) == (IPYNB, "ipynb")
    assert export(w, f"{FOLDER}/load", ExportFormat.AUTO) == (IPYNB, "ipynb")  # as it is stored
    assert export(w, f"{FOLDER}/load", ExportFormat.SOURCE) == (
        b"# Databricks notebook source\n# MAGIC %md\n# MAGIC # Load\n# MAGIC Loads the landing files.\n\n"
        b"# COMMAND ----------\n\nx = 1\n\n# COMMAND ----------\n\n"
        b"# DBTITLE 1,Count\n# MAGIC %sql\n# MAGIC SELECT count(*) FROM orders\n",
        "py",
    )
    # JUPYTER keeps the path it is given; the language comes from the notebook's metadata.
    sql_nb = IPYNB.replace(b'"language": "python"', b'"language": "sql"')
    w.workspace.import_(
        f"{FOLDER}/load_sql", content=base64.b64encode(sql_nb).decode(), format=ImportFormat.JUPYTER, overwrite=True
    )
    assert w.workspace.get_status(f"{FOLDER}/load_sql").language == Language.SQL
    assert export(w, f"{FOLDER}/load_sql", ExportFormat.SOURCE)[0].startswith(b"-- Databricks notebook source\n")


def test_source_imports_take_their_language(w):
    for language, body, header in [
        (Language.SQL, b"SELECT 1", b"-- Databricks notebook source\n"),
        (Language.SCALA, b"val x = 1", b"// Databricks notebook source\n"),
        (Language.R, b"x <- 1", b"# Databricks notebook source\n"),
    ]:
        path = f"{FOLDER}/src_{language.value.lower()}"
        w.workspace.import_(
            path, content=base64.b64encode(body).decode(), format=ImportFormat.SOURCE, language=language, overwrite=True
        )
        assert w.workspace.get_status(path).language == language
        assert export(w, path, ExportFormat.SOURCE) == (header + body, language.value.lower())
    assert [o.path for o in w.workspace.list(FOLDER) if o.language == Language.R] == [f"{FOLDER}/src_r"]


def raw(local_workspace, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        local_workspace.host + path,
        headers={"Authorization": f"Bearer {local_workspace.token}"},
        timeout=10,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"path": f"{FOLDER}/bad", "format": "JUPYTER", "content": base64.b64encode(b'{"cells": [').decode()},
            f"Cannot import {FOLDER}/bad as a notebook: {FOLDER}/bad is not a valid Jupyter notebook: Expecting value",
        ),
        (
            {"path": f"{FOLDER}/bad.ipynb", "format": "AUTO", "content": base64.b64encode(b'{"x": 1}').decode()},
            "is not a valid Jupyter notebook: it has no 'cells' list",
        ),
        (
            {"path": f"{FOLDER}/bad", "format": "SOURCE", "content": base64.b64encode(b"x").decode()},
            "The language field is required when importing with format SOURCE.",
        ),
        (
            {"path": f"{FOLDER}/bad", "format": "SOURCE", "language": "PYTHON", "content": "/w=="},
            f"The content of {FOLDER}/bad is not UTF-8 text",
        ),
        (
            {"path": f"{FOLDER}/bad", "format": "HTML", "content": base64.b64encode(b"<html/>").decode()},
            "Import format HTML is not supported by the local workspace; use SOURCE, JUPYTER, AUTO, RAW.",
        ),
    ],
)
def test_malformed_imports_answer_in_databricks_shape(w, local_workspace, body, message):
    r = raw(local_workspace, "POST", "/api/2.0/workspace/import", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE" and message in r.json()["message"]
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.get_status(body["path"].removesuffix(".ipynb"))  # nothing was created


def test_exports_that_cannot_be_made_are_errors(w):
    w.workspace.upload(f"{FOLDER}/data.csv", io.BytesIO(b"a,b\n1,2\n"), format=ImportFormat.AUTO, overwrite=True)
    assert w.workspace.get_status(f"{FOLDER}/data.csv").object_type == ObjectType.FILE
    with pytest.raises(InvalidParameterValue, match="Only notebooks can be exported in JUPYTER format"):
        w.workspace.export(f"{FOLDER}/data.csv", format=ExportFormat.JUPYTER)
    with pytest.raises(InvalidParameterValue, match="Export format HTML is not supported"):
        w.workspace.export(f"{FOLDER}/data.csv", format=ExportFormat.HTML)
