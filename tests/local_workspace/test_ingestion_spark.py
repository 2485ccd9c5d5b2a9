"""Ingestion on a real local cluster (one JVM for the module), notebooks written the way Databricks'
tutorials write them, imported and run through the real SDK over HTTP: an Auto Loader bronze
ingest with `trigger(availableNow=True)` run three times with files landed in between (each
file's rows ingested exactly once), new columns stopping the stream once and picked up on
restart, `read_files(...)` in SQL, `COPY INTO` twice (idempotent), a streaming table over
`STREAM read_files(...)` refreshed, and Databricks' sample data (generated locally): `samples.nyctaxi.trips`,
`samples.tpch.*`, `read_files` over `/databricks-datasets/retail-org/sales_orders/`, writes refused."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

from dbx_assets.local_workspace.app import LocalWorkspace

FOLDER = "/Shared/ingestion"
RUN_TIMEOUT = timedelta(minutes=4)

# The bronze notebook of Databricks' Auto Loader tutorial, nearly verbatim.
BRONZE_PY = """# Databricks notebook source
# MAGIC %md
# MAGIC # Bronze events
# MAGIC Ingests the JSON files landed under `dbfs:/landing/events` with Auto Loader.

# COMMAND ----------

from pyspark.sql.functions import col, current_timestamp

file_path = "dbfs:/landing/events"
checkpoint_path = "dbfs:/tmp/ingestion/_checkpoint/bronze_events"
spark.sql("CREATE SCHEMA IF NOT EXISTS ingest")

(spark.readStream
  .format("cloudFiles")
  .option("cloudFiles.format", "json")
  .option("cloudFiles.schemaLocation", checkpoint_path)
  .load(file_path)
  .select("*", col("_metadata.file_path").alias("source_file"), current_timestamp().alias("processing_time"))
  .writeStream
  .option("checkpointLocation", checkpoint_path)
  .option("mergeSchema", "true")
  .trigger(availableNow=True)
  .toTable("main.ingest.bronze_events")
  .awaitTermination())

# COMMAND ----------

import json
rows = spark.table("main.ingest.bronze_events")
dbutils.notebook.exit(json.dumps({"rows": rows.count(), "columns": rows.columns}))
"""

# SQL over read_files and COPY INTO, as Databricks' docs write them.
SQL_INGEST = """-- Databricks notebook source
CREATE SCHEMA IF NOT EXISTS ingest;
CREATE OR REPLACE TEMP VIEW landed_orders AS
SELECT * FROM read_files('dbfs:/landing/orders_csv', format => 'csv', header => true);
SELECT count(*) AS orders, sum(amount) AS total FROM landed_orders

-- COMMAND ----------

CREATE TABLE IF NOT EXISTS ingest.copied_orders;
COPY INTO ingest.copied_orders
FROM 'dbfs:/landing/orders_csv'
FILEFORMAT = CSV
FORMAT_OPTIONS ('header' = 'true', 'inferSchema' = 'true')
COPY_OPTIONS ('mergeSchema' = 'true')

-- COMMAND ----------

CREATE OR REFRESH STREAMING TABLE ingest.streamed_events AS
SELECT id, kind FROM STREAM read_files('dbfs:/landing/events', format => 'json')

-- COMMAND ----------

-- MAGIC %python
-- MAGIC import json
-- MAGIC copied = spark.table("ingest.copied_orders")
-- MAGIC dbutils.notebook.exit(json.dumps({
-- MAGIC     "copied": copied.count(),
-- MAGIC     "copied_columns": copied.columns,
-- MAGIC     "streamed": spark.table("ingest.streamed_events").count(),
-- MAGIC     "read_files_total": spark.table("landed_orders").selectExpr("sum(amount)").first()[0],
-- MAGIC }))
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    workspace = LocalWorkspace(tmp_path_factory.mktemp("ingestion_ws")).start()
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    client = WorkspaceClient(host=ws.host, token=ws.token)
    client.workspace.mkdirs(FOLDER)
    return client


@pytest.fixture(scope="module")
def cluster_id(w: WorkspaceClient) -> str:
    created = w.clusters.create(cluster_name="ingestion", spark_version="15.4.x-scala2.12", num_workers=0)
    assert created.cluster_id is not None
    return created.cluster_id


