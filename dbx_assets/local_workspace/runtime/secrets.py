"""`dbutils.secrets` on the local workspace, and the redaction of what it hands out.

Values are read from the workspace's secret store file (secret_store.py, owner-only) when
a notebook asks for them, so they never pass through the task's invocation file or its
environment. As on Databricks, every value read is redacted from what the task returns:
once the first secret is read, this process's stdout and stderr (file descriptors 1 and 2,
so subprocesses and C-level writes too) go through a pipe whose pump replaces each value by
`[REDACTED]` before it reaches the task's log file; `redact_outcome` does the same for the
exit value, error and traceback. Like Databricks' this is redaction of literals, not a
security boundary: a notebook that transforms a value can still print it.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .contract import TaskOutcome
from .secret_store import SecretStore

REDACTED = "[REDACTED]"
_READ_CHUNK = 64 * 1024  # bytes a pump reads at a time


class IllegalArgumentException(ValueError):
    """The name Databricks' dbutils.secrets errors carry (java.lang.IllegalArgumentException)."""


@dataclass(frozen=True)
class SecretScope:
    name: str


@dataclass(frozen=True)
class SecretMetadata:
    key: str


def _forms(value: str) -> set[str]:
    """The ways a literal commonly appears in output: as is, inside a repr, inside JSON."""
    return {f for f in (value, repr(value)[1:-1], json.dumps(value)[1:-1]) if f}


class Redactor:
    """Replaces registered literals in text, and (once installed) in everything written to fds 1 and 2."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._literals: set[bytes] = set()
        # (pattern, longest, literals): replaced as a whole, so the pumps read a consistent snapshot
        self._state: tuple[re.Pattern[bytes] | None, int, tuple[bytes, ...]] = (None, 0, ())
        self._pumps: list[tuple[tuple[int, ...], int, threading.Thread]] = []  # (fds, saved original, pump)

    # -- what to redact ---------------------------------------------------------------------------
    def add(self, value: str | bytes) -> None:
        texts: set[str] = set()
        raw: set[bytes] = set()
        if isinstance(value, bytes):
            raw.add(value)
            with contextlib.suppress(UnicodeDecodeError):
                texts |= _forms(value.decode("utf-8"))
        else:
            texts |= _forms(value)
        raw |= {t.encode("utf-8") for t in texts}
        raw.discard(b"")
        with self._lock:
            if raw <= self._literals:
                return
            self._literals |= raw
            ordered = tuple(sorted(self._literals, key=len, reverse=True))  # longest first: no partial leftovers
            self._state = (re.compile(b"|".join(re.escape(v) for v in ordered)), len(ordered[0]), ordered)
        self.install()

    def redact_bytes(self, data: bytes) -> bytes:
        pattern = self._state[0]
        return data if pattern is None else pattern.sub(REDACTED.encode(), data)

    def redact(self, text: str | None) -> str | None:
        if text is None or self._state[0] is None:
            return text
        return self.redact_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def redact_outcome(self, outcome: TaskOutcome) -> TaskOutcome:
        for name in ("state_message", "notebook_result", "error", "error_trace", "logs"):
            setattr(outcome, name, self.redact(getattr(outcome, name)))
        return outcome

    # -- the stdout/stderr pipes ------------------------------------------------------------------
    def install(self) -> None:
        """Route fds 1 and 2 through redacting pumps (once per process)."""
        with self._lock:
            if self._pumps:
                return
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    stream.flush()  # what was written before goes out unfiltered, in order
            # A task's stdout and stderr are one log file: then one pipe keeps their order.
            groups: list[tuple[int, ...]] = [(1, 2)] if _same_file(1, 2) else [(1,), (2,)]
            for fds in groups:
                read_end, write_end = os.pipe()
                saved = os.dup(fds[0])
                for fd in fds:
                    os.dup2(write_end, fd)
                os.close(write_end)
                pump = threading.Thread(target=self._pump, args=(read_end, saved), name=f"redact-fd{fds}", daemon=True)
                pump.start()
                self._pumps.append((fds, saved, pump))

    def close(self, timeout: float = 5.0) -> None:
        """Drain the pumps into the original files and put fds 1 and 2 back (call before os._exit)."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.flush()
        with self._lock:
            pumps, self._pumps = self._pumps, []
        for fds, saved, _ in pumps:
            for fd in fds:
                os.dup2(saved, fd)  # drops this process's write ends of the pipe
        for _, saved, pump in pumps:
            pump.join(timeout)  # a child still holding the pipe open would keep it from ending
            os.close(saved)

    def _pump(self, read_end: int, out: int) -> None:
        pending = b""
        while True:
            chunk = os.read(read_end, _READ_CHUNK)
            pending += chunk
            pending = self._emit(pending, out, final=not chunk)
            if not chunk:
                break
        os.close(read_end)

    def _emit(self, pending: bytes, out: int, final: bool) -> bytes:
        """Write out the redacted part of `pending` that no later byte can change; return the rest:
        a tail that could still grow into a literal (only a short tail can), so output is not
        held back needlessly, which would also reorder it against the other stream."""
        pattern, longest, literals = self._state
        if pattern is None:
            _write_all(out, pending)
            return b""
        safe = len(pending) - (longest - 1)  # before this, every literal is whole in `pending`
        parts, pos, hold = [], 0, len(pending)
        for m in pattern.finditer(pending):
            if not final and m.start() >= safe and _could_grow(pending[m.start() :], literals):
                hold = m.start()  # e.g. "abc" matched, but "abcdef" is a literal too
                break
            parts += [pending[pos : m.start()], REDACTED.encode()]
            pos = m.end()
        if not final and hold == len(pending):
            hold = next((i for i in range(max(pos, safe), len(pending)) if _could_grow(pending[i:], literals)), hold)
        parts.append(pending[pos:hold])
        _write_all(out, b"".join(parts))
        return pending[hold:]


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _could_grow(tail: bytes, literals: tuple[bytes, ...]) -> bool:
    return any(len(lit) > len(tail) and lit.startswith(tail) for lit in literals)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# One task per process: one redactor, drained by task_process.main before it exits.
