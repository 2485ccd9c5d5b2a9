"""Cluster log delivery: a cluster with `cluster_log_conf` gets its driver logs copied to the
destination in Databricks' layout, `<destination>/<cluster_id>/driver/{stdout,stderr,log4j-active.log}`,
periodically while it runs and completely when it terminates (Databricks delivers every five
minutes and guarantees everything up to termination; locally every DELIVERY_SECONDS).

What lands where, locally:
- `stdout`: what the cluster's tasks printed (notebook cells, Python files, dbt), as on Databricks
  where notebook output is the driver's stdout. The local runtime captures one stream per task
  (already redacted of secrets), so a task's stderr is interleaved there too.
- `log4j-active.log`: Spark's log4j lines from the driver process (locally they go to its console).
- `stderr`: everything else the driver process wrote (JVM and Python errors).

Only whole lines are delivered while the cluster runs, so lines of tasks running side by side
never interleave mid-line; the final delivery at termination copies the rest.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.contract import StoragePaths, TaskInvocation
from .errors import invalid

DELIVERY_SECONDS = 2.0
DRIVER_FILES = ("stdout", "stderr", "log4j-active.log")
# The runtime's per-task output (LocalCluster and tests' FakeCluster write it; the run page reads it)
TASK_LOG_NAME = "logs.txt"
# LocalCluster's driver process output (stdout and stderr of the process holding the JVM)
DRIVER_PROCESS_LOG = "driver.log"
_LOG4J_LINE = re.compile(rb"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
_CONTINUATION = re.compile(rb"^(\s|Caused by:|\.\.\. \d+ more)")

log = logging.getLogger("dbx_local_workspace")


def check_log_conf(conf: Any, where: str = "") -> tuple[str, str] | None:
    """("dbfs" | "volumes", the path below that storage) of a `cluster_log_conf`; None for none.
    Raises INVALID_PARAMETER_VALUE for a malformed one, as clusters/create and jobs/create do.

    An s3 destination is accepted (the same spec must work on every workspace) but not
    delivered: the local workspace has no S3."""
    prefix = f"{where}: " if where else ""
    if not conf:
        return None
    if not isinstance(conf, dict):
        raise invalid(f"{prefix}cluster_log_conf must be an object with one of dbfs, volumes or s3")
    if conf.get("dbfs"):
        dest = str((conf["dbfs"] or {}).get("destination") or "")
        if not dest.startswith("dbfs:/"):
            raise invalid(f"{prefix}cluster_log_conf.dbfs.destination must start with dbfs:/, got {dest!r}")
        return "dbfs", dest[len("dbfs:") :]
    if conf.get("volumes"):
        dest = str((conf["volumes"] or {}).get("destination") or "")
        parts = [p for p in dest.split("/") if p]
        if not dest.startswith("/Volumes/") or len(parts) < 4:
            raise invalid(
                f"{prefix}cluster_log_conf.volumes.destination must look like "
                f"/Volumes/<catalog>/<schema>/<volume>/..., got {dest!r}"
            )
        return "volumes", "/".join(parts[1:])
    if conf.get("s3"):
        return None
    raise invalid(f"{prefix}cluster_log_conf needs one of dbfs, volumes or s3 with a destination")


def log_destination(conf: Any, paths: StoragePaths) -> Path | None:
    """The local directory behind a `cluster_log_conf`, None when nothing is delivered."""
    checked = check_log_conf(conf)
    if checked is None:
        return None
    kind, rel = checked
    return _inside(paths.dbfs if kind == "dbfs" else paths.volumes, rel)


def _inside(root: Path, rel: str) -> Path:
    target = (root / rel.strip("/")).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise invalid(f"cluster_log_conf destination escapes its storage: {rel!r}")
    return target


@dataclass
class _Source:
    """A local file copied incrementally: `offset` bytes of it are delivered."""

    path: Path
    offset: int = 0

    def new_bytes(self, whole_lines: bool) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return b""
        if whole_lines:
            data = data[: data.rfind(b"\n") + 1]
        self.offset += len(data)
        return data


@dataclass
class _ClusterLogs:
    cluster_id: str
    driver_dir: Path  # <destination>/<cluster_id>/driver
    driver_process: _Source
    tasks: list[_Source] = field(default_factory=list)
    last_driver_target: str = "stderr"  # where a continuation line (a stack trace) follows
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def deliver(self, final: bool = False) -> None:
        with self.lock:
            self.driver_dir.mkdir(parents=True, exist_ok=True)
            out = {name: bytearray() for name in DRIVER_FILES}
            for task in self.tasks:
                out["stdout"] += task.new_bytes(whole_lines=not final)
            for line in self.driver_process.new_bytes(whole_lines=not final).splitlines(keepends=True):
                if _LOG4J_LINE.match(line):
                    self.last_driver_target = "log4j-active.log"
                elif not _CONTINUATION.match(line):
                    self.last_driver_target = "stderr"
                out[self.last_driver_target] += line
            for name, data in out.items():
                with open(self.driver_dir / name, "ab") as fh:  # created even when empty, as Databricks does
                    fh.write(data)


class _LoggedRuntime:
    """A cluster runtime whose tasks' output is registered for delivery; everything else passes through."""

    def __init__(self, runtime: Any, logs: _ClusterLogs):
        self._runtime = runtime
        self._logs = logs

    def run_task(self, invocation: TaskInvocation) -> Any:
        source = _Source(invocation.output_dir / TASK_LOG_NAME)
        with contextlib.suppress(FileNotFoundError):  # a repair reuses the output dir: only this run's output
            source.offset = source.path.stat().st_size
        with self._logs.lock:
            self._logs.tasks.append(source)
        return self._runtime.run_task(invocation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


class ClusterLogDelivery:
    """Delivers the driver logs of every cluster that asks for it."""

    def __init__(self, paths: StoragePaths, interval_seconds: float = DELIVERY_SECONDS):
        self.paths = paths
        self.interval_seconds = interval_seconds
        self._clusters: dict[str, _ClusterLogs] = {}
        self._lock = threading.Lock()

    def attach(self, cluster_id: str, conf: Any, runtime: Any) -> Any:
        """Start delivering `cluster_id`'s logs (if `conf` asks for it); the runtime to run tasks on."""
        destination = log_destination(conf, self.paths)
        if destination is None:
            return runtime
        with self._lock:  # a restarted cluster keeps its id and appends to the same files
            logs = self._clusters.get(cluster_id)
            if logs is None:
                logs = _ClusterLogs(
                    cluster_id,
                    destination / cluster_id / "driver",
                    _Source(self.paths.clusters / cluster_id / DRIVER_PROCESS_LOG),
                )
                self._clusters[cluster_id] = logs
            if logs.thread is None or not logs.thread.is_alive():
                logs.stop.clear()
                logs.thread = threading.Thread(
                    target=self._deliver_periodically, args=(logs,), name=f"cluster-logs-{cluster_id}", daemon=True
                )
                logs.thread.start()
        return _LoggedRuntime(runtime, logs)

    def finish(self, cluster_id: str) -> None:
        """The cluster terminated (or failed to start): deliver everything, stop the periodic delivery."""
        with self._lock:
            logs = self._clusters.get(cluster_id)
        if logs is None:
            return
        logs.stop.set()
        if logs.thread is not None and logs.thread is not threading.current_thread():
            logs.thread.join(timeout=10)
        self._deliver(logs, final=True)

    def _deliver_periodically(self, logs: _ClusterLogs) -> None:
        while not logs.stop.wait(self.interval_seconds):
            self._deliver(logs)

    @staticmethod
    def _deliver(logs: _ClusterLogs, final: bool = False) -> None:
        try:
            logs.deliver(final=final)
        except OSError:  # a destination that cannot be written must not take the cluster down
            log.exception("cluster %s: delivering driver logs to %s failed", logs.cluster_id, logs.driver_dir)
