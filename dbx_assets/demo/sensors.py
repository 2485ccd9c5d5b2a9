"""The demo's landing sensor: a day's orders are complete when its `_SUCCESS` marker lands."""

from __future__ import annotations

import os

import dagster as dg

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.file_sensor import build_file_sensor

# Materialize that day's partition of bronze_orders and everything downstream. On by default,
# so `make dev` reacts to `python -m dbx_assets.demo drop` within one tick
# (DBX_DEMO_SENSOR=stopped starts it off).
orders_landing_sensor = build_file_sensor(
    name="orders_landing",
    watch_path="dbfs:/landing/orders",
    target=dg.AssetSelection.assets("bronze_orders").downstream(),
    marker="_SUCCESS",
    partition_template="dbfs:/landing/orders/date={partition}/_SUCCESS",
    partitions_def=daily_partitions,
    default_status=(
        dg.DefaultSensorStatus.STOPPED
        if os.environ.get("DBX_DEMO_SENSOR") == "stopped"
        else dg.DefaultSensorStatus.RUNNING
    ),
)
