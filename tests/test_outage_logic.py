"""Riding out an unreachable workspace while watching a run: pure logic on the SDK's own dataclasses
and exceptions, a fake client and a fake monotonic clock (no server, no waiting)."""

from __future__ import annotations

import datetime
import socket
from types import SimpleNamespace

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import (
    BadRequest,
    InternalError,
    NotFound,
    PermissionDenied,
    TemporarilyUnavailable,
    TooManyRequests,
    Unauthenticated,
)
from databricks.sdk.service.jobs import (
    Run,
    RunLifeCycleState,
    RunOutput,
    RunResultState,
    RunState,
    RunTask,
)

from dbx_assets.integration.jobs.outage import (
    OutagePolicy,
    OutageWatch,
    WorkspaceUnreachable,
    describe_cause,
    duration,
    is_outage,
)
from dbx_assets.integration.jobs.runner import RunHandle, WorkflowRunner

HOST = "https://adb-1.azuredatabricks.net"
URL = f"{HOST}/jobs/1/runs/7"


# -- what counts as an outage ----------------------------------------------------------------------------


def _refused() -> TimeoutError:
    """What the SDK raises once its retry budget is spent on a refused connection."""
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as root:
            raise requests.ConnectionError("Max retries exceeded") from root
    except requests.ConnectionError as err:
        try:
            raise TimeoutError("Timed out after 0:00:20") from err
        except TimeoutError as timeout:
            return timeout


@pytest.mark.parametrize(
    ("err", "cause"),
    [
        (_refused(), "ConnectionRefusedError"),
        (requests.ConnectionError(ConnectionResetError(104, "reset")), "ConnectionResetError"),
        (requests.ReadTimeout("read timed out"), "ReadTimeout"),
        (socket.gaierror(-2, "Name or service not known"), "gaierror (DNS)"),
        (TemporarilyUnavailable("try later", error_code="TEMPORARILY_UNAVAILABLE"), "TEMPORARILY_UNAVAILABLE"),
        (InternalError("boom"), "InternalError"),
        (TooManyRequests("slow down", error_code="REQUEST_LIMIT_EXCEEDED"), "REQUEST_LIMIT_EXCEEDED"),
    ],
)
def test_what_an_unreachable_workspace_looks_like_is_an_outage(err, cause):
    assert is_outage(err)
    assert describe_cause(err) == cause


@pytest.mark.parametrize(
    "err",
    [
        Unauthenticated("Invalid access token."),
        PermissionDenied("Invalid access token.", error_code="PERMISSION_DENIED"),
        NotFound("Run 7 does not exist", error_code="RESOURCE_DOES_NOT_EXIST"),
        BadRequest("bad", error_code="INVALID_PARAMETER_VALUE"),
        ValueError("a bug"),
        FileNotFoundError("local file"),
    ],
)
def test_the_workspace_s_own_answers_and_bugs_are_not_outages(err):
    assert not is_outage(err)


def test_the_real_sdk_against_a_closed_port_is_an_outage_named_by_its_cause():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = WorkspaceClient(config=Config(host=f"http://127.0.0.1:{port}", token="x" * 20, retry_timeout_seconds=1))
    with pytest.raises(Exception) as raised:
        client.jobs.get_run(7)
    assert is_outage(raised.value), repr(raised.value)
    assert describe_cause(raised.value) == "ConnectionRefusedError"


def test_durations_read_like_a_person_would_say_them():
    assert [duration(s) for s in (0, 12, 60, 245, 3600, 3720, 5400)] == [
        "0 s", "12 s", "1 min", "4 min 5 s", "1 h", "1 h 2 min", "1 h 30 min",
    ]  # fmt: skip


# -- the watcher, on a fake client and clock ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))

    def said(self, text: str) -> list[str]:
        return [m for _, m in self.lines if text in m]


class Unreachable:
    """A script entry: fail this call as the SDK does after `seconds` of its own retries."""

    def __init__(self, seconds: float = 20.0, err: BaseException | None = None):
        self.seconds, self.err = seconds, err


