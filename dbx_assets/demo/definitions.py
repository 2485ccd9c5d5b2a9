"""The single wiring point of the code location: `defs`.

Loading this module reads notebooks and the dbt manifest from disk and nothing else: it never
contacts a workspace, starts a server or starts Spark (the UI reloads it often).
"""

from __future__ import annotations

import os

import dagster as dg

from dbx_assets.integration.dbt.project import load_dbt_project
from dbx_assets.integration.sources.notebook import NotebookAsset
from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.demo.schedules import demo_daily_job, demo_daily_schedule
from dbx_assets.integration.file_sensor import build_file_sensor
from dbx_assets.integration.workflow.assets import Workflow, build_workflow_assets

NOTEBOOK_ASSETS = [
    NotebookAsset(key="bronze_orders", notebook="ingest_orders.py", group="bronze", owners=["team:data-eng"]),
    NotebookAsset(key="bronze_customers", notebook="ingest_customers.py", group="bronze", owners=["team:data-eng"]),
    NotebookAsset(
        key="silver_orders",
        notebook="clean_orders.py",
        deps=["bronze_orders", "bronze_customers"],
        group="silver",
        owners=["team:data-eng"],
    ),
    NotebookAsset(
        key="revenue_report",
        notebook="revenue_report.py",
        deps=["fct_daily_revenue"],
        group="reporting",
        owners=["team:analytics"],
    ),
]

workflow = Workflow(
    name="dbx_assets_demo",
    notebooks=NOTEBOOK_ASSETS,
    dbt=load_dbt_project(),
)
demo_assets = build_workflow_assets(
    workflow, partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run()
)

# Unset everything (the default) to use the embedded local workspace; set DATABRICKS_HOST and
# DATABRICKS_TOKEN (or a profile / OAuth M2M variables) to run against a real workspace.
databricks_resource = DatabricksResource()

# A day's orders are complete when its `_SUCCESS` marker lands: materialize that day's partition
# of bronze_orders and everything downstream. On by default, so `make dev` reacts to
# `python -m dbx_assets.demo drop` within one tick (DBX_DEMO_SENSOR=stopped starts it off).
orders_landing_sensor = build_file_sensor(
    name="orders_landing",
    watch_path="dbfs:/landing/orders",
    marker="_SUCCESS",
    partition_template="dbfs:/landing/orders/date={partition}/_SUCCESS",
    partitions_def=daily_partitions,
    settle_seconds=5,  # the marker is written last; a few seconds only guard against clock skew
    default_status=(
        dg.DefaultSensorStatus.STOPPED
        if os.environ.get("DBX_DEMO_SENSOR") == "stopped"
        else dg.DefaultSensorStatus.RUNNING
    ),
)

defs = dg.Definitions(
    assets=[demo_assets],
    jobs=[demo_daily_job],
    schedules=[demo_daily_schedule],
    sensors=[orders_landing_sensor],
    resources={"databricks": databricks_resource},
)
