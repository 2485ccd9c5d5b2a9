"""A cluster runtime without a JVM, for tests: a task is a plain Python subprocess running the
notebook's source with the local runtime's own dbutils (widgets, notebook.exit, fs) and its
`/dbfs` + `/Volumes` path mapping onto the workspace's storage. Notebooks that need `spark`
need the real LocalCluster; everything else (scheduling, repair, cancel, reattach, faults,
the whole Dagster layer) runs against `LocalWorkspace(state_dir, cluster_factory=FakeCluster)`
over real HTTP and the real SDK, in seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from dbx_assets.integration.deployment import default_deployment, job_name
from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime.contract import (
    ClusterSpec,
    ClusterStartError,
    StoragePaths,
    TaskInvocation,
    TaskOutcome,
)

FAULTS = "/api/2.0/local/faults"


def deployed_job_name(workflow_name: str) -> str:
    """The Databricks job a test's workflow deploys as: its name in the default deployment."""
    return job_name(workflow_name, default_deployment())


# Runs a notebook's Python source (stdin) with the local runtime's dbutils and path patches, so
# `/dbfs/x` in open()/os/pathlib and `dbfs:/x` in dbutils.fs land in StoragePaths(state_dir).dbfs.
_SHIM = r"""
import json, os, sys
from pathlib import Path
from dbx_assets.local_workspace.runtime.dbutils import DBUtils, NotebookExit
from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper, install_local_file_patches
pid_file = Path(os.environ["FAKE_PID"])  # written whole (renamed into place): a reader never sees it empty
pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
os.replace(pid_file.with_suffix(".tmp"), pid_file)
mapper = PathMapper(Path(os.environ["FAKE_DBFS"]), Path(os.environ["FAKE_VOLUMES"]))
dbutils = DBUtils(json.loads(os.environ["FAKE_WIDGETS"]), mapper)
result = os.environ["FAKE_RESULT"]
source = sys.stdin.read()
install_local_file_patches(mapper)
try:
    exec(compile(source, "notebook", "exec"), {"dbutils": dbutils, "__name__": "__main__"})
except NotebookExit as done:
    open(result, "w").write(done.value)
"""


class FakeRunningTask:
    def __init__(self, proc: subprocess.Popen, out: Path):
        self.proc, self.out, self.pid = proc, out, proc.pid
        self._canceled = False
        self._outcome: TaskOutcome | None = None

    def poll(self) -> TaskOutcome | None:
        return None if self.proc.poll() is None else self._finish()

    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._finish()

    def cancel(self) -> None:
        self._canceled = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _finish(self) -> TaskOutcome:
        if self._outcome is None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            result = self.out / "result"
            if self._canceled:
                self._outcome = TaskOutcome("CANCELED", "Run cancelled.")
            elif self.proc.returncode == 0:
                value = result.read_text() if result.exists() else None
                self._outcome = TaskOutcome("SUCCESS", notebook_result=value, logs=err)
            else:
                last = err.strip().splitlines()[-1] if err.strip() else f"exit code {self.proc.returncode}"
                self._outcome = TaskOutcome("FAILED", error=last, error_trace=err, logs=err)
        return self._outcome


