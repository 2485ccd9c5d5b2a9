"""What `make dev` runs (`python -m dbx_assets.demo dev`) and what `make stop` runs.

`dagster dev` on its own is hard to stop from a script: started in the background by a
non-interactive shell it inherits SIGINT as *ignored* and copies that to SIGTERM, and the
embedded local workspace it uses is a detached server that outlives it. So this launcher:

- starts the local workspace (its clusters are PySpark driver JVMs in their own sessions),
  lands the demo data that is missing, then starts `dagster dev` in a process group of its own;
- on Ctrl-C, SIGTERM, SIGHUP or `stop` from another shell: SIGINT to that group (dagster dev's
  graceful path), SIGKILL to the group after a few seconds, then stops the local workspace, and
  last kills anything still carrying this session's marker in its environment (every process it
  started inherits it, whatever session or group it moved to);
- keeps DAGSTER_HOME and the workspace's state dir, so the next `make dev` continues.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSION_ENV = "DBX_DEMO_DEV_SESSION"  # inherited by every process `dev` starts
PID_FILE = "dbx_demo_dev.json"  # in DAGSTER_HOME: who to signal for `stop`
GRACE_S = 5.0  # dagster dev's own shutdown waits up to 60 s per service; a demo does not
START_TIMEOUT_S = 300


def _paths() -> tuple[Path, Path]:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home").resolve()
    state_dir = Path(os.environ.get("DBX_LOCAL_STATE_DIR") or REPO_ROOT / ".local_workspace").resolve()
    return home, state_dir


def _embedded() -> bool:
    return not (os.environ.get("DATABRICKS_HOST") or os.environ.get("DATABRICKS_CONFIG_PROFILE"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def session_processes(session: str) -> list[int]:
    """Live processes whose environment carries `SESSION_ENV=session` (Linux /proc)."""
    needle = f"{SESSION_ENV}={session}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and _alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


def _write_dagster_yaml(home: Path, pool_limit: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # the same file `make dagster-home` writes
        config.write_text(f"telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: {pool_limit}\n")


def _wait_for_webserver(url: str, proc: subprocess.Popen, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and not stopping.is_set() and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return True
        except OSError:
            stopping.wait(1)
    return False


def _python_hint() -> str:
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _banner(url: str, workspace_host: str | None, landed: list[dt.date], home: Path, state_dir: Path) -> str:
    from dbx_assets.demo.data import demo_days

    next_day = min(demo_days(count=3)) - dt.timedelta(days=1)
    lines = [
        "",
        "=" * 100,
        f"  Dagster UI:        {url}   (asset graph: {url}/asset-groups, runs: {url}/runs)",
    ]
    if workspace_host:
        from dbx_assets.local_workspace.launcher import login_url

        lines.append(f"  Local workspace:   {workspace_host}/   (Databricks jobs, runs and task states; every asset's")
        lines.append("                     databricks_run_url metadata links to its run there)")
        lines.append(f"  Log in there once: {login_url(state_dir) or '(workspace not running)'}")
        lines.append(
            f"                     (one-time link, valid 5 min; a new one: {_python_hint()} -m dbx_assets.local_workspace"
        )
        lines.append(f"                     login-url --state-dir {state_dir})")
    if landed:
        lines.append(
            f"  Just landed {landed[0]} .. {landed[-1]}: the orders_landing sensor builds every asset for them"
        )
        lines.append("                     in one run within a minute (watch the Runs page).")
    lines += [
        f"  Land another day:  {_python_hint()} -m dbx_assets.demo drop --date {next_day}",
        "                     (the sensor runs it within one 30 s tick)",
        "  Stop:              Ctrl-C here, or `make stop` in another shell; stops Dagster, the local workspace",
        f"                     and its Spark clusters. Kept for next time: {home} (runs, materializations)",
        f"                     and {state_dir} (tables, files).",
        "=" * 100,
        "",
    ]
    return "\n".join(lines)


def _stop_group(proc: subprocess.Popen, hurry: threading.Event) -> None:
    """SIGINT to dagster dev's group, SIGKILL to it after GRACE_S (or at a second Ctrl-C)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    while proc.poll() is None and time.monotonic() < deadline and not hurry.is_set():
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):  # also whatever the leader left behind in its group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _cleanup(session: str, state_dir: Path | None) -> None:
    if state_dir is not None and _embedded():
        from dbx_assets.local_workspace.launcher import stop

        try:
            stop(state_dir, timeout=10)  # the server terminates its clusters on SIGTERM
        except Exception as err:  # still sweep below
            print(f"stopping the local workspace: {err}", file=sys.stderr)
    leftover = session_processes(session)
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftover:
        print(f"killed {len(leftover)} leftover process(es): {leftover}", file=sys.stderr)


