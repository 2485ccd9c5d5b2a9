"""The demo's landing sensor: a day's orders are complete when its `_SUCCESS` marker lands.

Each run it requests is self-sufficient: it builds that day's `bronze_orders` and everything
downstream *and* what those need upstream (`bronze_customers`, which no landing triggers), so
the first runs on a fresh workspace do not fail on a table nobody built. The days landed in one
tick that follow each other become ONE run over the partition range (one job cluster instead of
one per day; the workflow's `BackfillPolicy.single_run()` already runs ranges that way).
"""

from __future__ import annotations

import hashlib
import os

import dagster as dg

from dbx_assets import TRIGGER_COUNT_TAG, TRIGGER_FILE_TAG, build_file_sensor
from dbx_assets.demo.partitions import daily_partitions

SENSOR_NAME = "orders_landing"
# What a landed day rebuilds: bronze_orders, everything downstream of it, and their other inputs.
LANDING_TARGET = dg.AssetSelection.assets("bronze_orders").downstream().upstream()
# The tags Dagster reads a run's partition range from (RunRequest.partition_key_range, and
# what a single-run backfill sets); plain strings, no public constant exists for them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

_default_status = (
    dg.DefaultSensorStatus.STOPPED if os.environ.get("DBX_DEMO_SENSOR") == "stopped" else dg.DefaultSensorStatus.RUNNING
)

# The library's sensor decides what triggers (exactly once per marker version, cursor, skips);
# the demo's sensor below only regroups its per-day run requests.
_per_day_sensor = build_file_sensor(
    name=SENSOR_NAME,
    watch_path="dbfs:/landing/orders",
    target=LANDING_TARGET,
    marker="_SUCCESS",
    partition_template="dbfs:/landing/orders/date={partition}/_SUCCESS",
    partitions_def=daily_partitions,
    default_status=_default_status,
)


def merge_consecutive_days(requests: list[dg.RunRequest]) -> list[dg.RunRequest]:
    """Per-day run requests -> one request per stretch of consecutive days.

    Only what the library's sensor decided is kept (run key, partition, its trigger tags);
    Dagster resolves the partition tags of the requests returned here again.
    """
    dated = sorted((r for r in requests if r.partition_key), key=lambda r: r.partition_key or "")
    others = [r for r in requests if not r.partition_key]
    position = {k: i for i, k in enumerate(daily_partitions.get_partition_keys())}
    groups: list[list[dg.RunRequest]] = []
    for request in dated:
        key = request.partition_key or ""
        previous = groups[-1][-1].partition_key if groups else None
        if previous in position and key in position and position[key] == position[previous] + 1:
            groups[-1].append(request)
        else:
            groups.append([request])
    return [_day_request(group[0]) if len(group) == 1 else _range_request(group) for group in groups] + others


def _trigger_tags(request: dg.RunRequest) -> dict[str, str]:
    return {k: v for k, v in request.tags.items() if k in (TRIGGER_FILE_TAG, TRIGGER_COUNT_TAG)}


def _day_request(request: dg.RunRequest) -> dg.RunRequest:
    return dg.RunRequest(run_key=request.run_key, partition_key=request.partition_key, tags=_trigger_tags(request))


def _range_request(group: list[dg.RunRequest]) -> dg.RunRequest:
    first, last = group[0].partition_key or "", group[-1].partition_key or ""
    run_key = f"{first}..{last}:" + hashlib.sha1("\n".join(r.run_key or "" for r in group).encode()).hexdigest()[:12]
    trigger_files = ",".join(r.tags.get(TRIGGER_FILE_TAG, "") for r in group)
    count = sum(int(r.tags.get(TRIGGER_COUNT_TAG, "1")) for r in group)
    return dg.RunRequest(
        run_key=run_key,
        tags={
            TRIGGER_FILE_TAG: trigger_files[:4000],  # keep a tag readable however many days land
            TRIGGER_COUNT_TAG: str(count),
            RANGE_START_TAG: first,
            RANGE_END_TAG: last,
        },
    )


@dg.sensor(
    name=SENSOR_NAME,
    target=LANDING_TARGET,
    minimum_interval_seconds=_per_day_sensor.minimum_interval_seconds,
    default_status=_default_status,
    required_resource_keys={"databricks"},
    description=(
        "Materializes a landed day (dbfs:/landing/orders/date=YYYY-MM-DD/_SUCCESS): bronze_orders, everything "
        "downstream and bronze_customers; consecutive days landed together run as one partition range."
    ),
)
def orders_landing_sensor(context: dg.SensorEvaluationContext):
    # evaluate_tick, not a direct call: Dagster's direct invocation passes required resources as
    # keyword arguments, which the library's context-only evaluation function does not take.
    tick = _per_day_sensor.evaluate_tick(context)
    if not tick.run_requests:
        return dg.SensorResult(cursor=tick.cursor, skip_reason=tick.skip_message)
    return dg.SensorResult(run_requests=merge_consecutive_days(list(tick.run_requests)), cursor=tick.cursor)
