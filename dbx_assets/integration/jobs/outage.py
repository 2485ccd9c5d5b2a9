"""Riding out a workspace that stops answering while a run goes on there.

A Databricks run does not stop because the orchestrator lost contact with the control plane, so
the step watching it should not either. While watching, every call goes through a client with a
short SDK retry budget; a call that still fails with what an outage looks like (connection
refused or reset, DNS, timeouts, HTTP 5xx / TEMPORARILY_UNAVAILABLE, throttling that outlasts
the budget) is not an error of the run: the step says so once, within a minute, reminds every few
minutes, keeps trying with a backoff capped at 30 s, says when contact returns, and gives up only
after the outage tolerance, with one sentence naming the workspace, the run and what to do.
Everything is decided on this machine's monotonic clock: no remote timestamp is compared with it.
Credentials rejected (401/403) and every other API error are not outages: they propagate at once.
"""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

DEFAULT_TOLERANCE_SECONDS = 3600
# The SDK's own retries while watching: long enough to ride out a blip silently, short enough that
# the step says "unreachable" within a minute (plus one request's HTTP timeout on a black-holed host).
WATCH_RETRY_SECONDS = 20
WATCH_HTTP_TIMEOUT_SECONDS = 30
_GATEWAY_TEXT = ("502", "503", "504", "bad gateway", "gateway timeout", "service unavailable")


class WorkspaceUnreachable(Exception):
    """The workspace stayed unreachable for longer than the outage tolerance (message: one sentence)."""


@dataclass(frozen=True)
class OutagePolicy:
    """How long to wait for a workspace that stopped answering, and how often to say so."""

    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    first_retry_seconds: float = 1.0
    max_retry_seconds: float = 30.0
    remind_every_seconds: float = 180.0

    def delays(self) -> Iterator[float]:
        delay = self.first_retry_seconds
        while True:
            yield delay
            delay = min(self.max_retry_seconds, delay * 2)


