"""Run and task state, shaped by the SDK's own dataclasses (jobs.RunState, RunStatus, Run ...).

Used by the scheduler (which writes states) and the Jobs API (which serves runs), so the
two cannot disagree and neither can drift from what the SDK parses. Run documents are
stored in the API's own JSON shape (plus private `_spec`/`_...` keys); `public_run`
re-serialises a stored document through `jobs.Run`, which also makes documents written
by older versions readable after a restart.
"""

from __future__ import annotations

from databricks.sdk.service import jobs

from .clock import Clock

ACTIVE_RUN_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
FAILED_RESULTS = ("FAILED", "TIMEDOUT", "UPSTREAM_FAILED", "CANCELED", "UPSTREAM_CANCELED")

# result_state -> status.termination_details (code, type), per the TerminationCodeCode docs:
# USER_CANCELED is a cancel by a user; CANCELED a cancel by the platform (e.g. the run's timeout).
_TERMINATION = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "TIMEDOUT": ("CANCELED", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "UPSTREAM_FAILED": ("SKIPPED", "SUCCESS"),
    "UPSTREAM_CANCELED": ("SKIPPED", "SUCCESS"),
    "EXCLUDED": ("SKIPPED", "SUCCESS"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"),
}
_V2_ACTIVE = {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED"}


def run_state(life: str, result: str | None = None, message: str = "", user_cancelled: bool = False) -> dict:
    """The (deprecated but still served) `state` object."""
    return jobs.RunState(
        life_cycle_state=jobs.RunLifeCycleState(life),
        result_state=jobs.RunResultState(result) if result else None,
        state_message=message,
        user_cancelled_or_timedout=user_cancelled,
    ).as_dict()


def run_status(life: str, result: str | None = None, message: str = "") -> dict:
    """The `status` object (lifecycle v2 + termination details)."""
    v2 = "WAITING" if life == "WAITING_FOR_RETRY" else life if life in _V2_ACTIVE else "TERMINATED"
    details = None
    if v2 == "TERMINATED":
        if life == "INTERNAL_ERROR":
            cluster = "cluster" in message.lower()
            code, typ = ("CLUSTER_ERROR", "CLOUD_FAILURE") if cluster else ("INTERNAL_ERROR", "INTERNAL_ERROR")
        else:
            code, typ = _TERMINATION.get(result or "", ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"))
        details = jobs.TerminationDetails(
            code=jobs.TerminationCodeCode(code), type=jobs.TerminationTypeType(typ), message=message
        )
    return jobs.RunStatus(state=jobs.RunLifecycleStateV2State(v2), termination_details=details).as_dict()


def set_state(doc: dict, life: str, result: str | None = None, message: str = "", user_cancelled: bool = False) -> None:
    """Set `state` and `status` of a run or task document together."""
    doc["state"] = run_state(life, result, message, user_cancelled)
    doc["status"] = run_status(life, result, message)


def queue_details(code: str, message: str) -> dict:
    return jobs.QueueDetails(code=jobs.QueueDetailsCodeCode(code), message=message).as_dict()


def repair_item(kind: str, start_time: int, task_run_ids: list[int], repair_id: int | None = None) -> dict:
    return jobs.RepairHistoryItem(
        type=jobs.RepairHistoryItemType(kind), id=repair_id, start_time=start_time, task_run_ids=task_run_ids
    ).as_dict()


def public_run(doc: dict, clock: Clock, *, expand_tasks: bool = True, include_history: bool = True) -> dict:
    """A stored run document as runs/get serves it: through jobs.Run, times on the workspace clock."""
    out = jobs.Run.from_dict({k: v for k, v in doc.items() if not k.startswith("_")}).as_dict()
    if not expand_tasks:
        out.pop("tasks", None)
    if not include_history:
        out.pop("repair_history", None)
    return clock.shift(out)


def public_task_run(task: dict, run: dict, clock: Clock) -> dict:
    """A task run as runs/get (given a task run id) and runs/get-output `metadata` serve it: a jobs.Run
    with the run-level fields of its job run and the task itself as its one entry in `tasks`."""
    meta = dict(task, tasks=[task])
    meta.update(
        job_id=run.get("job_id"),
        run_name=run.get("run_name"),
        number_in_job=task.get("run_id"),
        run_type=run.get("run_type"),
        creator_user_name=run.get("creator_user_name"),
        job_parameters=run.get("job_parameters") or [],
        original_attempt_run_id=task.get("_original_attempt_run_id") or task.get("run_id"),
        job_run_id=run["run_id"],
        trigger=run.get("trigger"),
    )
    return public_run(meta, clock)
