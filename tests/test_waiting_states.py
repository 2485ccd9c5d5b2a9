"""Waiting states in the step's log: a run queued by max_concurrent_runs (with Databricks' queue
reason), a task retried by Databricks (with its attempt number), once per change. No JVM."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import dagster as dg
from databricks.sdk.service import jobs
from workflow_support import make_resource, materialization_metadata

from dbx_assets.integration.jobs.runner import WaitingStates
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

HEADER = "# Databricks notebook source\n"


def _log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message]


def _job_runs(client, name: str) -> list[jobs.BaseRun]:
    """The runs of the workflow's job, whatever deployment suffix its name carries."""
    job_ids = [j.job_id for j in client.jobs.list() if j.settings and (j.settings.name or "").startswith(name)]
    return [r for job_id in job_ids for r in client.jobs.list_runs(job_id=job_id)]


def test_a_run_held_in_the_queue_logs_its_queue_reason_before_it_starts(dbx_env, tmp_path):
    ws, name = dbx_env, "q" + uuid.uuid4().hex[:8]
    hold = ws.paths.dbfs / "tmp" / name / "hold"  # the notebook waits while this file exists
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.touch()
    (tmp_path / "hold.py").write_text(
        HEADER + f"import os, time\nwhile os.path.exists('/dbfs/tmp/{name}/hold'):\n    time.sleep(0.1)\n"
    )
    workflow = Workflow(
        name=name,
        sources=[NotebookTasks([NotebookAsset(key=f"{name}/hold", notebook="hold.py")], notebooks_dir=tmp_path)],
        max_concurrent_runs=1,
    )
    assets = build_workflow_assets(workflow)
    first_instance, second_instance = dg.DagsterInstance.ephemeral(), dg.DagsterInstance.ephemeral()
    results: dict[str, dg.ExecuteInProcessResult] = {}
    seen: dict[str, object] = {}

    def materialize(which: str, instance: dg.DagsterInstance) -> None:
        results[which] = dg.materialize(
            [assets], resources={"databricks": make_resource(name)}, instance=instance, raise_on_error=False
        )

    def release_once_the_queue_is_logged() -> None:
        """Let the first run finish only after the second step logged why its run waits."""
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                try:  # the step writes its in-memory event log meanwhile: a read can collide, then retry
                    for run in second_instance.get_runs():
                        queued = [m for m in _log_messages(second_instance, run.run_id) if "is queued" in m]
                        if queued:
                            seen["message"] = queued[0]
                            seen["states"] = sorted(
                                r.state.life_cycle_state.value
                                for r in _job_runs(ws.client, name)
                                if r.state and r.state.life_cycle_state
                            )
                            return
                except Exception as err:
                    seen["last_read_error"] = repr(err)
                time.sleep(0.1)
        finally:
            hold.unlink()

    first = threading.Thread(target=materialize, args=("first", first_instance))
    first.start()
    try:
        _wait_running(ws.client, name)
        releaser = threading.Thread(target=release_once_the_queue_is_logged)
        releaser.start()
        materialize("second", second_instance)
        releaser.join(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
        first.join(timeout=120)

    assert results["first"].success and results["second"].success
    message = str(seen.get("message"))
    assert "(MAX_CONCURRENT_RUNS_REACHED)" in message, message
    assert "per-job limit of 1 concurrent job runs" in message, message
    # Logged while the second Databricks run was still waiting behind the first one.
    assert seen["states"] == ["QUEUED", "RUNNING"], seen
    second_run_id = results["second"].run_id
    assert sum("is queued" in m for m in _log_messages(second_instance, second_run_id)) == 1  # once per change
    assert not any("is queued" in m for m in _log_messages(first_instance, results["first"].run_id))


def _wait_running(client, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in _job_runs(client, name):
            if run.state and run.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING:
                return
        time.sleep(0.1)
    raise AssertionError(f"no run of {name} was RUNNING within {timeout}s")


def test_a_task_retried_by_databricks_is_logged_with_its_attempt_number(dbx_env, tmp_path: Path):
    name = "r" + uuid.uuid4().hex[:8]
    (tmp_path / "fails_once.py").write_text(
        HEADER + f"import os\nmarker = '/dbfs/tmp/{name}/tried'\n"
        "if not os.path.exists(marker):\n"
        "    os.makedirs(os.path.dirname(marker), exist_ok=True)\n"
        "    open(marker, 'w').close()\n"
        "    raise ValueError('the first attempt fails')\n"
        "dbutils.notebook.exit('ok')\n"
    )
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [NotebookAsset(key=f"{name}/retried", notebook="fails_once.py", max_retries=1)],
                notebooks_dir=tmp_path,
            )
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [build_workflow_assets(workflow)], resources={"databricks": make_resource(name)}, instance=instance
    )
    assert result.success
    messages = [m for m in _log_messages(instance, result.run_id) if f"{name}__retried" in m and "attempt" in m]
    assert messages, _log_messages(instance, result.run_id)
    assert all("attempt 1" in m and "attempt 0 ended FAILED" in m for m in messages), messages
    assert any("the first attempt fails" in m for m in messages), messages
    assert materialization_metadata(result, dg.AssetKey([name, "retried"]))["databricks_attempt_number"] == 1


class _Said:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def _run(life: str, *tasks: jobs.RunTask, queue: jobs.QueueDetails | None = None) -> jobs.Run:
    return jobs.Run(
        run_id=7,
        state=jobs.RunState(life_cycle_state=jobs.RunLifeCycleState(life)),
        status=jobs.RunStatus(queue_details=queue),
        tasks=list(tasks),
    )


def _task(attempt: int, life: str, result: str | None = None, message: str = "") -> jobs.RunTask:
    state = jobs.RunState(
        life_cycle_state=jobs.RunLifeCycleState(life),
        result_state=jobs.RunResultState(result) if result else None,
        state_message=message,
    )
    return jobs.RunTask(task_key="t", run_id=100 + attempt, attempt_number=attempt, state=state)


def test_waiting_states_are_said_once_per_change():
    said = _Said()
    states = WaitingStates(said)
    limit = jobs.QueueDetails(code=jobs.QueueDetailsCodeCode.ACTIVE_RUNS_LIMIT_REACHED, message="workspace is busy")
    states.observe(_run("QUEUED", queue=limit), [])
    states.observe(_run("QUEUED", queue=limit), [])  # the same state again: nothing new to say
    states.observe(_run("BLOCKED"), [])
    failed = _task(0, "TERMINATED", "FAILED", "boom")
    waiting = _task(1, "WAITING_FOR_RETRY")
    states.observe(_run("RUNNING", failed, waiting), [waiting])
    states.observe(_run("RUNNING", failed, waiting), [waiting])
    running = _task(1, "RUNNING")
    states.observe(_run("RUNNING", failed, running), [running])
    assert said.lines == [
        "Databricks run 7 is queued (ACTIVE_RUNS_LIMIT_REACHED): workspace is busy",
        "Databricks run 7 is blocked: waiting for an upstream dependency",
        "Task t is waiting for retry as attempt 1 (attempt 0 ended FAILED: boom)",
        "Task t is running attempt 1, retried by Databricks (attempt 0 ended FAILED: boom)",
    ]