REDACTOR = Redactor()


class WorkspaceSecrets:
    """dbutils.secrets over the workspace's store. `fallback` (the older DBX_SECRET_<SCOPE>_<KEY>
    environment variables) answers only for a secret the store does not have."""

    def __init__(self, store_dir: Path, fallback: object | None = None, redactor: Redactor = REDACTOR):
        self._store = SecretStore(store_dir)
        self._fallback = fallback
        self._redactor = redactor

    def get(self, scope: str, key: str) -> str:
        return self._read(scope, key).decode("utf-8", "replace")

    def getBytes(self, scope: str, key: str) -> bytes:
        return self._read(scope, key)

    def list(self, scope: str) -> list[SecretMetadata]:
        doc = self._store.scope(scope)
        if doc is None:
            raise IllegalArgumentException(f"Scope {scope} does not exist!")
        return [SecretMetadata(s["key"]) for s in doc["secrets"].values()]

    def listScopes(self) -> builtins.list[SecretScope]:  # `list` is a method here
        return [SecretScope(s["name"]) for s in self._store.load()["scopes"].values()]

    def help(self, method: str | None = None) -> None:
        print("dbutils.secrets (local workspace): get(scope, key), getBytes(scope, key), list(scope), listScopes()")

    def _read(self, scope: str, key: str) -> bytes:
        secret = self._store.secret(scope, key)
        if secret is None:
            # Not redacted: an environment variable is no workspace secret (it is in os.environ
            # and in the cluster spec anyway), and redacting it would only mangle output.
            return self._from_fallback(scope, key)
        self._redactor.add(secret.value)
        return secret.value

    def _from_fallback(self, scope: str, key: str) -> bytes:
        message = f"Secret does not exist with scope: {scope} and key: {key}"
        env_var = getattr(self._fallback, "env_var", None)
        if env_var is None:
            raise IllegalArgumentException(message)
        name = env_var(scope, key)
        if name not in os.environ:
            raise IllegalArgumentException(
                f"{message} (locally: `databricks secrets put-secret {scope} {key}`, or set the environment variable {name})"
            )
        return os.environ[name].encode("utf-8")