def run_dev(*, host: str = "127.0.0.1", port: int = 3000, pool_limit: int = 1) -> int:
    home, state_dir = _paths()
    pid_file = home / PID_FILE
    running = _read_pid_file(pid_file)
    if running and _alive(running["pid"]):
        print(f"make dev is already running (pid {running['pid']}, {running.get('url')}); `make stop` stops it.")
        return 1
    if running:  # a previous launcher was killed before it could clean up
        _clean_up_after(running)

    stopping, hurry = threading.Event(), threading.Event()

    def on_signal(signum, _frame):
        if stopping.is_set():
            hurry.set()  # a second Ctrl-C: no more grace
        stopping.set()

    # Handlers (not SIG_IGN) also mean the children start with the default dispositions.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    session = uuid.uuid4().hex
    venv_bin = str(Path(sys.executable).parent)
    os.environ.update(
        {
            SESSION_ENV: session,
            "DAGSTER_HOME": str(home),
            "DBX_LOCAL_STATE_DIR": str(state_dir),
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),  # dagster-dbt runs this env's `dbt`
        }
    )
    _write_dagster_yaml(home, pool_limit)
    url = f"http://{host}:{port}"
    proc: subprocess.Popen | None = None
    pid_info = {"pid": os.getpid(), "pgid": None, "session": session, "url": url, "state_dir": str(state_dir)}
    _write_pid_file(pid_file, pid_info)
    try:
        workspace_host = None
        if _embedded():
            from dbx_assets.local_workspace.launcher import ensure_running

            print(f"Starting the local workspace (state in {state_dir}) ...", flush=True)
            workspace_host = ensure_running(state_dir, timeout=120).host
        from dbx_assets.demo.seeding import seed

        landed = seed(3)
        if stopping.is_set():
            return 0
        proc = subprocess.Popen(
            [
                os.path.join(venv_bin, "dagster"),
                "dev",
                "-w",
                str(REPO_ROOT / "workspace.yaml"),
                "-h",
                host,
                "-p",
                str(port),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,  # a background group must not read the terminal
            start_new_session=True,  # one group to signal: webserver, daemon, code server, run workers
        )
        _write_pid_file(pid_file, {**pid_info, "pgid": proc.pid})
        if _wait_for_webserver(url, proc, stopping):
            print(_banner(url, workspace_host, landed, home, state_dir), flush=True)
        while not stopping.is_set() and proc.poll() is None:
            stopping.wait(0.5)
        if proc.poll() is not None and not stopping.is_set():
            print(f"dagster dev exited with code {proc.returncode}; stopping the rest.", file=sys.stderr)
            return proc.returncode or 1
        return 0
    finally:
        print("\nStopping Dagster, the local workspace and its clusters ...", flush=True)
        started = time.monotonic()
        if proc is not None:
            _stop_group(proc, hurry)
        _cleanup(session, state_dir)
        pid_file.unlink(missing_ok=True)
        print(
            f"Stopped in {time.monotonic() - started:.1f} s. `make dev` continues from {home} and {state_dir}.",
            flush=True,
        )


def stop_dev(timeout: float = 60) -> int:
    """SIGTERM the running `dev` and wait for it; clean up after it if it died without doing so."""
    home, state_dir = _paths()
    pid_file = home / PID_FILE
    info = _read_pid_file(pid_file)
    if info and _alive(info["pid"]):
        os.kill(info["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(info["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(info["pid"]):
            print(f"Stopped make dev (pid {info['pid']}).")
            return 0
        print(f"make dev (pid {info['pid']}) did not stop within {timeout:.0f} s; killing what it started.")
        os.kill(info["pid"], signal.SIGKILL)
    elif not info:
        from dbx_assets.local_workspace.launcher import stop

        stopped = _embedded() and stop(state_dir, timeout=10)
        print("No make dev running" + ("; stopped its local workspace." if stopped else "."))
        return 0
    _clean_up_after(info)
    pid_file.unlink(missing_ok=True)
    print("Stopped what the previous make dev left running.")
    return 0


def _clean_up_after(info: dict) -> None:
    """The launcher is gone (killed) but what it started may not be."""
    if info.get("pgid"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info["pgid"], signal.SIGKILL)
    _cleanup(info["session"], Path(info["state_dir"]))


def _read_pid_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_pid_file(path: Path, info: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)
