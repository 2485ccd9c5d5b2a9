"""Tailing the driver logs a job cluster delivers to its `cluster_log_conf` destination.

Databricks delivers a cluster's driver logs to `<destination>/<cluster_id>/driver/` (`stdout`,
`stderr`, `log4j-active.log`), every five minutes on a real workspace and completely when the
cluster terminates. While a run goes, the step lists each of its clusters' driver folder once
per poll (one API call per cluster; nothing at all when no cluster declares a destination),
reads only the bytes added since the last read (DBFS `read` with an offset, or a ranged Files API
download for `/Volumes`), and writes whole new lines to the step's stdout/stderr labelled by
cluster. One last read after the run terminates picks up the final delivery.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.jobs.outage import is_outage
from dbx_assets.integration.workspace_files import WorkspaceFiles

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import RunTask

TAILED_FILES = ("stdout", "stderr")  # log4j-active.log stays in the destination: Spark's own chatter
TAIL_LIMIT = 4 * 1024 * 1024  # a burst beyond this per file and poll is skipped, with a note, not copied

# (stream, text) -> None: where labelled lines go (the step's stdout / stderr)
Emit = Callable[[str, str], None]


def log_destination(cluster_spec: Mapping[str, Any], where: str) -> str | None:
    """The dbfs:/ or /Volumes/ destination of a cluster spec's `cluster_log_conf`, checked at
    definitions load; None without one (or with an S3 one, which the step cannot read)."""
    conf = cluster_spec.get("cluster_log_conf")
    if conf is None:
        return None
    example = (
        "{'dbfs': {'destination': 'dbfs:/cluster-logs'}} or {'volumes': {'destination': '/Volumes/main/ops/logs'}}"
    )
    if not isinstance(conf, Mapping) or len(conf) != 1:
        raise WorkflowDefinitionError(f"{where}: cluster_log_conf must name exactly one destination, e.g. {example}.")
    ((kind, target),) = conf.items()
    destination = target.get("destination") if isinstance(target, Mapping) else None
    if kind == "s3" and destination:
        return None
    if kind == "dbfs" and isinstance(destination, str) and destination.startswith("dbfs:/"):
        return destination.rstrip("/")
    if kind == "volumes" and isinstance(destination, str) and _is_volume_path(destination):
        return destination.rstrip("/")
    raise WorkflowDefinitionError(
        f"{where}: cluster_log_conf {dict(conf)!r} is not a delivery destination Databricks accepts; use {example}."
    )


def _is_volume_path(path: str) -> bool:
    return path.startswith("/Volumes/") and len(path.strip("/").split("/")) >= 4  # /Volumes/catalog/schema/volume


def write_to_step_output(stream: str, text: str) -> None:
    """Into the step's compute logs: Dagster captures the step process's stdout and stderr."""
    print(text, file=sys.stderr if stream == "stderr" else sys.stdout, flush=True)


@dataclass
class _TailedFile:
    offset: int = 0
    partial: bytes = b""  # a line not finished yet: written when its newline arrives, or at the end


class ClusterLogTailer:
    """Follows the delivered driver logs of the clusters a run's tasks ran on."""

    def __init__(
        self,
        client: WorkspaceClient,
        destinations: Mapping[str | None, str],
        emit: Emit,
        warn: Callable[[str], None],
    ):
        """`destinations`: job cluster key -> log destination; key None for tasks on an existing cluster."""
        self._storage = WorkspaceFiles(client)
        self._destinations = dict(destinations)
        self._emit = emit
        self._warn = warn
        self._clusters: dict[str, tuple[str, str]] = {}  # cluster id -> (label, its driver log folder)
        self._files: dict[tuple[str, str], _TailedFile] = {}
        self._warned: set[str] = set()

    @classmethod
    def for_job_clusters(
        cls,
        client: WorkspaceClient,
        job_clusters: Mapping[str, Mapping[str, Any]],
        *,
        existing_cluster_key: str | None,
        warn: Callable[[str], None],
        emit: Emit | None = None,
    ) -> ClusterLogTailer:
        """A tailer for a workflow's job clusters (checked at load, so no error here); tasks on an
        existing cluster created from job cluster `existing_cluster_key` use its destination."""
        destinations: dict[str | None, str] = {}
        for key, spec in job_clusters.items():
            destination = log_destination(spec, f"Job cluster '{key}'")
            if destination is not None:
                destinations[key] = destination
        if existing_cluster_key in destinations:
            destinations[None] = destinations[existing_cluster_key]
        return cls(client, destinations, emit or write_to_step_output, warn)

    @property
    def enabled(self) -> bool:
        return bool(self._destinations)

    def __call__(self, tasks: Iterable[RunTask], final: bool) -> None:
        self.poll(tasks, final=final)

    def poll(self, tasks: Iterable[RunTask], *, final: bool = False) -> None:
        """Emit what was delivered since the last poll; `final`: the run is over, flush partial lines."""
        if not self.enabled:
            return
        self._learn_clusters(tasks)
        for cluster_id, (label, folder) in self._clusters.items():
            try:
                sizes = self._sizes(folder)
                for name in TAILED_FILES:
                    self._read_new(cluster_id, label, folder, name, sizes.get(name, 0), final)
            except Exception as err:  # logs are extra detail: never fail or stall the step over them
                if is_outage(err):
                    raise  # the workspace is unreachable: the watcher says so and waits; the next poll reads on
                if cluster_id not in self._warned:
                    self._warned.add(cluster_id)
                    self._warn(f"Could not read the driver logs of cluster {cluster_id} at {folder}: {err}")

    def _learn_clusters(self, tasks: Iterable[RunTask]) -> None:
        for task in tasks:
            cluster_id = task.cluster_instance.cluster_id if task.cluster_instance else None
            if not cluster_id or cluster_id in self._clusters:
                continue
            destination = self._destinations.get(task.job_cluster_key)
            if destination is None:
                continue
            label = f"{task.job_cluster_key or task.task_key} {cluster_id}"
            self._clusters[cluster_id] = (label, f"{destination}/{cluster_id}/driver")

    # -- one API call per cluster per poll: the folder listing gives every file's size ------------------
    def _sizes(self, folder: str) -> dict[str, int]:
        return {f.name: f.size for f in self._storage.list(folder)}  # none delivered yet: {}

    def _read_new(self, cluster_id: str, label: str, folder: str, name: str, size: int, final: bool) -> None:
        state = self._files.setdefault((cluster_id, name), _TailedFile())
        if size < state.offset:  # rotated or rewritten: start over
            state.offset, state.partial = 0, b""
        if size > state.offset + TAIL_LIMIT:
            self._emit(name, f"[{label}] ... {size - state.offset - TAIL_LIMIT} bytes of {name} skipped ...")
            state.offset, state.partial = size - TAIL_LIMIT, b""
        data = self._storage.read_range(f"{folder}/{name}", state.offset, size) if size > state.offset else b""
        state.offset += len(data)
        text = state.partial + data
        cut = len(text) if final else text.rfind(b"\n") + 1
        state.partial = text[cut:]
        for line in text[:cut].decode("utf-8", "replace").splitlines():
            self._emit(name, f"[{label}] {line}")
