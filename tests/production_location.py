"""The code location tests/test_production_postgres.py serves with `dagster code-server start`:
the notebook-only test workflow (tests/workflow_support.py; no Spark, so the fake runtime runs it),
a job that materializes it, and a file sensor that materializes it when a CSV lands in DBFS.

The workspace is reached the way production reaches Databricks: DATABRICKS_HOST and
DATABRICKS_TOKEN in the code server's environment, through dg.EnvVar. Names come from the
environment so that the code server, its run workers and the test agree on them.
"""

from __future__ import annotations

import os

import dagster as dg
from workflow_support import make_assets, make_resource

from dbx_assets.integration.file_sensor import build_file_sensor

NAME_ENV = "DBX_PRODUCTION_TEST_NAME"
JOB_NAME = "materialize_workflow"
SENSOR_NAME = "landed_csvs"

name = os.environ.get(NAME_ENV, "production_test")


def landing_path(workflow_name: str) -> str:
    return f"dbfs:/tmp/{workflow_name}/landing"


workflow_assets = make_assets(name)

landed_csvs = build_file_sensor(
    name=SENSOR_NAME,
    watch_path=landing_path(name),
    target=dg.AssetSelection.assets(workflow_assets),
    pattern="*.csv",
    settle_ticks=1,  # the test lands its file in one request
    minimum_interval_seconds=1,
    api_retry_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[workflow_assets],
    jobs=[dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.assets(workflow_assets))],
    sensors=[landed_csvs],
    resources={"databricks": make_resource(name)},
    # One process per run (the run worker) instead of one more per step: the step only waits on the workspace.
    executor=dg.in_process_executor,
)
