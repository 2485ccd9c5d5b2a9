"""The done-when of the ingestion work: a bronze notebook ingesting landed JSON files with Auto Loader,
triggered by `build_file_sensor` watching a DBFS landing path, ingests each file exactly once
across three sensor-triggered runs. Each tick's run requests are materialized with
`dg.materialize` (not the daemon: the daemon's own behaviour is tests/test_sensor_daemon.py's),
on the real local workspace with a real Spark job cluster per run, as the daemon's runs would."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import dagster as dg

from dbx_assets import DatabricksResource, NotebookAsset, NotebookTasks, Workflow, build_file_sensor
from dbx_assets.integration.workflow.assets import build_workflow_assets

BRONZE = """# Databricks notebook source
# MAGIC %md
# MAGIC Bronze events: every JSON file landed under the landing path, once, with Auto Loader.

# COMMAND ----------

dbutils.widgets.text("landing", "")
dbutils.widgets.text("checkpoint", "")
dbutils.widgets.text("report", "")
spark.sql("CREATE SCHEMA IF NOT EXISTS sensor_bronze")
landing, checkpoint = dbutils.widgets.get("landing"), dbutils.widgets.get("checkpoint")
from pyspark.sql.functions import col

(spark.readStream.format("cloudFiles")
    .option("cloudFiles.format", "json")
    .option("cloudFiles.schemaLocation", checkpoint)
    .load(landing)
    .select("*", col("_metadata.file_name").alias("source_file"))
    .writeStream.option("checkpointLocation", checkpoint)
    .trigger(availableNow=True)
    .toTable("sensor_bronze.events")
    .awaitTermination())

# COMMAND ----------

import json, os
counts = {r.source_file: r["count"] for r in spark.table("sensor_bronze.events").groupBy("source_file").count().collect()}
os.makedirs(dbutils.widgets.get("report"), exist_ok=True)
with open(dbutils.widgets.get("report") + "/counts.json", "w") as f:
    json.dump(counts, f)
"""


def test_sensor_triggered_auto_loader_ingests_each_file_exactly_once(local_workspace, workspace_client, tmp_path):
    name = f"al_{uuid.uuid4().hex[:8]}"
    landing = f"dbfs:/landing/{name}"
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "bronze_events.py").write_text(BRONZE)
    params = {
        "landing": landing,
        "checkpoint": f"dbfs:/checkpoints/{name}/bronze_events",
        "report": f"/dbfs/tmp/{name}",
    }
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key="bronze_events", notebook="bronze_events.py", params=params),
                ],
                notebooks_dir=notebooks,
            )
        ],
    )
    assets = build_workflow_assets(workflow)
    resource = DatabricksResource(local_state_dir=str(local_workspace.state_dir), workspace_root=f"/Shared/{name}")
    sensor = build_file_sensor(
        name="events_landing", watch_path=landing, pattern="*.json", target=["bronze_events"], settle_ticks=1
    )
    defs = dg.Definitions(assets=[assets], sensors=[sensor], resources={"databricks": resource})

    def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        with dg.build_sensor_context(cursor=cursor, resources={"databricks": resource}, definitions=defs) as context:
            result = sensor.evaluate_tick(context)
        return list(result.run_requests or []), result.cursor if result.cursor is not None else cursor

    cursor = None
    landed: dict[str, int] = {}
    for run in range(3):
        # One file per tick: the sensor requests one run per new file version.
        file = f"{landing}/events_{run}.json"
        rows = [{"id": f"{run}-{n}", "run": run} for n in range(run + 2)]
        workspace_client.dbfs.put(
            file, contents=base64.b64encode("".join(json.dumps(r) + "\n" for r in rows).encode()).decode()
        )
        landed[f"events_{run}.json"] = len(rows)
        requests, cursor = tick(cursor)
        assert len(requests) == 1, f"tick {run}: {requests}"
        result = dg.materialize(
            [assets],
            selection=requests[0].asset_selection,
            resources={"databricks": resource},
            tags=requests[0].tags,
            raise_on_error=False,
        )
        assert result.success, f"run {run} failed"
        assert tick(cursor)[0] == []  # nothing new: no run

    # What the notebook counted after its last run: rows per source file in the bronze table.
    counts = json.loads((Path(local_workspace.paths.dbfs) / "tmp" / name / "counts.json").read_text())
    assert counts == landed  # every file, each row once, across three triggered runs
