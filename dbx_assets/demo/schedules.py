"""The daily schedule for the demo graph.

The schedule runs shortly after midnight (UTC) and materializes the day that just ended:
`build_schedule_from_partitioned_job` targets the last complete partition at tick time.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

DEMO_DAILY_JOB = "demo_daily"


_ALL_ASSETS = dg.AssetSelection.all()


def build_daily_job(
    selection: dg.AssetSelection | Sequence[str] = _ALL_ASSETS,
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
):  # for an asset job, an unresolved partitioned schedule (Definitions resolves it): a type Dagster does not export
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