class FakeJobs:
    def __init__(self, clock: Clock, script: list):
        self.clock, self.script, self.calls = clock, script, 0
        self.outputs = 0

    def _next(self):
        self.calls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Unreachable):
            self.clock.now += step.seconds
            raise step.err or _refused()
        if isinstance(step, BaseException):
            raise step
        return step

    def get_run(self, run_id: int, include_history: bool = False) -> Run:
        return self._next()

    def get_run_output(self, run_id: int) -> RunOutput:
        self.outputs += 1
        return RunOutput(notebook_output=None)


class FakeClient:
    def __init__(self, clock: Clock, script: list):
        self.jobs = FakeJobs(clock, script)
        self.config = SimpleNamespace(host=HOST)  # a real Config would resolve the host over the network


def _task(key: str, run_id: int, life: RunLifeCycleState, result: RunResultState | None = None) -> RunTask:
    return RunTask(
        task_key=key,
        run_id=run_id,
        attempt_number=0,
        start_time=1,
        end_time=2 if result else None,
        state=RunState(life_cycle_state=life, result_state=result),
    )


def _run(*tasks: RunTask, life=RunLifeCycleState.RUNNING, result=None, message="") -> Run:
    return Run(
        run_id=7, run_page_url=URL, tasks=list(tasks), state=RunState(life, result_state=result, state_message=message)
    )


RUNNING = _run(_task("a", 11, RunLifeCycleState.RUNNING), _task("b", 12, RunLifeCycleState.RUNNING))
DONE = _run(
    _task("a", 11, RunLifeCycleState.TERMINATED, RunResultState.SUCCESS),
    _task("b", 12, RunLifeCycleState.TERMINATED, RunResultState.SUCCESS),
    life=RunLifeCycleState.TERMINATED,
    result=RunResultState.SUCCESS,
)


def _runner(
    script: list, clock: Clock, log: Log, tolerance: float = 3600, reconnect=None, pause=None
) -> WorkflowRunner:
    client = FakeClient(clock, script)
    return WorkflowRunner(
        client,  # type: ignore[arg-type]  # the two calls watching makes
        outage=OutagePolicy(tolerance_seconds=tolerance),
        log=log,  # type: ignore[arg-type]
        sleep=clock.sleep,
        pause=pause or clock.sleep,
        clock=clock,
        reconnect=reconnect,
    )


def _handle() -> RunHandle:
    return RunHandle(1, 7, URL, task_keys=("a", "b"))


def test_the_step_says_so_keeps_waiting_and_reports_what_ended_meanwhile():
    clock, log = Clock(), Log()
    outage = [Unreachable()] * 10  # ~6 min: 20 s SDK budgets plus the backoff between them (1, 2, 4 ... 30 s)
    runner = _runner([RUNNING, *outage, DONE], clock, log)
    started = clock.now
    finished = list(runner.watch(_handle()))

    assert [f.task_key for f in finished] == ["a", "b"] and all(f.succeeded for f in finished)
    (first,) = log.said("unreachable since")
    assert first.startswith(f"Databricks workspace {HOST} unreachable since ")
    assert first.endswith("(ConnectionRefusedError); run 7 keeps running there — still waiting (giving up after 1 h)")
    since = first.split("since ")[1].split(" ")[0]
    datetime.datetime.strptime(since, "%H:%M:%S")  # the local wall time, for people
    # said within a minute of losing contact: at the first failed poll, after the SDK's own budget
    first_at = next(i for i, (_, m) in enumerate(log.lines) if "unreachable since" in m)
    assert first_at == 0
    reminders = log.said("still unreachable after")
    assert len(reminders) == 1, reminders  # every 3 minutes of a ~6-minute outage, not every poll
    assert "still unreachable after 3 min" in reminders[0]
    assert all("still waiting for run 7 (giving up in" in r for r in reminders)
    (back,) = log.said("reachable again")
    assert back.startswith(f"Databricks workspace {HOST} reachable again after ")
    assert back.endswith("watching run 7 again: 2 task(s) ended meanwhile (a, b); the run ended SUCCESS")
    assert clock.now - started < 3600


