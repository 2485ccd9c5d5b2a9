"""The daily schedule for the demo graph and a helper to backfill a range of days.

The schedule runs shortly after midnight (UTC) and materializes the day that just ended:
`build_schedule_from_partitioned_job` targets the last complete partition at tick time.
"""

from __future__ import annotations

import time
import uuid
from typing import Mapping, Optional, Sequence

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill  # what the UI's "Launch backfill" creates

from dbx_assets.demo.partitions import daily_partitions

DEMO_DAILY_JOB = "demo_daily"


def build_daily_job(
    selection: dg.AssetSelection | Sequence[str] = dg.AssetSelection.all(),
    *,
    name: str = DEMO_DAILY_JOB,
):
    """An asset job over `selection` (default: the whole demo graph), one run per day
    (partitioning comes from the selected assets)."""
    return dg.define_asset_job(
        name=name,
        selection=selection,
        description="Materializes the demo graph for one day of orders.",
    )


def build_daily_schedule(
    job,
    *,
    hour_of_day: int = 1,
    minute_of_hour: int = 0,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """Every day at hour_of_day:minute_of_hour, materialize the previous day's partition.

    Running an hour after midnight leaves late landing files time to arrive.
    """
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"{job.name}_schedule",
        hour_of_day=hour_of_day,
        minute_of_hour=minute_of_hour,
        default_status=default_status,
    )


demo_daily_job = build_daily_job()
demo_daily_schedule = build_daily_schedule(demo_daily_job)


def partition_keys_between(
    start: str, end: str, partitions_def: dg.PartitionsDefinition = daily_partitions
) -> list[str]:
    """The partition keys from start to end inclusive, e.g. ('2026-11-01', '2026-11-03')."""
    all_keys = partitions_def.get_partition_keys()
    for key in (start, end):
        if key not in all_keys:
            first, last = (all_keys[0], all_keys[-1]) if all_keys else ("none", "none")
            raise ValueError(f"Backfill bound {key!r} is not a partition (valid: {first} .. {last}).")
    if all_keys.index(start) > all_keys.index(end):
        raise ValueError(f"Backfill start {start} is after its end {end}; swap them.")
    return list(partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))


def launch_backfill(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    start: str,
    end: str,
    *,
    selection: Optional[dg.AssetSelection] = None,
    tags: Optional[Mapping[str, str]] = None,
    title: Optional[str] = None,
) -> str:
    """Queue a backfill of `selection` (default: every asset) for the days start..end.

    Queued on `instance` exactly as the UI's "Launch backfill" does; the daemon (running
    under `dagster dev`) launches the runs. Returns the backfill id.
    """
    asset_graph = defs.resolve_asset_graph()
    chosen = (selection or dg.AssetSelection.all()).resolve(asset_graph)
    partition_keys = partition_keys_between(start, end)
    backfill_id = uuid.uuid4().hex[:8]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=asset_graph,
        partition_names=partition_keys,
        asset_selection=sorted(chosen),
        backfill_timestamp=time.time(),
        tags=dict(tags or {}),
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title or f"dbx_assets backfill {start}..{end}",
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill_id
