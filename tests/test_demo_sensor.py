"""The demo's landing sensor as wired in definitions: a dropped day triggers that day's run."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from dbx_assets.demo.definitions import demo_assets, orders_landing_sensor
from dbx_assets.demo.landing import land_customers, land_day
from dbx_assets.integration.resource import DatabricksResource


def _defs(resource):
    return dg.Definitions(assets=[demo_assets], sensors=[orders_landing_sensor], resources={"databricks": resource})


def _tick(resource, cursor):
    context = dg.build_sensor_context(cursor=cursor, resources={"databricks": resource}, definitions=_defs(resource))
    result = orders_landing_sensor.evaluate_tick(context)
    return result.run_requests or [], result.cursor


def test_dropping_a_day_triggers_exactly_that_partition(local_workspace, workspace_client):
    resource = DatabricksResource(local_state_dir=str(local_workspace.state_dir))
    land_customers(workspace_client)
    land_day(workspace_client, dt.date(2026, 11, 3))
    time.sleep(6)  # past the sensor's settle time
    _, cursor = _tick(resource, None)  # whatever had landed before is handled now
    again, cursor = _tick(resource, cursor)
    assert again == []

    land_day(workspace_client, dt.date(2026, 11, 15))  # what `python -m dbx_assets.demo drop` does
    time.sleep(6)
    requests, cursor = _tick(resource, cursor)
    assert [r.partition_key for r in requests] == ["2026-11-15"]
    target_job = _defs(resource).resolve_job_def(orders_landing_sensor.job_name)
    selected = set(requests[0].asset_selection or target_job.asset_layer.executable_asset_keys)
    assert dg.AssetKey("bronze_orders") in selected and dg.AssetKey("revenue_report") in selected
    assert dg.AssetKey("bronze_customers") not in selected  # not downstream of the landing
    assert _tick(resource, cursor)[0] == []
