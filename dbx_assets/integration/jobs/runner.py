"""Running a deployed workflow: start (or reattach, or repair) one Databricks run and report
each task the moment it terminates. Knows nothing of Dagster; the asset body translates.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import BaseRun, Run, RunLifeCycleState, RunOutput, RunTask, SubmitTask

from dbx_assets.integration.jobs.model import LAUNCH_PARAMETER
from dbx_assets.integration.jobs.outage import OutagePolicy, OutageWatch, WorkspaceUnreachable, is_outage

TERMINAL_LIFE_CYCLE = {
    RunLifeCycleState.TERMINATED,
    RunLifeCycleState.SKIPPED,
    RunLifeCycleState.INTERNAL_ERROR,
}


T = TypeVar("T")


def required(value: T | None, what: str) -> T:
    """A field the Databricks API always sets (the SDK types every field optional)."""
    if value is None:
        raise RuntimeError(f"The Databricks workspace answered without {what}.")
    return value


def response_of(waiter: Any) -> Any:
    """The API response behind an SDK waiter (typed `any` by the SDK)."""
    return waiter.response


def idempotency_token(*parts: str) -> str:
    """Databricks caps tokens at 64 characters; the same parts always give the same token."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:48]


@dataclass(frozen=True)
class PollPolicy:
    """Exponential backoff between runs/get calls; resets to `initial` when something changed."""

    initial_seconds: float = 1.0
    max_seconds: float = 10.0
    factor: float = 1.5

    def delays(self) -> Iterator[float]:
        delay = self.initial_seconds
        while True:
            yield delay
            delay = min(self.max_seconds, delay * self.factor)


class ExpectedEnds:
    """When watched tasks should end, on this machine's monotonic clock: the moment a task was
    first seen RUNNING here plus its usual duration. No remote timestamp is compared with the
    local clock, so a skewed workspace clock changes nothing.

    The watcher polls just after the earliest expected end instead of waiting out a backoff
    that has grown while the task ran; each expectation is used once, so a task that overruns
    falls back to the ordinary backoff.
    """

    def __init__(self, usual_seconds: Mapping[str, float], clock: Callable[[], float] = time.monotonic):
        self._usual = dict(usual_seconds)
        self._clock = clock
        self._due: dict[int, float] = {}  # task run id -> expected end
        self._used: set[int] = set()

    def observe(self, tasks: Sequence[RunTask]) -> None:
        now = self._clock()
        for task in tasks:
            usual = self._usual.get(task.task_key or "")
            running = task.state is not None and task.state.life_cycle_state == RunLifeCycleState.RUNNING
            if usual is not None and running and task.run_id is not None and task.run_id not in self._due:
                self._due[task.run_id] = now + usual

    def wake_within(self, limit: float, margin: float = 0.3) -> float | None:
        """Seconds until just after the earliest unused expected end, if that is sooner than
        `limit` (the expectation is then used up); else None."""
        pending = [(due, run_id) for run_id, due in self._due.items() if run_id not in self._used]
        if not pending:
            return None
        due, run_id = min(pending)
        seconds = max(0.0, due + margin - self._clock())
        if seconds >= limit:
            return None
        self._used.add(run_id)
        return seconds


