"""Task retries as Databricks' Jobs service does them: a task whose attempt fails (or times
out, with `retry_on_timeout`) is run again, up to `max_retries` times, no sooner than
`min_retry_interval_millis` after the failed attempt ended. Each attempt is its own entry in
the run's `tasks` (same task_key, a new task run id, `attempt_number` counting up from 0);
between attempts the new entry waits in WAITING_FOR_RETRY.
"""

from __future__ import annotations

import copy

from .run_state import set_state

RETRY_WAIT_STATE = "WAITING_FOR_RETRY"
# Fields of an attempt that describe how it ran; a new attempt starts without them.
_RUN_FIELDS = (
    "start_time",
    "end_time",
    "setup_duration",
    "execution_duration",
    "cleanup_duration",
    "cluster_instance",
    "resolved_values",
)


def retry_due(spec: dict, attempt: dict, result: str) -> bool:
    """Whether the task gets another attempt after `attempt` ended with `result`."""
    max_retries = int(spec.get("max_retries") or 0)
    if max_retries < 0:  # -1: retry indefinitely
        max_retries = 1 << 30
    if int(attempt.get("attempt_number") or 0) >= max_retries:
        return False
    if result == "FAILED":
        return True
    return result == "TIMEDOUT" and bool(spec.get("retry_on_timeout"))


def retry_interval_seconds(spec: dict) -> float:
    return max(0, int(spec.get("min_retry_interval_millis") or 0)) / 1000.0


def new_attempt(previous: dict, task_run_id: int, page_url: str) -> dict:
    """The next attempt's task entry, waiting for its retry."""
    view = {k: copy.deepcopy(v) for k, v in previous.items() if k not in _RUN_FIELDS}
    view.update(
        run_id=task_run_id,
        attempt_number=int(previous.get("attempt_number") or 0) + 1,
        start_time=0,
        end_time=0,
        setup_duration=0,
        execution_duration=0,
        cleanup_duration=0,
        run_page_url=page_url,
        _original_attempt_run_id=previous.get("_original_attempt_run_id") or previous["run_id"],
    )
    set_state(view, RETRY_WAIT_STATE)
    return view


def latest_attempts(tasks: list[dict]) -> list[dict]:
    """Each task's latest attempt, in the order the tasks first appear."""
    latest: dict[str, dict] = {}
    for task in tasks:
        best = latest.get(task["task_key"])
        if best is None or int(task.get("attempt_number") or 0) >= int(best.get("attempt_number") or 0):
            latest[task["task_key"]] = task
    return list(latest.values())
