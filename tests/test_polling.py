"""Polling right after a task should end: pure logic on the SDK's own dataclasses, a fake clock."""

from __future__ import annotations

import pytest
from databricks.sdk.service.jobs import RunLifeCycleState, RunState, RunTask

from dbx_assets.integration.jobs.runner import ExpectedEnds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _task(key: str, run_id: int, life: RunLifeCycleState) -> RunTask:
    return RunTask(task_key=key, run_id=run_id, state=RunState(life_cycle_state=life))


def test_wakes_just_after_the_usual_duration_then_keeps_looking_through_an_overrun():
    clock = Clock()
    ends = ExpectedEnds({"slow": 30.0, "quick": 2.0}, clock)
    ends.observe([_task("slow", 1, RunLifeCycleState.PENDING)])
    assert ends.wake_within(10.0) is None  # not running yet: nothing to expect
    ends.observe([_task("slow", 1, RunLifeCycleState.RUNNING), _task("quick", 2, RunLifeCycleState.RUNNING)])
    assert ends.wake_within(10.0) == pytest.approx(2.3)  # quick: 2 s + margin, sooner than the backoff
    clock.now += 2.3
    assert ends.wake_within(10.0) == pytest.approx(0.5)  # it overran: look again every 0.5 s ...
    clock.now += 5.1
    assert ends.wake_within(10.0) is None  # ... for 5 s at least, then the backoff takes over
    clock.now += 17.6  # slow was seen PENDING, then RUNNING at the same poll: its window is one point
    assert ends.wake_within(10.0) == pytest.approx(5.3)
    ends.observe([_task("slow", 1, RunLifeCycleState.TERMINATED)])
    assert ends.wake_within(10.0) is None  # it ended: nothing more to expect


def test_unknown_tasks_and_no_history_change_nothing():
    ends = ExpectedEnds({}, Clock())
    ends.observe([_task("new", 3, RunLifeCycleState.RUNNING)])
    assert ends.wake_within(10.0) is None


def test_an_overdue_expectation_wakes_soon():
    clock = Clock()
    ends = ExpectedEnds({"t": 1.0}, clock)
    ends.observe([_task("t", 4, RunLifeCycleState.RUNNING)])
    clock.now += 3.0  # the watcher slept through it (a long backoff step)
    assert ends.wake_within(10.0) == pytest.approx(0.5)


def test_a_start_seen_late_is_polled_densely_through_its_window():
    clock = Clock()
    ends = ExpectedEnds({"t": 2.0}, clock)
    ends.observe([_task("t", 5, RunLifeCycleState.PENDING)])
    clock.now += 4.0  # the next poll, a backoff step later, sees it RUNNING: it started within those 4 s
    ends.observe([_task("t", 5, RunLifeCycleState.RUNNING)])
    # It may already be over (started right after the PENDING poll): from its earliest end, look every 0.25 s.
    assert ends.wake_within(10.0) == pytest.approx(0.25)
    clock.now += 2.1  # 0.2 s before the latest end it can have
    assert ends.wake_within(10.0) == pytest.approx(0.2)
    ends.observe([_task("t", 5, RunLifeCycleState.TERMINATED)])
    assert ends.wake_within(10.0) is None