class WaitingStates:
    """Says in the step's log why a run is not making progress — queued (with Databricks' queue
    reason), blocked, a task waiting for its retry — and which attempt a retried task is on:
    once per change, never once per poll."""

    def __init__(self, log: logging.Logger | Any):
        self._log = log
        self._said: dict[str, str] = {}  # "run" or a task key -> the last thing said about it

    def observe(self, run: Run, current: Sequence[RunTask]) -> None:
        self._say("run", self._run_message(run))
        for task in current:
            self._say(f"task:{task.task_key}", self._task_message(task, run.tasks or []))

    def _say(self, subject: str, message: str | None) -> None:
        previous = self._said.get(subject)
        if message == previous or (message is None and previous is None):
            return
        if message is None:
            self._said.pop(subject)
            return
        self._said[subject] = message
        self._log.info(message)

    @staticmethod
    def _run_message(run: Run) -> str | None:
        life = run.state.life_cycle_state if run.state else None
        if life == RunLifeCycleState.QUEUED:
            details = run.status.queue_details if run.status else None
            if details is not None and (details.code or details.message):
                code = details.code.value if details.code else "QUEUED"
                return f"Databricks run {run.run_id} is queued ({code}): {details.message or 'waiting for capacity'}"
            return f"Databricks run {run.run_id} is queued: waiting for capacity"
        if life == RunLifeCycleState.BLOCKED:
            why = (run.state.state_message if run.state else "") or "waiting for an upstream dependency"
            return f"Databricks run {run.run_id} is blocked: {why}"
        return None

    @staticmethod
    def _task_message(task: RunTask, all_tasks: Sequence[RunTask]) -> str | None:
        attempt = task.attempt_number or 0
        if attempt == 0:
            return None
        life = task.state.life_cycle_state if task.state else None
        earlier = next(
            (t for t in all_tasks if t.task_key == task.task_key and (t.attempt_number or 0) == attempt - 1), None
        )
        result = earlier.state.result_state.value if earlier and earlier.state and earlier.state.result_state else ""
        why = (earlier.state.state_message if earlier and earlier.state else "") or result or "it did not succeed"
        after = f"attempt {attempt - 1} ended {result or 'without success'}: {why}"
        if life == RunLifeCycleState.WAITING_FOR_RETRY:
            return f"Task {task.task_key} is waiting for retry as attempt {attempt} ({after})"
        if life in (RunLifeCycleState.PENDING, RunLifeCycleState.RUNNING):
            return f"Task {task.task_key} is running attempt {attempt}, retried by Databricks ({after})"
        result_now = task.state.result_state.value if task.state and task.state.result_state else ""
        return f"Task {task.task_key} ended {result_now or life} on attempt {attempt}, retried by Databricks ({after})"


@dataclass(frozen=True)
class TaskFinished:
    """One task run that reached a terminal state, with what the asset layer needs to report it."""

    task_key: str
    task_run_id: int
    succeeded: bool
    result_state: str
    state_message: str
    cluster_id: str | None
    setup_seconds: float | None
    execution_seconds: float | None
    output: RunOutput | None  # None for tasks that never ran (upstream failed, excluded)
    attempt_number: int = 0  # > 0: Databricks retried the task (max_retries); this is that attempt

    @property
    def error(self) -> str:
        if self.output and (self.output.error or self.output.error_trace):
            return self.output.error or (self.output.error_trace or "").strip().splitlines()[-1]
        return self.state_message or self.result_state


@dataclass
class RunHandle:
    job_id: int | None
    run_id: int
    run_page_url: str
    repair_id: int | None = None
    reattached: bool = False
    task_keys: tuple[str, ...] = ()
    reported: set[int] = field(default_factory=set)