def test_backoff_while_unreachable_is_capped_at_30_seconds():
    clock, log = Clock(), Log()
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock.sleep(seconds)

    runner = _runner([RUNNING, *[Unreachable(seconds=0.0)] * 12, DONE], clock, log, pause=pause)
    list(runner.watch(_handle()))
    assert pauses[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(pauses) == 30.0


def test_past_the_tolerance_the_step_fails_with_one_sentence():
    clock, log = Clock(), Log()
    runner = _runner([RUNNING, Unreachable()], clock, log, tolerance=600)
    started = clock.now
    with pytest.raises(WorkspaceUnreachable) as gone:
        list(runner.watch(_handle()))
    message = str(gone.value)
    assert message.startswith(f"Lost contact with Databricks workspace {HOST} for 10 min")
    assert "ConnectionRefusedError" in message and "outage tolerance of 10 min" in message
    assert f"Databricks run 7 ({URL})" in message and "re-execute this step" in message
    assert "outage_tolerance_seconds" in message
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    # it gave up on time: no backoff step past the tolerance, at most one SDK budget after it
    assert 600 <= clock.now - started <= 600 + 20 + 1


def test_credentials_rejected_mid_run_fail_at_once_and_say_nothing_of_an_outage():
    clock, log = Clock(), Log()
    runner = _runner([RUNNING, PermissionDenied("Invalid access token.", error_code="PERMISSION_DENIED")], clock, log)
    with pytest.raises(PermissionDenied):
        list(runner.watch(_handle()))
    assert not log.said("unreachable")


def test_an_outage_between_polls_is_noted_and_the_next_poll_waits_it_out():
    """Reading logs or Pipes channels between polls fails: the watcher says so once, the poll
    that follows rides the outage out, and when a task's output is fetched contact is back."""
    clock, log = Clock(), Log()
    client = FakeClient(clock, [RUNNING, Unreachable(), Unreachable(), DONE])
    between = iter([_refused()])

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        err = next(between, None)
        if err is not None:
            raise err

    runner = WorkflowRunner(
        client,  # type: ignore[arg-type]
        log=log,  # type: ignore[arg-type]
        sleep=sleep,
        pause=clock.sleep,
        clock=clock,
    )
    finished = list(runner.watch(_handle()))
    assert len(finished) == 2 and client.jobs.outputs == 2  # outputs fetched once contact was back
    assert len(log.said("unreachable since")) == 1 and len(log.said("reachable again")) == 1


def test_reconnect_is_tried_while_unreachable_and_a_failing_one_is_only_a_warning():
    clock, log = Clock(), Log()
    tries: list[float] = []

    def reconnect() -> None:
        tries.append(clock.now)
        raise RuntimeError("no server binary")

    runner = _runner([RUNNING, Unreachable(), Unreachable(), DONE], clock, log, reconnect=reconnect)
    assert len(list(runner.watch(_handle()))) == 2
    assert len(tries) == 2
    assert len(log.said("Could not restart the workspace: RuntimeError: no server binary")) == 1  # said once


def test_outside_a_watch_calls_are_plain_calls():
    clock, log = Clock(), Log()
    runner = _runner([RUNNING], clock, log)
    with pytest.raises(TimeoutError):
        runner.tolerant(lambda: (_ for _ in ()).throw(_refused()))
    assert not log.lines


def test_outage_watch_reminds_on_its_own_cadence():
    clock, log = Clock(), Log()
    watch = OutageWatch(
        HOST, 7, URL, log, policy=OutagePolicy(tolerance_seconds=900, remind_every_seconds=60), clock=clock
    )
    for _ in range(10):
        watch.failed(_refused(), clock.now - 20)
        clock.now += 30
    assert len(log.said("unreachable since")) == 1
    assert len(log.said("still unreachable after")) == 4  # at 60, 120, 180, 240 s of a ~5-minute outage
    watch.recovered()
    assert log.said("reachable again after 5 min")
    assert not watch.ongoing