def is_outage(err: BaseException) -> bool:
    """True for what a workspace that cannot be reached looks like; False for every answer that is
    the workspace's own word (bad request, not found, credentials rejected, ...)."""
    from databricks.sdk.errors import (  # here: importing the SDK at definitions load costs every load
        DatabricksError,
        DataLoss,
        DeadlineExceeded,
        InternalError,
        PermissionDenied,
        TemporarilyUnavailable,
        TooManyRequests,
        Unauthenticated,
    )

    for cause in _causes(err):
        if isinstance(cause, (Unauthenticated, PermissionDenied)):
            return False
        if isinstance(cause, DatabricksError):
            if isinstance(cause, DataLoss):
                return False
            if isinstance(cause, (TemporarilyUnavailable, DeadlineExceeded, InternalError, TooManyRequests)):
                return True
            if getattr(cause, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
                return True
            # A gateway's HTML error page has no Databricks error code: the SDK keeps its status line.
            return type(cause) is DatabricksError and any(t in str(cause).lower() for t in _GATEWAY_TEXT)
    return any(
        isinstance(
            cause,
            (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                ConnectionError,
                TimeoutError,
                socket.gaierror,
            ),
        )
        for cause in _causes(err)
    )


def describe_cause(err: BaseException) -> str:
    """The innermost telling cause as a short name, e.g. `ConnectionRefusedError`,
    `TEMPORARILY_UNAVAILABLE`, `gaierror (DNS)`; never the message (which could name anything)."""
    from databricks.sdk.errors import DatabricksError

    chain = list(_causes(err))
    for cause in chain:
        if isinstance(cause, DatabricksError):
            return getattr(cause, "error_code", None) or type(cause).__name__
    for cause in reversed(chain):
        if isinstance(cause, socket.gaierror):
            return "gaierror (DNS)"
        if isinstance(cause, (ConnectionError, TimeoutError)) and type(cause) not in (ConnectionError, TimeoutError):
            return type(cause).__name__  # ConnectionRefusedError, ConnectionResetError, ...
    for cause in chain:
        if isinstance(cause, (requests.ConnectionError, requests.Timeout)):
            return type(cause).__name__
    return type(err).__name__


def _causes(err: BaseException) -> Iterator[BaseException]:
    """`err` and what it wraps: __cause__, __context__, urllib3's `.reason`, exceptions in args."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped: list[Any] = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += list(current.args)
        todo += [w for w in wrapped if isinstance(w, BaseException)]


def duration(seconds: float) -> str:
    """12 s, 4 min 5 s, 1 h 2 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class OutageWatch:
    """The outage state of one watched run: when contact was lost (monotonic, plus the local wall
    time for people), what was said, and the backoff. Raises WorkspaceUnreachable once the outage
    is older than the tolerance."""

    def __init__(
        self,
        workspace: str | Callable[[], str],
        run_id: int,
        run_url: str | Callable[[], str],
        log: Any,
        *,
        policy: OutagePolicy = OutagePolicy(),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = datetime.datetime.now,
    ):
        # Callables: read when something is said (a restarted embedded workspace may have moved).
        self._workspace = workspace
        self.run_id = run_id
        self._run_url = run_url
        self.policy = policy
        self._log = log
        self._clock = clock
        self._wall = wall_clock
        self._since: float | None = None
        self._since_wall: datetime.datetime | None = None
        self._cause = ""
        self._said_at = 0.0
        self._delays = policy.delays()

    @property
    def workspace(self) -> str:
        return (self._workspace() if callable(self._workspace) else self._workspace) or "(unknown host)"

    @property
    def run_url(self) -> str:
        return self._run_url() if callable(self._run_url) else self._run_url

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, err: BaseException, call_started: float) -> None:
        """A call that began at `call_started` (monotonic) failed with an outage error."""
        now = self._clock()
        self._cause = describe_cause(err)
        if self._since is None:
            self._since = min(call_started, now)
            self._since_wall = self._wall() - datetime.timedelta(seconds=now - self._since)
            self._delays = self.policy.delays()
            self._said_at = now
            self._log.warning(
                f"Databricks workspace {self.workspace} unreachable since {self._since_wall:%H:%M:%S} ({self._cause}); "
                f"run {self.run_id} keeps running there — still waiting (giving up after "
                f"{duration(self.policy.tolerance_seconds)})"
            )
        gone = now - self._since
        if gone >= self.policy.tolerance_seconds:
            raise WorkspaceUnreachable(self._give_up_sentence(gone))
        if now - self._said_at >= self.policy.remind_every_seconds:
            self._said_at = now
            left = self.policy.tolerance_seconds - gone
            self._log.warning(
                f"Databricks workspace {self.workspace} still unreachable after {duration(gone)} ({self._cause}); "
                f"still waiting for run {self.run_id} (giving up in {duration(left)})"
            )

    def next_delay(self) -> float:
        """Seconds to wait before the next try, never past the moment the tolerance runs out
        (so the step gives up on time rather than a backoff step later)."""
        delay = next(self._delays)
        if self._since is not None:
            left = self.policy.tolerance_seconds - (self._clock() - self._since)
            delay = min(delay, max(left, 0.0))
        return delay

    def recovered(self, news: str = "") -> None:
        """A call succeeded: if contact had been lost, say it is back (and `news`, e.g. the tasks
        that ended meanwhile)."""
        if self._since is None:
            return
        gone = self._clock() - self._since
        self._since = None
        self._log.info(
            f"Databricks workspace {self.workspace} reachable again after {duration(gone)}; "
            f"watching run {self.run_id} again{': ' + news if news else ''}"
        )

    def _give_up_sentence(self, gone: float) -> str:
        since = f"{self._since_wall:%H:%M:%S}" if self._since_wall else "?"
        return (
            f"Lost contact with Databricks workspace {self.workspace} for {duration(gone)} (since {since}, "
            f"{self._cause}), longer than the outage tolerance of {duration(self.policy.tolerance_seconds)}, so this "
            f"step stopped watching Databricks run {self.run_id} ({self.run_url}), which may still be running there; "
            "once the workspace answers, re-execute this step: it reattaches to that run if it is still going and "
            "repairs it if it failed (raise DatabricksResource(outage_tolerance_seconds=...) to wait longer)."
        )