class WorkflowRunner:
    """Starts, reattaches to, repairs and watches runs.

    `client` starts runs (its long SDK retry budget suits idempotent starts); `watch_client` (default:
    `client`) is what watching polls through, with a short budget so that an outage surfaces quickly
    and is ridden out here (`outage`). `sleep` waits between polls (it may read the workspace, e.g.
    Pipes channels); `pause` waits while the workspace is unreachable (it must not). `reconnect` is
    called while the workspace is unreachable, e.g. to restart an embedded workspace."""

    def __init__(
        self,
        client: WorkspaceClient,
        *,
        watch_client: WorkspaceClient | None = None,
        poll: PollPolicy = PollPolicy(),
        outage: OutagePolicy | None = None,
        log: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pause: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        reconnect: Callable[[], None] | None = None,
    ):
        self._client = client
        self._watch_client = watch_client or client
        self._poll = poll
        self._outage_policy = outage or OutagePolicy()
        self._log = log or logging.getLogger(__name__)
        self._sleep = sleep
        self._pause = pause
        self._clock = clock
        self._reconnect = reconnect
        self._outage: OutageWatch | None = None
        self._reconnect_said = ""

    # -- starting ----------------------------------------------------------------------------
    def run_now(
        self,
        job_id: int,
        task_keys: Sequence[str],
        *,
        job_parameters: Mapping[str, str],
        token: str,
        overrides: Mapping[str, Any] | None = None,
        launch_parameter: bool = True,
    ) -> RunHandle:
        """Start the job for exactly `task_keys`; the same token reattaches to the run it started.

        Whether the run is new is decided by identity, not by clocks: each call sends a fresh
        launch id as a job parameter, and a run started by an earlier call with the same token
        carries that earlier call's id. A job that does not declare that parameter (one that is not
        ours: `launch_parameter=False`) gets none, and its run counts as new.
        """
        launch_id = uuid.uuid4().hex
        parameters = {**job_parameters, LAUNCH_PARAMETER: launch_id} if launch_parameter else dict(job_parameters)
        waiter = self._client.jobs.run_now(
            job_id,
            only=list(task_keys),
            job_parameters=parameters or None,
            idempotency_token=token,
            **dict(overrides or {}),
        )
        run = self._client.jobs.get_run(required(response_of(waiter).run_id, "the run-now run_id"))
        run_id = required(run.run_id, "a run_id")
        reattached = launch_parameter and job_parameter(run, LAUNCH_PARAMETER) != launch_id
        if reattached:
            self._log.info("Reattached to Databricks run %s started earlier for this step", run_id)
        return RunHandle(job_id, run_id, run.run_page_url or "", reattached=reattached, task_keys=tuple(task_keys))

    def find_run(self, job_id: int, parameter: str, values: Collection[str], *, scan: int = 200) -> BaseRun | None:
        """The newest of the job's last `scan` runs whose job parameter `parameter` is one of `values`."""
        for i, run in enumerate(self._client.jobs.list_runs(job_id=job_id)):
            if i >= scan:
                return None
            if job_parameter(run, parameter) in values:
                return run
        return None

    def submit(self, run_name: str, tasks: Sequence[dict[str, Any]], *, token: str) -> RunHandle:
        """A one-time run (runs/submit) of `tasks`; the same token reattaches to the run it started."""
        waiter = self._client.jobs.submit(
            run_name=run_name, tasks=[SubmitTask.from_dict(t) for t in tasks], idempotency_token=token
        )
        run = self._client.jobs.get_run(required(response_of(waiter).run_id, "the submitted run_id"))
        return RunHandle(
            None,
            required(run.run_id, "a run_id"),
            run.run_page_url or "",
            task_keys=tuple(t["task_key"] for t in tasks),
        )

    def create_cluster(self, spec: Mapping[str, Any], *, name: str, autotermination_minutes: int = 30) -> str:
        """Create an all-purpose cluster and wait until it runs; auto-termination guards against leaks."""
        fields = ClusterSpec.from_dict(
            {**spec, "cluster_name": name, "autotermination_minutes": autotermination_minutes}
        )
        waiter = self._client.clusters.create(**{k: v for k, v in vars(fields).items() if v is not None})
        cluster_id = required(response_of(waiter).cluster_id, "the new cluster_id")
        self._log.info("Starting all-purpose cluster %s (%s)", cluster_id, name)
        waiter.result(timeout=datetime.timedelta(minutes=30))
        return cluster_id

    def delete_cluster(self, cluster_id: str) -> None:
        self._log.info("Deleting all-purpose cluster %s", cluster_id)
        self._client.clusters.permanent_delete(cluster_id)

    def repair(self, run_id: int, task_keys: Sequence[str], *, overrides: Mapping[str, Any] | None = None) -> RunHandle:
        """Re-run only `task_keys` of a finished run (Databricks runs/repair), keeping its successes."""
        run = self._client.jobs.get_run(run_id, include_history=True)
        latest = max(
            (r.id for r in (run.repair_history or []) if r.id and r.type and r.type.value == "REPAIR"), default=None
        )
        response = self._client.jobs.repair_run(
            run_id,
            rerun_tasks=list(task_keys),
            latest_repair_id=latest,
            **dict(overrides or {}),
        )
        repair_id = required(response_of(response).repair_id, "the repair_id")
        self._log.info("Repairing Databricks run %s (repair %s): rerunning %s", run_id, repair_id, ", ".join(task_keys))
        return RunHandle(run.job_id, run_id, run.run_page_url or "", repair_id=repair_id, task_keys=tuple(task_keys))

    def succeeded_tasks(self, run_id: int) -> set[str]:
        """Task keys whose latest attempt in the run succeeded."""
        latest: dict[str, RunTask] = {}
        for task in self.get_run(run_id).tasks or []:
            best = latest.get(task.task_key)
            if best is None or (task.attempt_number or 0, task.run_id or 0) >= (
                best.attempt_number or 0,
                best.run_id or 0,
            ):
                latest[task.task_key] = task
        return {
            k for k, t in latest.items() if t.state and t.state.result_state and t.state.result_state.value == "SUCCESS"
        }

    def get_run(self, run_id: int) -> Run:
        return self._client.jobs.get_run(run_id, include_history=True)

    def cancel(self, handle: RunHandle) -> None:
        self._log.info("Cancelling Databricks run %s", handle.run_id)
        self._client.jobs.cancel_run(handle.run_id)

    # -- watching ----------------------------------------------------------------------------
    def watch(
        self,
        handle: RunHandle,
        usual_seconds: Mapping[str, float] | None = None,
        on_poll: Callable[[Sequence[RunTask], bool], None] | None = None,
    ) -> Iterator[TaskFinished]:
        """Yield each watched task as it terminates; return when the run (or repair) is over.

        `usual_seconds` (task key -> its usual execution time) lets the watcher poll right
        after a task should end rather than on a backoff that has grown meanwhile.
        `on_poll(tasks, final)` sees the watched tasks after every runs/get (final: the run is
        over), e.g. to tail their clusters' logs; waiting states are logged here, once per change.
        """
        delays = self._poll.delays()
        expected = ExpectedEnds(usual_seconds or {}, self._clock)
        waiting = WaitingStates(self._log)
        outage = self._outage = OutageWatch(
            lambda: (self._watch_client.config.host or "").rstrip("/"),
            handle.run_id,
            lambda: handle.run_page_url,
            self._log,
            policy=self._outage_policy,
            clock=self._clock,
        )
        try:
            while True:
                run = self.tolerant(
                    lambda: self._watch_client.jobs.get_run(handle.run_id, include_history=True), quietly=True
                )
                handle.run_page_url = run.run_page_url or handle.run_page_url  # where it is now (a moved workspace)
                progressed = False
                current = self._current_tasks(run, handle)
                ended = [t for t in current if t.run_id not in handle.reported and _is_terminal(t)]
                if outage.ongoing:
                    outage.recovered(_ended_meanwhile(ended, run, self._run_over(run, handle)))
                waiting.observe(run, current)
                if on_poll is not None:
                    self._outage_noted(on_poll, current, self._run_over(run, handle))
                expected.observe(current)
                # A task ends after the tasks it depends on, so end-time order is a topological order
                # (Dagster needs a multi-asset's events upstream-first).
                for task in sorted(ended, key=lambda t: (t.end_time or 0, t.run_id or 0)):
                    handle.reported.add(required(task.run_id, "a task run_id"))
                    progressed = True
                    yield self._finished(task)
                if self._run_over(run, handle):
                    # Tasks that never got a terminal entry (e.g. run failed to start) are reported too.
                    for task in self._current_tasks(run, handle):
                        if task.run_id not in handle.reported:
                            handle.reported.add(required(task.run_id, "a task run_id"))
                            yield self._finished(task, forced_state=run)
                    return
                if progressed:
                    delays = self._poll.delays()
                delay = next(delays)
                until_expected_end = expected.wake_within(delay)
                if until_expected_end is not None:
                    delay = until_expected_end
                    delays = self._poll.delays()  # if the task overruns, look again soon, then back off
                self._outage_noted(self._sleep, delay)
        finally:
            self._outage = None  # outside a watch, calls are plain calls again

    # -- riding out an outage -----------------------------------------------------------------------
    def tolerant(self, call: Callable[[], T], *, quietly: bool = False) -> T:
        """`call()` (which talks to the workspace), retried while the workspace is unreachable, up to
        the outage tolerance of the run being watched (then WorkspaceUnreachable). Any other error
        propagates at once. Outside `watch`, a plain call. `quietly`: the caller says when contact
        is back (with what it learnt)."""
        outage = self._outage
        if outage is None:
            return call()
        while True:
            started = self._clock()
            try:
                result = call()
            except Exception as err:
                if not is_outage(err):
                    raise
                outage.failed(err, started)  # says so; raises WorkspaceUnreachable past the tolerance
                self._try_reconnect()
                self._pause(outage.next_delay())
                continue
            if not quietly:
                outage.recovered()
            return result

    def _outage_noted(self, call: Callable[..., None], *args: Any) -> None:
        """Work between polls (reading logs, Pipes channels): an outage there is noted and the next
        poll, which waits it out, takes over; nothing is retried here."""
        started = self._clock()
        try:
            call(*args)
        except Exception as err:
            if self._outage is None or not is_outage(err):
                raise
            self._outage.failed(err, started)

    def _try_reconnect(self) -> None:
        if self._reconnect is None:
            return
        try:
            self._reconnect()
        except Exception as err:  # the next try says whether the workspace answers
            said = f"Could not restart the workspace: {type(err).__name__}: {err}"
            if said != self._reconnect_said:  # once, not at every try of an hour-long outage
                self._reconnect_said = said
                self._log.warning(said)

    def _current_tasks(self, run: Run, handle: RunHandle) -> list[RunTask]:
        """The latest attempt of each watched task (restricted to the repair's task runs when repairing)."""
        allowed_ids: set[int] | None = None
        if handle.repair_id is not None:
            for entry in run.repair_history or []:
                if entry.id == handle.repair_id:
                    allowed_ids = set(entry.task_run_ids or [])
        latest: dict[str, RunTask] = {}
        for task in run.tasks or []:
            if task.task_key not in handle.task_keys:
                continue
            if allowed_ids is not None and task.run_id not in allowed_ids:
                continue
            best = latest.get(task.task_key)
            if best is None or (task.attempt_number or 0, task.run_id or 0) >= (
                best.attempt_number or 0,
                best.run_id or 0,
            ):
                latest[task.task_key] = task
        return list(latest.values())

    def _run_over(self, run: Run, handle: RunHandle) -> bool:
        if handle.repair_id is not None:
            entry = next((e for e in run.repair_history or [] if e.id == handle.repair_id), None)
            state = entry.state if entry else None
            return state is not None and state.life_cycle_state in TERMINAL_LIFE_CYCLE
        return bool(run.state and run.state.life_cycle_state in TERMINAL_LIFE_CYCLE)

    def _finished(self, task: RunTask, forced_state: Run | None = None) -> TaskFinished:
        state = task.state
        result = state.result_state.value if state and state.result_state else ""
        message = (state.state_message if state else "") or ""
        if forced_state is not None and not _is_terminal(task):
            run_state = forced_state.state
            result = result or (run_state.result_state.value if run_state and run_state.result_state else "")
            result = result or (
                run_state.life_cycle_state.value if run_state and run_state.life_cycle_state else "FAILED"
            )
            message = message or (run_state.state_message if run_state else "") or ""
        output = None
        ran = (
            task.start_time
            and task.attempt_number is not None
            and result not in ("UPSTREAM_FAILED", "UPSTREAM_CANCELED", "EXCLUDED")
        )
        if ran and task.run_id:
            task_run_id = task.run_id
            try:
                output = self.tolerant(lambda: self._watch_client.jobs.get_run_output(task_run_id))
            except WorkspaceUnreachable:
                raise
            except Exception as err:  # output is extra detail; never lose the task's outcome over it
                self._log.warning("Could not fetch output of task run %s: %s", task.run_id, err)
        return TaskFinished(
            task_key=required(task.task_key, "a task_key"),
            task_run_id=required(task.run_id, "a task run_id"),
            succeeded=result in ("SUCCESS", "SUCCESS_WITH_FAILURES"),
            result_state=result or "UNKNOWN",
            state_message=message,
            cluster_id=task.cluster_instance.cluster_id if task.cluster_instance else None,
            setup_seconds=_ms_to_s(task.setup_duration),
            execution_seconds=_ms_to_s(task.execution_duration),
            output=output,
            attempt_number=task.attempt_number or 0,
        )


def job_parameter(run: Run | BaseRun, name: str) -> str | None:
    """The value a run got for a job parameter (its default when not overridden)."""
    for p in run.job_parameters or []:
        if p.name == name:
            return p.value if p.value is not None else p.default
    return None


def _ended_meanwhile(ended: Sequence[RunTask], run: Run, over: bool) -> str:
    """What happened while the workspace could not be asked, for the "reachable again" line."""
    keys = sorted({t.task_key or "?" for t in ended})
    news = f"{len(keys)} task(s) ended meanwhile ({', '.join(keys)})" if keys else "no task ended meanwhile"
    if over and run.state and run.state.life_cycle_state:
        result = run.state.result_state.value if run.state.result_state else run.state.life_cycle_state.value
        news += f"; the run ended {result}"
        if run.state.state_message:
            news += f": {run.state.state_message}"
    return news


def _is_terminal(task: RunTask) -> bool:
    return bool(task.state and task.state.life_cycle_state in TERMINAL_LIFE_CYCLE)


def _ms_to_s(ms: Any) -> float | None:
    return round(ms / 1000.0, 3) if isinstance(ms, (int, float)) and ms else None
