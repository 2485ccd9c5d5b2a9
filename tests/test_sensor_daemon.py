"""The file sensor in a real `dagster-daemon`: a fresh DAGSTER_HOME (sqlite), the tiny code
location tests/sensor_daemon_location.py, and a local workspace of its own. Runs are counted
through the DagsterInstance on that home; they stay queued (max_concurrent_runs: 0), so no run
worker is started: what is under test is which runs the sensor requests, not their execution.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from sensor_daemon_location import SENSOR_NAME, STATE_DIR_ENV, WATCH_PATH_ENV

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.local_workspace.runtime.contract import StoragePaths

REPO = Path(__file__).resolve().parents[1]
LOCATION = Path(__file__).resolve().with_name("sensor_daemon_location.py")
DAGSTER_DAEMON = Path(sys.executable).with_name("dagster-daemon")
WATCH = "dbfs:/landing/late_arrivals"
ARCHIVE_MTIME_S = 978_307_200  # 2001-01-01: older than anything handled before it lands
FINISHED = {"SKIPPED", "SUCCESS", "FAILURE"}  # tick statuses; a STARTED tick may still request runs
TIMEOUT_S = 90.0  # per step; generous on a loaded machine, the daemon ticks about every 5 s


# Runs stay queued; only the daemons this test needs (sensor, plus the always-on few) start.
INSTANCE_YAML = """\
run_queue:
  max_concurrent_runs: 0
run_monitoring:
  enabled: false
auto_materialize:
  enabled: false
  use_sensors: false
freshness:
  enabled: false
telemetry:
  enabled: false
"""


class Daemon:
    """`dagster-daemon run -f <location>` in a process group of its own (with the code server it
    spawns), so stopping it kills everything it started."""

    def __init__(self, home: Path, state_dir: Path, log: Path):
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            WATCH_PATH_ENV: WATCH,
            STATE_DIR_ENV: str(state_dir),
            "PYTHONPATH": str(REPO),
        }
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(DAGSTER_DAEMON), "run", "-f", str(LOCATION), "--working-directory", str(REPO)],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the daemon's pid
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)  # a clean shutdown first
        _signal_group(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)  # orphaned members are reaped by init
        self.proc = None
        assert not _group_alive(pgid), f"processes of the daemon's group {pgid} are still running"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _land(staging: Path, target: Path, data: bytes, mtime_s: float | None = None) -> None:
    """Write, set the mtime, then rename into place: a tick sees the old or the new version,
    never a half-made one (a rename keeps the mtime, like `cp -p` to a temp name and `mv`)."""
    staging.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging / target.name
    tmp.write_bytes(data)
    if mtime_s is not None:
        os.utime(tmp, (mtime_s, mtime_s))
    os.replace(tmp, target)


def _run_keys(instance: dg.DagsterInstance) -> list[str]:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR_NAME}))
    return sorted(r.tags["dagster/run_key"] for r in runs)


def _ticks(instance: dg.DagsterInstance) -> list:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR_NAME]
    return [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]


def _finished_since(instance: dg.DagsterInstance, since: float) -> int:
    return sum(t.timestamp > since and t.status.value in FINISHED for t in _ticks(instance))


def _wait(what: str, condition: Callable[[], bool], daemon: Daemon) -> None:
    print(time.strftime("%X"), "waiting for", what, flush=True)  # a timeline if the test fails
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{daemon.tail()}")


def test_daemon_triggers_once_per_file_version_across_a_restart(tmp_path):
    state_dir = tmp_path / "workspace"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    conn = ensure_running(state_dir, timeout=60)
    dbfs = StoragePaths(conn.state_dir).dbfs
    watch_dir, staging = dbfs / WATCH[len("dbfs:/") :], dbfs / "staging"
    daemon = Daemon(home, conn.state_dir, tmp_path / "daemon.log")
    try:
        _land(staging, watch_dir / "today.csv", b"id\n1\n")  # current mtime, handled first
        today_mtime_ms = int((watch_dir / "today.csv").stat().st_mtime * 1000)
        today = f"{WATCH}/today.csv@{today_mtime_ms}:5"
        archive = f"{WATCH}/2001/archive.csv"
        daemon.start()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            _wait("the first run", lambda: len(_run_keys(instance)) >= 1, daemon)
            assert _run_keys(instance) == [today]

            # (a) copied in late with its original, much older mtime: one run.
            _land(staging, watch_dir / "2001/archive.csv", b"old\n", ARCHIVE_MTIME_S)
            first = f"{archive}@{ARCHIVE_MTIME_S * 1000}:4"
            _wait("the late file's run", lambda: len(_run_keys(instance)) >= 2, daemon)
            assert _run_keys(instance) == sorted([today, first])

            # (b) rewritten (new size, same old mtime): a new version, one more run.
            _land(staging, watch_dir / "2001/archive.csv", b"old, corrected\n", ARCHIVE_MTIME_S)
            second = f"{archive}@{ARCHIVE_MTIME_S * 1000}:15"
            expected = sorted([today, first, second])
            _wait("the rewritten file's run", lambda: len(_run_keys(instance)) >= 3, daemon)
            assert _run_keys(instance) == expected

            # (c) restart: stop the whole process group, start again, let it tick.
            daemon.stop()
            ticks_before = len(_ticks(instance))
            restarted_at = time.time()
            daemon.start()
            # Two finished ticks: with settle_ticks=1 a lost or mangled cursor re-triggers on the first,
            # and a cursor mangled by that tick's re-encoding on the second.
            _wait("two ticks after the restart", lambda: _finished_since(instance, restarted_at) >= 2, daemon)
            ticks = _ticks(instance)
            timeline = [(round(t.timestamp - restarted_at, 1), t.status.value, t.skip_reason) for t in ticks]
            assert len(ticks) >= ticks_before + 2, timeline
            assert "FAILURE" not in {status for _, status, _ in timeline}, daemon.tail()
            assert _run_keys(instance) == expected  # the unchanged files did not trigger again
            # Dagster drops a request whose run key already ran, which would hide a re-trigger from the
            # run count; the ticks record every requested key, so each must appear exactly once.
            assert sorted(key for t in ticks for key in t.run_keys) == expected, timeline
            after = [reason for at, status, reason in timeline if at > 0 and status in FINISHED]
            assert after and all("No new or changed files" in (reason or "") for reason in after), timeline
    finally:
        daemon.stop()
        stop(conn.state_dir)
