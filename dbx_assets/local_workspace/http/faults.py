"""Fault injection for the local workspace: 429s, transient 5xx, latency, dropped connections
and failing cluster starts, so clients can be tested against what real workspaces do.

Set at start (`serve --fault-*` flags or DIR/faults.json) and changed while running through
the admin endpoint `GET/PUT /api/2.0/local/faults` (same bearer token, never faulted).
The admin endpoint also serves a count of requests by endpoint, which the benchmark reads.

`clock_offset_seconds` skews the workspace clock: every timestamp it reports (runs, tasks,
clusters, DBFS/Files modification times, the HTTP Date header) is shifted by that much.

Faults are decided BEFORE a request has any effect (a 429'd run-now starts no run), except
`drop_after`, which drops the connection after a successful mutating call took effect: the
client never sees the answer and retries (idempotency tokens must prevent duplicates).
Draws come from one seeded RNG, so a failing test can be replayed with the logged seed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..engine.clock import Clock
from ..engine.errors import invalid
from .http_types import Request, Response, Router

log = logging.getLogger("dbx_local_workspace")

ADMIN_PATH = "/api/2.0/local/faults"
FAULTS_FILE = "faults.json"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
_SHARES = ("rate_limit", "server_error", "drop", "drop_after", "cluster_start_fail")


@dataclass(frozen=True)
class FaultConfig:
    rate_limit: float = 0.0  # share of calls answered 429 REQUEST_LIMIT_EXCEEDED (+ Retry-After)
    server_error: float = 0.0  # share answered `server_error_status` TEMPORARILY_UNAVAILABLE
    # 503 is what Databricks sends for TEMPORARILY_UNAVAILABLE and what the SDK retries (Retry-After);
    # 500 tests a client against errors the SDK does NOT retry.
    server_error_status: int = 503
    latency_ms: int = 0  # added to every faultable call
    drop: float = 0.0  # share whose connection is closed without a response, before any effect
    drop_after: float = 0.0  # share of successful mutating calls dropped AFTER their effect (lost response)
    cluster_start_fail: float = 0.0  # share of cluster starts failing with CLOUD_PROVIDER_LAUNCH_FAILURE
    retry_after_seconds: int = 1
    seed: int | None = None  # None: a random seed, logged and reported by GET
    endpoints: tuple[str, ...] = ()  # regexes searched in the path; empty: every /api call
    limit: int = 0  # stop injecting after this many faults (0: no limit); makes "fail once" tests exact
    clock_offset_seconds: float = 0.0  # shift of every reported timestamp (clock skew); may be negative

    @classmethod
    def from_dict(cls, data: dict) -> FaultConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for name in _SHARES:
            if name in values:
                share = float(values[name])
                if not 0.0 <= share <= 1.0:
                    raise ValueError(f"Fault share {name} must be between 0 and 1, got {values[name]!r}")
                values[name] = share
        for name in ("latency_ms", "retry_after_seconds", "limit"):
            if name in values and (int(values[name]) < 0):
                raise ValueError(f"Fault setting {name} must be >= 0, got {values[name]!r}")
            if name in values:
                values[name] = int(values[name])
        if "server_error_status" in values:
            values["server_error_status"] = int(values["server_error_status"])
            if values["server_error_status"] not in (500, 503):
                raise ValueError(f"server_error_status must be 500 or 503, got {values['server_error_status']}")
        if "clock_offset_seconds" in values:
            offset = values["clock_offset_seconds"]
            if isinstance(offset, bool) or not isinstance(offset, (int, float, str)):
                raise ValueError(f"clock_offset_seconds must be a number of seconds, got {offset!r}")
            values["clock_offset_seconds"] = float(offset)
            if abs(values["clock_offset_seconds"]) > 10 * 365 * 86400:
                raise ValueError("clock_offset_seconds must be within +-10 years")
        if values.get("seed") is not None:
            values["seed"] = int(values["seed"])
        endpoints = values.get("endpoints") or ()
        if isinstance(endpoints, str):
            endpoints = (endpoints,)
        for pattern in endpoints:
            re.compile(pattern)
        values["endpoints"] = tuple(endpoints)
        if values.get("rate_limit", 0) + values.get("server_error", 0) + values.get("drop", 0) > 1.0:
            raise ValueError("rate_limit + server_error + drop must not exceed 1")
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["endpoints"] = list(self.endpoints)
        return d

    @property
    def active(self) -> bool:
        return any(getattr(self, n) for n in _SHARES) or self.latency_ms > 0


def load_config_file(state_dir: Path) -> dict:
    """DIR/faults.json as a dict ({} if absent); a malformed file is an error naming it."""
    path = Path(state_dir) / FAULTS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of fault settings")
    return data


@dataclass
class _Tally:
    requests: Counter = field(default_factory=Counter)  # "METHOD /path" -> calls seen
    injected: dict[str, Counter] = field(default_factory=dict)  # fault kind -> "METHOD /path" -> count

    def add_fault(self, kind: str, endpoint: str) -> None:
        self.injected.setdefault(kind, Counter())[endpoint] += 1


class FaultInjector:
    """Decides, per /api request, whether to fault it; counts requests by endpoint."""

    def __init__(self, config: FaultConfig | None = None):
        self._lock = threading.Lock()
        self._tally = _Tally()
        self.clock = Clock()  # replaced by the dispatcher's clock in register()
        self.configure(config or FaultConfig())

    # -- configuration ----------------------------------------------------------------------------
    def configure(self, config: FaultConfig) -> None:
        seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        with self._lock:
            self.config = config
            self.seed = seed
            self._rng = random.Random(seed)
            self._patterns = [re.compile(p) for p in config.endpoints]
            self._faults_since_configure = 0
            self.clock.offset_ms = round(config.clock_offset_seconds * 1000)
        if config.clock_offset_seconds:
            log.warning("clock skew ON: reported times shifted by %+.3f s", config.clock_offset_seconds)
        if config.active:
            log.warning("fault injection ON (seed %d): %s", seed, json.dumps(config.to_dict()))
        else:
            log.info("fault injection off")

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "config": self.config.to_dict(),
                "seed": self.seed,
                "requests": dict(self._tally.requests),
                "injected": {k: dict(v) for k, v in self._tally.injected.items()},
            }

    def reset_counts(self) -> None:
        with self._lock:
            self._tally = _Tally()

    # -- the hook in Dispatcher.dispatch ---------------------------------------------------------
    @staticmethod
    def exempt(req: Request) -> bool:
        return not req.path.startswith("/api/") or req.path.startswith(ADMIN_PATH)

    def before(self, req: Request) -> Response | None:
        """Count the call; return a fault response (or a drop) to send INSTEAD of handling it."""
        endpoint = f"{req.method} {req.path}"
        with self._lock:
            self._tally.requests[endpoint] += 1
            if not self._applies(req):
                return None
            c = self.config
            draw = self._rng.random()
            kind = None
            if draw < c.drop:
                kind = "drop"
            elif draw < c.drop + c.rate_limit:
                kind = "rate_limit"
            elif draw < c.drop + c.rate_limit + c.server_error:
                kind = "server_error"
            if kind:
                self._tally.add_fault(kind, endpoint)
                self._faults_since_configure += 1
        if c.latency_ms:
            time.sleep(c.latency_ms / 1000)
        if kind == "drop":
            return Response.dropped()
        if kind == "rate_limit":
            resp = Response.json(
                {
                    "error_code": "REQUEST_LIMIT_EXCEEDED",
                    "message": f"Too many requests to {req.path}; retry after {c.retry_after_seconds} s "
                    "(injected by the local workspace)",
                },
                429,
            )
            resp.headers["Retry-After"] = str(c.retry_after_seconds)
            return resp
        if kind == "server_error":
            status = c.server_error_status
            resp = Response.json(
                {
                    "error_code": "TEMPORARILY_UNAVAILABLE",
                    "message": "The service is temporarily unavailable. Please try again later. "
                    "(injected by the local workspace)",
                },
                status,
            )
            if status == 503:
                resp.headers["Retry-After"] = str(c.retry_after_seconds)
            return resp
        return None

    def after(self, req: Request, resp: Response) -> Response:
        """Maybe lose the answer of a mutating call that already took effect."""
        if resp.status >= 400 or req.method not in MUTATING:
            return resp
        with self._lock:
            if not self._applies(req) or not self.config.drop_after or self._rng.random() >= self.config.drop_after:
                return resp
            self._tally.add_fault("drop_after", f"{req.method} {req.path}")
            self._faults_since_configure += 1
        return Response.dropped()

    def _exhausted(self) -> bool:
        return bool(self.config.limit) and self._faults_since_configure >= self.config.limit

    def _applies(self, req: Request) -> bool:
        if self.exempt(req) or not self.config.active or self._exhausted():
            return False
        return not self._patterns or any(p.search(req.path) for p in self._patterns)

    # -- the hook in Clusters._boot ------------------------------------------------------------------
    def cluster_start_failure(self, cluster_id: str) -> dict | None:
        """A Databricks termination_reason if this cluster start should fail, else None."""
        with self._lock:
            share = self.config.cluster_start_fail
            if not share or self._exhausted() or self._rng.random() >= share:
                return None
            self._tally.add_fault("cluster_start_fail", cluster_id)
            self._faults_since_configure += 1
        return {
            "code": "CLOUD_PROVIDER_LAUNCH_FAILURE",
            "type": "CLOUD_FAILURE",
            "parameters": {
                "databricks_error_message": "The cloud provider could not launch the driver node "
                "(injected by the local workspace: cluster_start_fail)",
            },
        }

    # -- the admin endpoint ----------------------------------------------------------------------
    def register(self, d: Router) -> None:
        # The injector drives the clock every API reports times in.
        d.clock.offset_ms = self.clock.offset_ms
        self.clock = d.clock
        d.route("GET", ADMIN_PATH, lambda req: self.snapshot())
        d.route("PUT", ADMIN_PATH, self._api_put)

    def _api_put(self, req: Request) -> dict:
        body = req.json()
        reset = bool(body.pop("reset_counts", False))
        try:
            config = FaultConfig.from_dict(body)
        except (ValueError, TypeError, re.error) as e:
            raise invalid(f"Bad fault settings: {e}") from None
        self.configure(config)
        if reset:
            self.reset_counts()
        return self.snapshot()
