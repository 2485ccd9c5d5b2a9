"""Notebooks in Databricks' other languages and formats on a real local cluster (one JVM for the
module), imported and run through the real SDK over HTTP: a SQL notebook written like Databricks'
course notebooks (CREATE WIDGET, several statements per cell, a `-- MAGIC %python` cell reading
`_sqldf`), an .ipynb with `%fs` and `%sql` cells, SQL parameters (`:name`, IDENTIFIER(...),
`${name}` / `$name`) filled from base and job parameters, and Scala / R notebooks failing clearly."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

from dbx_assets.local_workspace.app import LocalWorkspace

FOLDER = "/Shared/formats"
RUN_TIMEOUT = timedelta(minutes=4)

# A SQL notebook as Databricks exports one, in the style of its course notebooks.
ORDERS_BY_REGION_SQL = """-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Orders by region
-- MAGIC Aggregates the day's raw orders per region into `<target_schema>.orders_by_region` and shows the
-- MAGIC region picked in the `region` widget.

-- COMMAND ----------

CREATE WIDGET TEXT target_schema DEFAULT 'formats_dev';
CREATE WIDGET DROPDOWN region DEFAULT 'emea' CHOICES SELECT * FROM (VALUES ('emea'), ('amer'), ('apac'))

-- COMMAND ----------

-- DBTITLE 1,Raw orders
CREATE SCHEMA IF NOT EXISTS ${target_schema};

CREATE OR REPLACE TEMP VIEW raw_orders AS
SELECT * FROM VALUES
  (1, 'emea', 120.0, 'ship: 10:30; fragile'),  -- a comment; with a semicolon and a :colon
  (2, 'amer', 80.5, 'none'),
  (3, 'emea', 42.0, 'none'),
  (4, 'amer', 19.5, 'leave at door; ring twice')
AS t(order_id, region, amount, note);

DROP TABLE IF EXISTS ${target_schema}.orders_by_region;

CREATE TABLE ${target_schema}.orders_by_region USING parquet AS
SELECT region, count(*) AS orders, sum(amount) AS revenue
FROM raw_orders
GROUP BY region;

SELECT * FROM ${target_schema}.orders_by_region WHERE region = :region

-- COMMAND ----------

-- MAGIC %python
-- MAGIC import json
-- MAGIC
-- MAGIC row = _sqldf.first()
-- MAGIC print(f"{row.region}: {row.orders} orders, revenue {row.revenue}")
-- MAGIC regions = spark.table(f"{dbutils.widgets.get('target_schema')}.orders_by_region").count()
-- MAGIC dbutils.notebook.exit(json.dumps({"region": row.region, "orders": row.orders, "revenue": float(row.revenue), "regions": regions}))
"""


def ipynb_cell(source: str) -> dict:
    kind = "markdown" if source.startswith("%md\n") else "code"
    body = source.removeprefix("%md\n") if kind == "markdown" else source
    cell = {"cell_type": kind, "metadata": {}, "source": body.splitlines(keepends=True)}
    return cell | ({"execution_count": 0, "outputs": []} if kind == "code" else {})


# An .ipynb notebook (Databricks' default format) with %fs and %sql cells.
LANDING_IPYNB = json.dumps(
    {
        "cells": [
            ipynb_cell(c)
            for c in [
                "%md\n# Landed files\nLists what landed, archives it and loads it.",
                'dbutils.widgets.text("landing", "dbfs:/landing/formats")\nlanding = dbutils.widgets.get("landing")\n'
                'dbutils.fs.put(f"{landing}/orders.csv", "order_id,amount\\n1,10.5\\n2,20.0\\n3,4.5\\n", True)',
                "%fs mkdirs dbfs:/landing/formats/archive",
                "%fs cp dbfs:/landing/formats/orders.csv dbfs:/landing/formats/archive/orders.csv",
                "%fs ls dbfs:/landing/formats",
                "%fs head --maxBytes=15 dbfs:/landing/formats/orders.csv",
                "%sql\nCREATE OR REPLACE TEMP VIEW landed\nUSING csv\n"
                "OPTIONS (path 'dbfs:/landing/formats/orders.csv', header 'true', inferSchema 'true');\n\n"
                "SELECT count(*) AS orders, sum(amount) AS total FROM landed",
                "import json\n\ntotals = _sqldf.first()\n"
                "archived = [f.name for f in dbutils.fs.ls(f'{landing}/archive')]\n"
                'dbutils.notebook.exit(json.dumps({"orders": totals.orders, "total": totals.total, "archived": archived}))',
            ]
        ],
        "metadata": {
            "application/vnd.databricks.v1+notebook": {"language": "python", "notebookName": "landing", "widgets": {}},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 0,
    }
)

# A Python notebook whose %sql cells take parameters every way Databricks lets them.
DAILY_TOTALS_PY = """# Databricks notebook source
dbutils.widgets.text("catalog", "main")
dbutils.widgets.text("schema", "formats_params")
dbutils.widgets.text("table", "daily_totals")
dbutils.widgets.text("min_amount", "0")

