"""A tiny code location for tests/test_sensor_daemon.py: one plain-Python asset and one file
sensor on a DBFS path of a local workspace, both named by environment variables so the test
can point a real `dagster-daemon` at a workspace of its own."""

from __future__ import annotations

import os

import dagster as dg

from dbx_assets.integration.file_sensor import build_file_sensor
from dbx_assets.integration.resource import DatabricksResource

WATCH_PATH_ENV = "DBX_SENSOR_TEST_WATCH_PATH"
STATE_DIR_ENV = "DBX_SENSOR_TEST_STATE_DIR"
SENSOR_NAME = "landed_csvs"


@dg.asset
def landed_file() -> None:
    """Stands in for an ingest: no Databricks run, no Spark."""


landed_csvs = build_file_sensor(
    name=SENSOR_NAME,
    watch_path=os.environ.get(WATCH_PATH_ENV, "dbfs:/sensor_daemon_test"),
    target=[landed_file.key],
    pattern="*.csv",
    settle_ticks=1,  # the daemon ticks every ~5 s at best; the test lands files atomically
    minimum_interval_seconds=1,
    api_retry_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[landed_file],
    sensors=[landed_csvs],
    resources={"databricks": DatabricksResource(local_state_dir=os.environ.get(STATE_DIR_ENV))},
)
