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


def test_wakes_just_after_the_usual_duration_once_per_task():
    clock = Clock()
    ends = ExpectedEnds({"slow": 30.0, "quick": 2.0}, clock)
    ends.observe([_task("slow", 1, RunLifeCycleState.PENDING)])
    assert ends.wake_within(10.0) is None  # not running yet: nothing to expect
    ends.observe([_task("slow", 1, RunLifeCycleState.RUNNING), _task("quick", 2, RunLifeCycleState.RUNNING)])
    assert ends.wake_within(10.0) == pytest.approx(2.3)  # quick: 2 s + margin, sooner than the backoff
    assert ends.wake_within(10.0) is None  # slow is due in 30 s: the backoff is sooner, keep it unused
    clock.now += 25.0
    ends.observe([_task("slow", 1, RunLifeCycleState.RUNNING)])  # seen again: its due time does not move
    assert ends.wake_within(10.0) == pytest.approx(5.3)
    assert ends.wake_within(10.0) is None  # each expectation is used once; an overrun falls back to backoff


def test_unknown_tasks_and_no_history_change_nothing():
    ends = ExpectedEnds({}, Clock())
    ends.observe([_task("new", 3, RunLifeCycleState.RUNNING)])
    assert ends.wake_within(10.0) is None


def test_an_overdue_expectation_wakes_at_once():
    clock = Clock()
    ends = ExpectedEnds({"t": 1.0}, clock)
    ends.observe([_task("t", 4, RunLifeCycleState.RUNNING)])
    clock.now += 60.0  # the watcher slept through it (a long backoff step)
    assert ends.wake_within(10.0) == 0.0


def test_a_start_seen_late_is_polled_densely_through_its_window_then_once_at_its_end():
    clock = Clock()
    ends = ExpectedEnds({"t": 2.0}, clock)
    ends.observe([_task("t", 5, RunLifeCycleState.PENDING)])
    clock.now += 4.0  # the next poll, a backoff step later, sees it RUNNING: it started within those 4 s
    ends.observe([_task("t", 5, RunLifeCycleState.RUNNING)])
    # It may already be over (started right after the PENDING poll): from its earliest end, look every 0.25 s.
    assert ends.wake_within(10.0) == pytest.approx(0.25)
    clock.now += 2.1  # 0.2 s before the latest end it can have
    assert ends.wake_within(10.0) == pytest.approx(0.2)
    assert ends.wake_within(10.0) is None  # the window is used up: an overrun falls back to the backoff
    ends.observe([_task("t", 5, RunLifeCycleState.TERMINATED)])
    assert ends.wake_within(10.0) is None