# COMMAND ----------

# MAGIC %sql
# MAGIC CREATE SCHEMA IF NOT EXISTS IDENTIFIER(:catalog || '.' || :schema);
# MAGIC DROP TABLE IF EXISTS IDENTIFIER(:catalog || '.' || :schema || '.' || :table);
# MAGIC CREATE TABLE IDENTIFIER(:catalog || '.' || :schema || '.' || :table) USING parquet AS
# MAGIC SELECT * FROM VALUES ('2024-05-01', 10.0), ('2024-05-01', 25.0), ('2024-05-02', 7.5) AS t(day, amount)

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT day, sum(amount) AS total, '${table}' AS source_table, '$schema' AS source_schema, ':not_a_marker' AS note
# MAGIC FROM IDENTIFIER(:catalog || '.' || :schema || '.' || :table)
# MAGIC WHERE amount >= :min_amount AND day = '${day}'
# MAGIC GROUP BY day

# COMMAND ----------

import json

dbutils.notebook.exit(json.dumps([row.asDict() for row in _sqldf.collect()], default=str))
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    workspace = LocalWorkspace(tmp_path_factory.mktemp("formats_ws")).start()
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    client = WorkspaceClient(host=ws.host, token=ws.token)
    client.workspace.mkdirs(FOLDER)
    return client


@pytest.fixture(scope="module")
def cluster_id(w: WorkspaceClient) -> str:
    """One all-purpose cluster (one JVM) for every test of the module."""
    created = w.clusters.create(cluster_name="formats", spark_version="15.4.x-scala2.12", num_workers=0)
    assert created.cluster_id is not None
    return created.cluster_id


def submit(w: WorkspaceClient, cluster_id: str, **notebooks: str) -> dict[str, jobs.RunTask]:
    """One run with a task per notebook (task key -> path) on the shared cluster; its tasks by key."""
    waiter = w.jobs.submit(
        run_name="formats",
        tasks=[
            jobs.SubmitTask(task_key=key, existing_cluster_id=cluster_id, notebook_task=jobs.NotebookTask(path))
            for key, path in notebooks.items()
        ],
    )
    run = _wait(w, waiter.run_id)
    return {t.task_key: t for t in run.tasks or []}


def _wait(w: WorkspaceClient, run_id: int | None) -> jobs.Run:
    assert run_id is not None
    return w.jobs.wait_get_run_job_terminated_or_skipped(run_id, timeout=RUN_TIMEOUT)


def outcome(w: WorkspaceClient, task: jobs.RunTask) -> jobs.RunOutput:
    assert task.run_id is not None
    out = w.jobs.get_run_output(task.run_id)
    state = task.state
    assert state is not None
    assert state.result_state == jobs.RunResultState.SUCCESS, f"{state.state_message}\n{out.error}\n{out.error_trace}"
    return out


def cells(ws: LocalWorkspace, task: jobs.RunTask) -> list[dict]:
    """What the task run's page shows per cell (the runtime's cells.json)."""
    return json.loads((Path(ws.paths.task_runs) / str(task.run_id) / "cells.json").read_text())["cells"]


def test_a_sql_notebook_with_widgets_several_statements_and_a_python_cell(ws, w, cluster_id):
    w.workspace.upload(
        f"{FOLDER}/orders_by_region.sql", io.BytesIO(ORDERS_BY_REGION_SQL.encode()), format=ImportFormat.AUTO
    )
    assert w.workspace.get_status(f"{FOLDER}/orders_by_region").language == Language.SQL
    job_id = w.jobs.create(
        name="orders-by-region",
        parameters=[jobs.JobParameterDefinition(name="target_schema", default="formats_sql")],
        tasks=[
            jobs.Task(
                task_key="orders_by_region",
                existing_cluster_id=cluster_id,
                notebook_task=jobs.NotebookTask(f"{FOLDER}/orders_by_region", base_parameters={"region": "amer"}),
            )
        ],
    ).job_id
    run = _wait(w, w.jobs.run_now(job_id=job_id).run_id)
    task = (run.tasks or [])[0]
    out = outcome(w, task)
    assert out.notebook_output is not None and out.notebook_output.result is not None
    # region from the task's base parameter (not the DROPDOWN's default), the schema from the job parameter.
    assert json.loads(out.notebook_output.result) == {"region": "amer", "orders": 2, "revenue": 100.0, "regions": 2}
    shown = cells(ws, task)
    assert [(c["number"], c["kind"], c["state"]) for c in shown] == [
        (1, "md", "done"),
        (2, "sql", "done"),
        (3, "sql", "done"),
        (4, "python", "done"),
    ]
    assert shown[1]["tables"] == []  # CREATE WIDGET shows nothing
    (table,) = shown[2]["tables"]  # five statements, one result: the last one's
    assert [c["name"] for c in table["columns"]] == ["region", "orders", "revenue"]
    assert table["rows"] == [["amer", 2, "100.0"]]  # a decimal, shown as its text
    assert "amer: 2 orders, revenue 100.0" in shown[3]["stdout"]
    # The run page shows that table under the cell, as it shows a %sql cell's result.
    session = requests.Session()
    session.post(ws.host + "/login", data={"token": ws.token, "next": "/"}, allow_redirects=False, timeout=10)
    page = session.get(ws.host + f"/jobs/{job_id}/runs/{task.run_id}", timeout=10).text
    grid = page.split('class="grid data display-table"')[1].split("</table>")[0]
    assert "region<small>string</small>" in grid and "amer" in grid and "emea" not in grid