def land(w: WorkspaceClient, path: str, text: str) -> None:
    w.dbfs.put(path, contents=base64.b64encode(text.encode()).decode(), overwrite=True)


def events(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def run_notebook(w: WorkspaceClient, cluster_id: str, path: str) -> tuple[jobs.RunTask, jobs.RunOutput]:
    waiter = w.jobs.submit(
        run_name="ingestion",
        tasks=[jobs.SubmitTask(task_key="t", existing_cluster_id=cluster_id, notebook_task=jobs.NotebookTask(path))],
    )
    assert waiter.run_id is not None
    run = w.jobs.wait_get_run_job_terminated_or_skipped(waiter.run_id, timeout=RUN_TIMEOUT)
    task = (run.tasks or [])[0]
    assert task.run_id is not None
    return task, w.jobs.get_run_output(task.run_id)


def succeeded(task: jobs.RunTask, out: jobs.RunOutput) -> dict:
    assert task.state is not None
    assert task.state.result_state == jobs.RunResultState.SUCCESS, f"{task.state.state_message}\n{out.error_trace}"
    assert out.notebook_output is not None and out.notebook_output.result is not None
    return json.loads(out.notebook_output.result)


def test_auto_loader_ingests_each_landed_file_exactly_once_across_three_runs(ws, w, cluster_id):
    w.workspace.upload(f"{FOLDER}/bronze_events.py", io.BytesIO(BRONZE_PY.encode()), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{FOLDER}/bronze_events").language == Language.PYTHON
    timings = []
    land(w, "dbfs:/landing/events/2026-12-01.json", events({"id": 1, "kind": "a"}, {"id": 2, "kind": "b"}))
    started = time.monotonic()
    first = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/bronze_events"))
    timings.append(time.monotonic() - started)
    assert first["rows"] == 2
    assert first["columns"][:3] == ["id", "kind", "_rescued_data"]
    assert {"source_file", "processing_time"} <= set(first["columns"])

    land(w, "dbfs:/landing/events/2026-12-02.json", events({"id": 3, "kind": "c"}) + "{not json\n")
    started = time.monotonic()
    second = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/bronze_events"))
    timings.append(time.monotonic() - started)
    assert second["rows"] == 4  # the first file is not read again; a malformed record is rescued

    # A new column: the stream stops naming it (the schema is updated), the retry picks it up.
    land(w, "dbfs:/landing/events/2026-12-03.json", events({"id": 4, "kind": "d", "amount": 9.5}))
    task, out = run_notebook(w, cluster_id, f"{FOLDER}/bronze_events")
    assert task.state is not None and task.state.result_state == jobs.RunResultState.FAILED
    assert "UNKNOWN_FIELD_EXCEPTION" in (task.state.state_message or "") and "amount" in (
        task.state.state_message or ""
    )
    started = time.monotonic()
    third = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/bronze_events"))
    timings.append(time.monotonic() - started)
    assert third["rows"] == 5  # 3 files, each once
    schemas = ws.paths.dbfs / "tmp/ingestion/_checkpoint/bronze_events/_schemas"
    assert sorted(p.name for p in schemas.iterdir()) == ["0", "1"]
    assert "amount" in (schemas / "1").read_text() and "amount" not in (schemas / "0").read_text()
    # (a parquet table keeps the schema it was created with; a Delta table with mergeSchema takes `amount`)
    print(f"auto loader runs: {', '.join(f'{t:.1f} s' for t in timings)}")


def test_read_files_copy_into_twice_and_a_streaming_table(ws, w, cluster_id):
    land(w, "dbfs:/landing/orders_csv/day1.csv", "order_id,amount\n1,10.5\n2,20.0\n")
    land(w, "dbfs:/landing/events/2026-12-04.json", events({"id": 5, "kind": "e"}))
    w.workspace.upload(f"{FOLDER}/sql_ingest.sql", io.BytesIO(SQL_INGEST.encode()), format=ImportFormat.AUTO)
    first = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/sql_ingest"))
    assert first["read_files_total"] == 30.5
    assert first["copied"] == 2 and first["copied_columns"] == ["order_id", "amount"]
    assert first["streamed"] >= 1  # every event landed so far (the Auto Loader test lands more)

    # Again with one more file: COPY INTO loads only that file; the streaming table only new events.
    land(w, "dbfs:/landing/orders_csv/day2.csv", "order_id,amount,channel\n3,5.0,web\n")
    streamed_before = first["streamed"]
    land(w, "dbfs:/landing/events/2026-12-05.json", events({"id": 6, "kind": "f"}))
    second = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/sql_ingest"))
    assert second["copied"] == 3 and second["copied_columns"] == ["order_id", "amount", "channel"]
    assert second["streamed"] == streamed_before + 1


# What Databricks' starter templates and tutorials read.
SAMPLES_SQL = """-- Databricks notebook source
SELECT count(*) AS trips, round(avg(fare_amount), 2) AS avg_fare FROM samples.nyctaxi.trips

-- COMMAND ----------

CREATE OR REPLACE TEMP VIEW sales_orders AS
SELECT customer_id, customer_name, number_of_line_items,
       timestamp(from_unixtime(CAST(order_datetime AS BIGINT))) AS order_datetime, order_number, ordered_products
FROM read_files('/databricks-datasets/retail-org/sales_orders/', format => 'json')

-- COMMAND ----------

-- MAGIC %python
-- MAGIC import json
-- MAGIC trips = spark.table("samples.nyctaxi.trips")
-- MAGIC tpch = {t: spark.table(f"samples.tpch.{t}").count() for t in ("nation", "customer", "orders", "lineitem")}
-- MAGIC joined = spark.sql(
-- MAGIC     "SELECT n_name, count(*) AS orders FROM samples.tpch.orders o JOIN samples.tpch.customer c ON o_custkey = c_custkey "
-- MAGIC     "JOIN samples.tpch.nation n ON c_nationkey = n_nationkey GROUP BY n_name"
-- MAGIC ).count()
-- MAGIC try:
-- MAGIC     spark.sql("INSERT INTO samples.nyctaxi.trips SELECT * FROM samples.nyctaxi.trips LIMIT 1")
-- MAGIC     refused = None
-- MAGIC except Exception as exc:
-- MAGIC     refused = str(exc)
-- MAGIC orders = spark.table("sales_orders")
-- MAGIC dbutils.notebook.exit(json.dumps({
-- MAGIC     "trips": trips.count(),
-- MAGIC     "trips_schema": [(f.name, f.dataType.simpleString()) for f in trips.schema.fields],
-- MAGIC     "orders_schema": {f.name: f.dataType.simpleString() for f in spark.table("samples.tpch.orders").schema.fields},
-- MAGIC     "tpch": tpch, "nations_with_orders": joined, "refused": refused,
-- MAGIC     "sales_orders": orders.count(), "sales_columns": orders.columns,
-- MAGIC     "first_order_year": orders.selectExpr("min(year(order_datetime))").first()[0],
-- MAGIC }))
"""


def test_sample_data_tables_and_datasets(ws, w, cluster_id):
    w.workspace.upload(f"{FOLDER}/samples.sql", io.BytesIO(SAMPLES_SQL.encode()), format=ImportFormat.AUTO)
    out = succeeded(*run_notebook(w, cluster_id, f"{FOLDER}/samples"))
    assert out["trips"] == 3000
    assert out["trips_schema"] == [
        ["tpep_pickup_datetime", "timestamp"], ["tpep_dropoff_datetime", "timestamp"], ["trip_distance", "double"],
        ["fare_amount", "double"], ["pickup_zip", "int"], ["dropoff_zip", "int"],
    ]  # fmt: skip
    assert out["orders_schema"]["o_totalprice"] == "decimal(18,2)" and out["orders_schema"]["o_orderdate"] == "date"
    assert out["tpch"] == {"nation": 25, "customer": 300, "orders": 1500, "lineitem": out["tpch"]["lineitem"]}
    assert out["tpch"]["lineitem"] > 1500 and out["nations_with_orders"] == 25
    assert "read-only" in out["refused"]
    assert out["sales_orders"] == 1000 and out["first_order_year"] == 2019
    assert out["sales_columns"][:3] == ["customer_id", "customer_name", "number_of_line_items"]
