"""Start or reuse the local workspace server for a state dir; what the Dagster resource calls.

Several processes (webserver, daemon, run workers) may call `ensure_running` at once:
an fcntl lock on DIR/launch.lock makes them share ONE detached server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .app import read_connection


@dataclass(frozen=True)
class Connection:
    host: str
    token: str
    state_dir: Path
    ca_cert: Path | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def healthy(state_dir: Path, timeout: float = 2.0) -> Connection | None:
    """The recorded server if its pid is alive and an authenticated request succeeds."""
    info = read_connection(state_dir)
    if not info or not _pid_alive(int(info.get("pid", 0))):
        return None
    ctx = None
    if info.get("ca_cert"):
        ctx = ssl.create_default_context(cafile=info["ca_cert"])
    # The admin endpoint is authenticated but never fault-injected, so faults cannot fake an outage.
    req = urllib.request.Request(
        info["host"] + "/api/2.0/local/faults", headers={"Authorization": f"Bearer {info['token']}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            if resp.status != 200:
                return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return Connection(info["host"], info["token"], state_dir, Path(info["ca_cert"]) if info.get("ca_cert") else None)


def ensure_running(state_dir: Path, *, timeout: float = 60, tls: bool = False) -> Connection:
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "launch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = healthy(state_dir)
        if conn is not None:
            return conn
        previous = read_connection(state_dir) or {}
        if _is_workspace_server(int(previous.get("pid", 0))):
            # Alive but slow (a loaded machine): wait for it rather than start a second server.
            return _wait_for_existing(state_dir, int(previous["pid"]), timeout)
        cmd = [sys.executable, "-m", "dbx_assets.local_workspace", "serve", "--state-dir", str(state_dir)]
        if tls:
            cmd.append("--tls")
        with open(state_dir / "server.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_connection(state_dir) or {}
            if info.get("pid") == proc.pid and info != previous:
                conn = healthy(state_dir)
                if conn is not None:
                    return conn
            if proc.poll() is not None:
                raise RuntimeError(
                    f"The local workspace server exited with code {proc.returncode} while starting; see {state_dir / 'server.log'}"
                )
            time.sleep(0.1)
        proc.terminate()
        raise TimeoutError(
            f"The local workspace server did not answer within {timeout:.0f}s; see {state_dir / 'server.log'}"
        )


def server_running(state_dir: Path) -> bool:
    """Whether the server recorded for `state_dir` is still a live process (answering or not)."""
    info = read_connection(Path(state_dir).resolve()) or {}
    return _is_workspace_server(int(info.get("pid", 0)))


def _is_workspace_server(pid: int) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        return b"dbx_assets.local_workspace" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_for_existing(state_dir: Path, pid: int, timeout: float) -> Connection:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = healthy(state_dir, timeout=5.0)
        if conn is not None:
            return conn
        if not _is_workspace_server(pid):
            break
        time.sleep(0.5)
    raise TimeoutError(
        f"The local workspace server (pid {pid}) in {state_dir} is running but not answering. "
        f"Stop it with `python -m dbx_assets.local_workspace stop --state-dir {state_dir}` and retry; "
        f"see {state_dir / 'server.log'}"
    )


def stop(state_dir: Path, timeout: float = 30) -> bool:
    """SIGTERM the recorded server and wait for it to exit. Returns False if none was running."""
    info = read_connection(Path(state_dir))
    if not info or not _pid_alive(int(info.get("pid", 0))):
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


def login_url(state_dir: Path, path: str = "/") -> str | None:
    """A one-time link (valid minutes) that logs a browser into the workspace's pages and opens
    `path`; minted by the running server with the token from DIR/connection.json. None if no
    server is running."""
    import json

    from .pages.login_link import LOGIN_LINK_API

    conn = healthy(Path(state_dir).resolve())
    if conn is None:
        return None
    ctx = ssl.create_default_context(cafile=str(conn.ca_cert)) if conn.ca_cert else None
    req = urllib.request.Request(
        conn.host + LOGIN_LINK_API,
        data=json.dumps({"path": path}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {conn.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        return str(json.loads(resp.read())["login_url"])
