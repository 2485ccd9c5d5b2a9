"""The daily schedule targets the day that just ended."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.demo.schedules import build_daily_job, build_daily_schedule


# Stand-ins shaped like the demo graph (daily partitioned, bronze -> silver): the schedule
# logic is pure Dagster, so it needs no workspace.
@dg.asset(partitions_def=daily_partitions)
def bronze_orders() -> None: ...


@dg.asset(partitions_def=daily_partitions, deps=[bronze_orders])
def silver_orders() -> None: ...


JOB = build_daily_job()
SCHEDULE = build_daily_schedule(JOB)
DEFS = dg.Definitions(assets=[bronze_orders, silver_orders], jobs=[JOB], schedules=[SCHEDULE])


def _evaluate(when: datetime) -> list[dg.RunRequest]:
    schedule = DEFS.get_schedule_def(SCHEDULE.name)
    # Both as context managers: the schedule context enters an instance of its own (a Dagster
    # context variable) that must be left again, or later tests in this process meet a dead one.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=DEFS.get_repository_def()
        ) as context,
    ):
        result = schedule.evaluate_tick(context)
    assert result.skip_message is None, result.skip_message
    return list(result.run_requests or [])


def test_schedule_runs_after_midnight_utc_daily():
    schedule = DEFS.get_schedule_def(SCHEDULE.name)
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.execution_timezone in (None, "UTC")
    assert schedule.job_name == "demo_daily"


@pytest.mark.parametrize(
    "tick, expected",
    [
        (datetime(2026, 11, 10, 1, 0, tzinfo=UTC), "2026-11-09"),
        (datetime(2026, 11, 2, 1, 0, tzinfo=UTC), "2026-11-01"),
        (datetime(2026, 12, 1, 1, 0, tzinfo=UTC), "2026-11-30"),
    ],
)
def test_schedule_requests_previous_days_partition(tick, expected):
    requests = _evaluate(tick)
    assert [r.partition_key for r in requests] == [expected]
