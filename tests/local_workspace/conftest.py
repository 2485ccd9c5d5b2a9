"""An in-process workspace (real HTTP, real SDK) whose clusters are a tiny fake runtime:
tasks are plain Python subprocesses, so scheduler semantics (run_if, repair, cancel,
timeouts, queueing) are tested in seconds. End-to-end tests use the real LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime_types import ClusterSpec, ClusterStartError, StoragePaths, TaskInvocation, TaskOutcome

# Runs a notebook's Python source with a minimal dbutils (widgets + notebook.exit).
_SHIM = r"""
import json, os, sys
class _Exit(BaseException): pass
class _W:
    def get(self, name): return json.loads(os.environ["FAKE_WIDGETS"])[name]
    def text(self, name, default, label=None): pass
class _N:
    def exit(self, value):
        open(os.environ["FAKE_RESULT"], "w").write(str(value)); raise _Exit()
class _D: widgets = _W(); notebook = _N()
dbutils = _D()
open(os.environ["FAKE_PID"], "w").write(str(os.getpid()))
try:
    exec(compile(sys.stdin.read(), "notebook", "exec"), {"dbutils": dbutils, "__name__": "__main__"})
except _Exit:
    pass
"""


class FakeRunningTask:
    def __init__(self, proc: subprocess.Popen, out: Path):
        self.proc, self.out, self.pid = proc, out, proc.pid
        self._canceled = False
        self._outcome: TaskOutcome | None = None

    def poll(self):
        return None if self.proc.poll() is None else self._finish()

    def wait(self, timeout=None):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._finish()

    def cancel(self):
        self._canceled = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _finish(self) -> TaskOutcome:
        if self._outcome is None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            result = self.out / "result"
            if self._canceled:
                self._outcome = TaskOutcome("CANCELED", "Run cancelled.")
            elif self.proc.returncode == 0:
                self._outcome = TaskOutcome("SUCCESS", notebook_result=result.read_text() if result.exists() else None, logs=err)
            else:
                last = err.strip().splitlines()[-1] if err.strip() else f"exit code {self.proc.returncode}"
                self._outcome = TaskOutcome("FAILED", error=last, error_trace=err, logs=err)
        return self._outcome


class FakeCluster:
    started: list[str] = []

    def __init__(self, cluster_id: str, spec: ClusterSpec, paths: StoragePaths):
        self.cluster_id, self.spec, self.paths, self._alive = cluster_id, spec, paths, False

    def start(self, timeout: float = 300) -> None:
        if self.spec.spark_conf.get("fake.fail_start"):
            raise ClusterStartError("Spark driver failed to start: fake.fail_start is set")
        time.sleep(0.2)
        FakeCluster.started.append(self.cluster_id)
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    def run_task(self, inv: TaskInvocation) -> FakeRunningTask:
        inv.output_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FAKE_WIDGETS=json.dumps(inv.widgets), FAKE_RESULT=str(inv.output_dir / "result"),
                   FAKE_PID=str(inv.output_dir / "pid"), FAKE_CLUSTER=self.cluster_id, **inv.env)
        proc = subprocess.Popen([sys.executable, "-c", _SHIM], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        proc.stdin.write((inv.notebook_source or "").encode())
        proc.stdin.close()
        return FakeRunningTask(proc, inv.output_dir)

    def terminate(self) -> None:
        self._alive = False


@pytest.fixture(scope="session")
def fake_workspace(tmp_path_factory):
    ws = LocalWorkspace(tmp_path_factory.mktemp("fake_ws"), cluster_factory=FakeCluster).start()
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def fake_client(fake_workspace):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=fake_workspace.host, token=fake_workspace.token)
