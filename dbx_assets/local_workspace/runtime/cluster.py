"""Server-side handle on a local cluster: a driver process holding the JVM, and one Python
process per task that attaches to it. Imports no Spark, so the server stays light."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .contract import ClusterSpec, ClusterStartError, StoragePaths, TaskInvocation, TaskOutcome
from .delta_jars import DeltaJarsUnavailable
from .delta_log_store import LOG_STORE_CLASS, driver_jars
from .java import JavaNotFound, java_env
from .jvm_options import driver_java_options
from .wire import invocation_to_dict, outcome_from_json

# Driver and task processes run as modules of this package, with -P so their cwd (a task's
# output dir) never shadows an import. The parent packages' __init__ files are empty, so a
# task imports only the runtime, never the Dagster side of dbx_assets.
_DRIVER_MODULE = f"{__package__}.driver"
_TASK_MODULE = f"{__package__}.task_process"
_ROOT_PACKAGE = __package__.split(".")[0]
_import_path_lock = threading.Lock()
_import_path: dict[tuple[str, str], str | None] = {}
LOG_TAIL_BYTES = 1024 * 1024
_KILL_WAIT_SECONDS = 5.0

# Defaults that make a laptop JVM behave like a small cluster; spec.spark_conf overrides them.
BASE_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.sql.catalogImplementation": "in-memory",
    # Tables are shared through the warehouse dir, so re-creating one over existing files must work.
    "spark.sql.legacy.allowNonEmptyLocationInCTAS": "true",
    # Databricks' default (dbt's insert_overwrite asks for dynamic itself); Delta's replaceWhere
    # refuses to run under dynamic.
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.driver.memory": "2g",
    # Delta Lake, as on Databricks: every table is Delta unless it says otherwise. CREATE TABLE
    # without USING is Delta too (not a Hive-serde table the in-memory catalog cannot create).
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.sources.default": "delta",
    "spark.sql.legacy.createHiveTableByDefault": "false",
    # Small tables: reading a snapshot's log in 50 partitions (Delta's default) costs seconds locally.
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    # VACUUM below the retention period fails as on Databricks.
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
    # Commits that hold across the JVMs of several clusters (delta_log_store.py).
    "spark.delta.logStore.file.impl": LOG_STORE_CLASS,
}


def driver_class_path(jars: list[Path], spec_conf: dict[str, str]) -> str:
    """`spark.driver.extraClassPath`: Delta's jars, then whatever the cluster spec adds."""
    entries = [str(j) for j in jars]
    extra = spec_conf.get("spark.driver.extraClassPath", "")
    return os.pathsep.join([*entries, extra] if extra else entries)


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> tuple[str, bool]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace"), size > limit
    except FileNotFoundError:
        return "", False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _start_failure_reason(log: str) -> str:
    """The most telling line of a failed driver's log: the JVM's own complaint (printed
    before pyspark's traceback) if there is one, else the exception's last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    before_traceback = lines[: next((i for i, line in enumerate(lines) if line.startswith("Traceback")), len(lines))]
    jvm_lines = [line for line in before_traceback if not re.match(r"^\d\d/\d\d/\d\d \S+ (WARN|INFO)", line)]
    reason = jvm_lines[0] if jvm_lines else (lines[-1] if lines else "no output")
    return reason[:300]


def _module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-P", "-m", module, *args]


def _with_import_path(env: dict[str, str]) -> dict[str, str]:
    """`env`, plus PYTHONPATH naming the directory above dbx_assets when a fresh interpreter
    could not import it otherwise (e.g. the server runs from a checkout that is not installed).
    Probed once per environment; an installed (or editable) package needs nothing."""
    key = (sys.executable, env.get("PYTHONPATH", ""))
    with _import_path_lock:
        if key not in _import_path:
            probe = subprocess.run(
                [sys.executable, "-P", "-c", f"import {_ROOT_PACKAGE}"],
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            checkout = str(Path(__file__).resolve().parents[3])
            _import_path[key] = None if probe.returncode == 0 else checkout
        root = _import_path[key]
    if root is None:
        return env
    current = env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": root + (os.pathsep + current if current else "")}


def _write_private(path: Path, text: str) -> None:
    # The invocation can carry tokens (DBT_ACCESS_TOKEN): owner-only, like the gateway file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


class RunningTask:
    """One task process. poll()/wait() turn its exit into a TaskOutcome."""

    def __init__(self, process: subprocess.Popen, invocation: TaskInvocation, cluster: LocalCluster):
        self._process = process
        self._invocation = invocation
        self._cluster = cluster
        self._lock = threading.Lock()
        self._outcome: TaskOutcome | None = None
        self._stop_reason: str | None = None  # "canceled" | "cluster_terminated"
        self.pid: int = process.pid

    @property
    def task_run_id(self) -> int:
        return self._invocation.task_run_id

    def poll(self) -> TaskOutcome | None:
        code = self._process.poll()
        return None if code is None else self._finish(code)

    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._finish(code)

    def cancel(self) -> None:
        """Stop the task now: its Spark jobs are cancelled and its process group killed."""
        self._stop("canceled")

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self._process.poll() is not None or self._outcome is not None:
                return
            self._stop_reason = reason
        self._cluster._request_job_group_cancel(self.task_run_id)
        _kill_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # pragma: no cover - SIGKILL does not get ignored
            self._process.wait(_KILL_WAIT_SECONDS)

    def _finish(self, code: int) -> TaskOutcome:
        with self._lock:
            if self._outcome is None:
                self._outcome = self._read_outcome(code)
            return self._outcome

    def _read_outcome(self, code: int) -> TaskOutcome:
        out = self._invocation.output_dir
        logs, truncated = _tail(out / "logs.txt")
        if self._stop_reason == "canceled":
            outcome = TaskOutcome("CANCELED", state_message="The task was canceled.")
        elif self._stop_reason == "cluster_terminated":
            outcome = TaskOutcome(
                "FAILED",
                state_message=f"The cluster {self._cluster.cluster_id} was terminated while the task was running.",
            )
        else:
            try:
                outcome = outcome_from_json((out / "outcome.json").read_text())
            except (FileNotFoundError, ValueError):
                outcome = TaskOutcome("FAILED", state_message=f"The task process exited unexpectedly with code {code}.")
                outcome.error = outcome.state_message
        outcome.logs, outcome.logs_truncated = logs, truncated
        return outcome


class LocalCluster:
    """A local Spark "cluster": one driver process (own process group) holding the JVM."""

    def __init__(self, cluster_id: str, spec: ClusterSpec, paths: StoragePaths):
        self.cluster_id = cluster_id
        self.spec = spec
        self.paths = paths
        self.dir = paths.clusters / cluster_id
        self._driver: subprocess.Popen | None = None
        self._gateway: dict | None = None
        self._tasks: list[RunningTask] = []
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 300) -> None:
        """Start the driver and wait until its JVM accepts attachments; raises ClusterStartError."""
        if self.alive:
            return
        self.paths.ensure()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "gateway.json").unlink(missing_ok=True)
        try:
            env = self._driver_env()
            jars = driver_jars(env)
        except (JavaNotFound, DeltaJarsUnavailable) as exc:
            raise ClusterStartError(str(exc)) from None
        class_path = driver_class_path(jars, self.spec.spark_conf)
        spark_conf = {
            **BASE_SPARK_CONF,
            "spark.driver.defaultJavaOptions": driver_java_options(env, class_path),
            "spark.sql.warehouse.dir": str(self.paths.warehouse),
            **self.spec.spark_conf,
            "spark.driver.extraClassPath": class_path,
        }
        config = {"master": "local[2]", "app_name": f"dbx-local-{self.cluster_id}", "spark_conf": spark_conf}
        (self.dir / "driver_config.json").write_text(json.dumps(config))
        with open(self.dir / "driver.log", "ab") as log:
            log_start = log.tell()  # a restart appends; judge a failure by this start's lines only
            started = time.monotonic()
            self._driver = subprocess.Popen(
                _module_argv(_DRIVER_MODULE, str(self.dir), str(self.dir / "driver_config.json")),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # terminate() kills the driver and its JVM as one group
            )
        gateway_file = self.dir / "gateway.json"
        while not gateway_file.exists():
            if self._driver.poll() is not None:
                with open(self.dir / "driver.log", "rb") as fh:
                    fh.seek(log_start)
                    tail = fh.read()[-16000:].decode("utf-8", "replace")
                raise ClusterStartError(
                    f"Cluster {self.cluster_id} failed to start: the Spark driver exited with code "
                    f"{self._driver.returncode} ({_start_failure_reason(tail)}); see {self.dir / 'driver.log'}"
                )
            if time.monotonic() - started > timeout:
                self.terminate()
                raise ClusterStartError(
                    f"Cluster {self.cluster_id} did not start within {timeout:.0f} s; see {self.dir / 'driver.log'}"
                )
            time.sleep(0.05)
        self._gateway = json.loads(gateway_file.read_text())
        self.start_seconds = time.monotonic() - started

    @property
    def alive(self) -> bool:
        return self._driver is not None and self._driver.poll() is None and self._gateway is not None

    @property
    def java_home(self) -> str | None:
        """The java.home of the running JVM (which Java the cluster actually uses)."""
        return None if self._gateway is None else self._gateway["java_home"]

    @property
    def driver_pid(self) -> int | None:
        return None if self._driver is None else self._driver.pid

    def terminate(self) -> None:
        """Kill every task process and the driver (with its JVM). Idempotent."""
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            task._stop("cluster_terminated")
        driver = self._driver
        if driver is not None and driver.poll() is None:
            _kill_group(driver.pid, signal.SIGTERM)
            try:
                driver.wait(_KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(driver.pid, signal.SIGKILL)
                driver.wait(_KILL_WAIT_SECONDS)
        if driver is not None:
            # The JVM shares the driver's process group; make sure nothing of it survives.
            _kill_group(driver.pid, signal.SIGKILL)
            _wait_group_gone(driver.pid, _KILL_WAIT_SECONDS)
        self._gateway = None

    # ----------------------------------------------------------------------- tasks
    def run_task(self, invocation: TaskInvocation) -> RunningTask:
        """Start a task process attached to this cluster's JVM; returns immediately."""
        if not self.alive:
            raise RuntimeError(f"Cluster {self.cluster_id} is not running; start it before running tasks.")
        out = invocation.output_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "outcome.json").unlink(missing_ok=True)
        payload = {
            "invocation": invocation_to_dict(invocation),
            "cluster": {
                "cluster_id": self.cluster_id,
                "gateway_file": str(self.dir / "gateway.json"),
                "pypi_packages": list(self.spec.pypi_packages),
                "state_dir": str(self.paths.state_dir),
            },
        }
        request = out / "invocation.json"
        request.unlink(missing_ok=True)  # a repair reuses the dir; recreate with owner-only mode
        _write_private(request, json.dumps(payload))
        env = {**os.environ, **self.spec.spark_env_vars, **invocation.env, "PYTHONUNBUFFERED": "1"}
        env["PYSPARK_PYTHON"] = sys.executable
        env = _with_import_path(env)
        with open(out / "logs.txt", "ab") as log:
            process = subprocess.Popen(
                _module_argv(_TASK_MODULE, str(request)),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=out,
                start_new_session=True,  # cancel() kills the task and anything it spawned
            )
        task = RunningTask(process, invocation, self)
        with self._lock:
            self._tasks = [t for t in self._tasks if t._process.poll() is None] + [task]
        return task

    # ----------------------------------------------------------------------- internals
    def _request_job_group_cancel(self, task_run_id: int) -> None:
        cancel_dir = self.dir / "cancel"
        if self.alive and cancel_dir.is_dir():
            (cancel_dir / str(task_run_id)).touch()

    def _driver_env(self) -> dict[str, str]:
        env = {**os.environ, **self.spec.spark_env_vars}
        env.update(java_env(env))
        if env.get("JAVA_HOME") == "":
            del env["JAVA_HOME"]
        env.pop("PYSPARK_GATEWAY_PORT", None)
        env.pop("PYSPARK_GATEWAY_SECRET", None)
        env["PYSPARK_PYTHON"] = sys.executable
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env["PYTHONUNBUFFERED"] = "1"
        return _with_import_path(env)

    def __repr__(self) -> str:
        return f"LocalCluster({self.cluster_id!r}, alive={self.alive})"