class FakeCluster:
    """A ClusterRuntime whose start takes 0.2 s. Spark conf steers it: `fake.fail_start` fails the
    start, `fake.start_seconds` makes it take that long (a window for tests to act in)."""

    started: list[str] = []  # every cluster id started, across workspaces of this process

    def __init__(self, cluster_id: str, spec: ClusterSpec, paths: StoragePaths):
        self.cluster_id, self.spec, self.paths, self._alive = cluster_id, spec, paths, False

    def start(self, timeout: float = 300) -> None:
        if self.spec.spark_conf.get("fake.fail_start"):
            raise ClusterStartError("Spark driver failed to start: fake.fail_start is set")
        time.sleep(float(self.spec.spark_conf.get("fake.start_seconds", "0.2")))
        FakeCluster.started.append(self.cluster_id)
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    def run_task(self, inv: TaskInvocation) -> FakeRunningTask:
        inv.output_dir.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            FAKE_WIDGETS=json.dumps(inv.widgets),
            FAKE_RESULT=str(inv.output_dir / "result"),
            FAKE_PID=str(inv.output_dir / "pid"),
            FAKE_CLUSTER=self.cluster_id,
            FAKE_DBFS=str(self.paths.dbfs),
            FAKE_VOLUMES=str(self.paths.volumes),
            **inv.env,
        )
        # What the notebook prints goes to the task's log file, as LocalCluster's tasks do (the run
        # page and cluster log delivery read it there); stderr stays a pipe for the task's error.
        with open(inv.output_dir / "logs.txt", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SHIM],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.PIPE,
                env={**env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        assert proc.stdin is not None
        proc.stdin.write((inv.notebook_source or "").encode())
        proc.stdin.close()
        return FakeRunningTask(proc, inv.output_dir)

    def terminate(self) -> None:
        self._alive = False


@dataclass
class Faults:
    """Faults switched on by `FakeWorkspace.faults`: what the server answered when they went on (its
    `seed`, ...) and, once the block is over, what it counted while they were on."""

    config: dict
    seen: dict = field(default_factory=dict)  # requests and injected faults, read just before they went off


class FakeWorkspace:
    """An in-process LocalWorkspace on FakeClusters, with what tests ask of it through the SDK.

    Like `serve`, it logs to DIR/server.log (the token-leak test reads it).
    """

    def __init__(self, state_dir: Path):
        self.ws = LocalWorkspace(Path(state_dir), cluster_factory=FakeCluster).start()
        self._log_handler = logging.FileHandler(self.ws.state_dir / "server.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("dbx_local_workspace")
        logger.addHandler(self._log_handler)
        logger.setLevel(logging.INFO)
        # The test's own client retries briefly; resources under test keep the SDK defaults.
        self.client = WorkspaceClient(config=Config(host=self.host, token=self.token, retry_timeout_seconds=60))

    @property
    def host(self) -> str:
        return self.ws.host

    @property
    def token(self) -> str:
        return self.ws.token

    @property
    def state_dir(self) -> Path:
        return self.ws.state_dir

    @property
    def paths(self) -> StoragePaths:
        return self.ws.paths

    def env(self) -> dict[str, str]:
        """What a Dagster process needs to reach this workspace (the SDK's own variables)."""
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}

    def close(self) -> None:
        logging.getLogger("dbx_local_workspace").removeHandler(self._log_handler)
        self._log_handler.close()
        self.ws.close()

    # -- faults ---------------------------------------------------------------------------------
    def _faults(self, method: str, **kwargs: Any) -> dict:
        answer = self.client.api_client.do(method, FAULTS, **kwargs)
        assert isinstance(answer, dict), answer  # a JSON object
        return answer

    def set_faults(self, **config: Any) -> dict:
        # Retry-After 0 unless a test asks: the SDK still sleeps its jitter (up to 1 s) per 429/503,
        # and the retry path is the same; a second per injected fault is only waiting.
        return self._faults("PUT", body={"retry_after_seconds": 0, **config, "reset_counts": True})

    def faults_off(self) -> dict:
        return self._faults("PUT", body={})

    def counts(self) -> dict:
        return self._faults("GET")

    @contextlib.contextmanager
    def faults(self, **config: Any) -> Iterator[Faults]:
        """Faults on for the block (request counts from zero) and off after it, however it ends;
        `.seen` holds what the server counted during the block."""
        on = Faults(config=self.set_faults(**config))
        try:
            yield on
        finally:
            try:
                on.seen = self.counts()
            finally:
                self.faults_off()

    # -- the workspace's own record ----------------------------------------------------------------
    def cluster_ids(self) -> set[str]:
        return {c.cluster_id for c in self.client.clusters.list() if c.cluster_id}

    def job_runs(self, name: str) -> list:
        jobs = list(self.client.jobs.list(name=deployed_job_name(name)))
        assert len(jobs) == 1, f"expected one job of workflow {name}, found {len(jobs)}"
        return list(self.client.jobs.list_runs(job_id=jobs[0].job_id))

    def wait_for_running_task(self, name: str, task: str, timeout: float = 120):
        """(run, task run) once task `<name>__<task>` of job `name` is RUNNING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.client.jobs.list(name=deployed_job_name(name)):
                for run in self.client.jobs.list_runs(job_id=job.job_id):
                    assert run.run_id is not None
                    full = self.client.jobs.get_run(run.run_id)
                    for t in full.tasks or []:
                        life = t.state.life_cycle_state if t.state else None
                        if t.task_key == f"{name}__{task}" and life is not None and life.value == "RUNNING":
                            return full, t
            time.sleep(0.2)
        raise AssertionError(f"task {task} of {name} was not RUNNING within {timeout}s")

    def task_pid(self, task_run_id: int, timeout: float = 30) -> int:
        """The fake task process of a task run (it writes its pid first thing)."""
        pid_file = self.paths.task_runs / str(task_run_id) / "pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                return int(pid_file.read_text())
            time.sleep(0.1)
        raise AssertionError(f"task run {task_run_id} wrote no pid file")


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has already exited