def test_an_ipynb_notebook_with_fs_and_sql_cells(ws, w, cluster_id):
    w.workspace.upload(f"{FOLDER}/landing.ipynb", io.BytesIO(LANDING_IPYNB.encode()), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{FOLDER}/landing").language == Language.PYTHON
    task = submit(w, cluster_id, landing=f"{FOLDER}/landing")["landing"]
    out = outcome(w, task)
    assert out.notebook_output is not None and out.notebook_output.result is not None
    assert json.loads(out.notebook_output.result) == {"orders": 3, "total": 35.0, "archived": ["orders.csv"]}
    shown = {c["number"]: c for c in cells(ws, task)}
    assert shown[3]["kind"] == "fs" and shown[3]["stdout"] == "True\n"  # %fs mkdirs
    (listing,) = shown[5]["tables"]  # %fs ls: a table like Databricks'
    assert [c["name"] for c in listing["columns"]] == ["path", "name", "size", "modificationTime"]
    assert [row[:3] for row in listing["rows"]] == [
        ["dbfs:/landing/formats/archive/", "archive/", 0],
        ["dbfs:/landing/formats/orders.csv", "orders.csv", 36],
    ]
    assert shown[6]["stdout"] == "order_id,amount\n"  # %fs head --maxBytes=15
    assert shown[7]["tables"][0]["rows"] == [[3, 35.0]]
    assert (Path(ws.paths.dbfs) / "landing/formats/archive/orders.csv").is_file()


def test_sql_parameters_come_from_base_and_job_parameters(ws, w, cluster_id):
    w.workspace.upload(f"{FOLDER}/daily_totals.py", io.BytesIO(DAILY_TOTALS_PY.encode()), format=ImportFormat.AUTO)
    job_id = w.jobs.create(
        name="daily-totals",
        parameters=[jobs.JobParameterDefinition(name="day", default="2024-05-02")],
        tasks=[
            jobs.Task(
                task_key="daily_totals",
                existing_cluster_id=cluster_id,
                notebook_task=jobs.NotebookTask(
                    f"{FOLDER}/daily_totals", base_parameters={"schema": "formats_p", "min_amount": "20"}
                ),
            )
        ],
    ).job_id
    run = _wait(w, w.jobs.run_now(job_id=job_id, job_parameters={"day": "2024-05-01"}).run_id)
    out = outcome(w, (run.tasks or [])[0])
    assert out.notebook_output is not None and out.notebook_output.result is not None
    assert json.loads(out.notebook_output.result) == [
        {
            "day": "2024-05-01",
            "total": "25.0",
            "source_table": "daily_totals",
            "source_schema": "formats_p",
            "note": ":not_a_marker",
        }
    ]
    # IDENTIFIER(...) named a three-level Unity Catalog table: it is where the catalog says.
    table = w.tables.get("main.formats_p.daily_totals")
    assert [c.name for c in table.columns or []] == ["day", "amount"]


def test_scala_and_r_notebooks_fail_their_task_with_a_clear_message(ws, w, cluster_id):
    for name, language, body in [
        ("etl_scala", Language.SCALA, 'val orders = spark.table("orders")\ndisplay(orders)'),
        ("model_r", Language.R, 'library(SparkR)\norders <- sql("SELECT 1")'),
    ]:
        w.workspace.import_(
            f"{FOLDER}/{name}",
            content=base64.b64encode(body.encode()).decode(),
            format=ImportFormat.SOURCE,
            language=language,
        )
    tasks = submit(w, cluster_id, scala=f"{FOLDER}/etl_scala", r=f"{FOLDER}/model_r")
    for key, path, shown_as in (("scala", f"{FOLDER}/etl_scala", "SCALA"), ("r", f"{FOLDER}/model_r", "R")):
        task = tasks[key]
        assert task.state is not None and task.state.result_state == jobs.RunResultState.FAILED
        expected = f"local clusters run Python and SQL notebooks; {path} is {shown_as}"
        assert task.state.state_message is not None and task.state.state_message.startswith(expected)
        assert task.run_id is not None
        assert (w.jobs.get_run_output(task.run_id).error or "").startswith(f"UnsupportedNotebookLanguage: {expected}")
