"""The shape of a workflow: one Databricks job whose tasks materialize assets.

Pure data: building it touches no workspace, so loading definitions stays fast and offline.
The job is deployed from `job_settings()`; `spec_hash` tells whether a deployed job is current.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_JOB_CLUSTER_KEY = "shared"

# A small, real-looking default: one worker on a current LTS runtime. Users override per cloud.
DEFAULT_CLUSTER_SPEC: dict[str, Any] = {
    "spark_version": "15.4.x-scala2.12",
    "node_type_id": "i3.xlarge",
    "num_workers": 1,
}

# Job parameters every workflow declares; notebooks read them with dbutils.widgets.
PARTITION_PARAMETERS = ("partition_key", "partition_start", "partition_end")
# Identity, never clocks: which Dagster run started a Databricks run, and a fresh id per run-now
# call, so a step can tell a run it started from one an earlier attempt started (same token).
DAGSTER_RUN_PARAMETER = "dagster_run_id"
LAUNCH_PARAMETER = "dagster_launch_id"
JOB_PARAMETERS = (*PARTITION_PARAMETERS, DAGSTER_RUN_PARAMETER, LAUNCH_PARAMETER)

TASK_KEY_RE = re.compile(r"[^A-Za-z0-9_-]")


class WorkflowDefinitionError(ValueError):
    """A declaration that cannot become a valid Databricks job (raised at definitions load)."""


def task_key_for(asset_path: Sequence[str]) -> str:
    """Databricks task keys allow [A-Za-z0-9_-] and at most 100 characters."""
    key = TASK_KEY_RE.sub("_", "__".join(asset_path))
    if len(key) > 100:
        key = key[:83] + "_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return key


def validate_cluster_spec(spec: dict[str, Any], where: str) -> None:
    """Reject what the Databricks Clusters API would reject, naming the declaration."""
    if not isinstance(spec, dict):
        raise WorkflowDefinitionError(f"{where}: the cluster spec must be a mapping, got {type(spec).__name__}.")
    if not spec.get("spark_version"):
        raise WorkflowDefinitionError(
            f"{where}: the cluster spec has no 'spark_version'. Add one, e.g. 'spark_version': '15.4.x-scala2.12'."
        )
    if "num_workers" not in spec and "autoscale" not in spec:
        raise WorkflowDefinitionError(
            f"{where}: the cluster spec needs 'num_workers' or 'autoscale' "
            "(e.g. 'num_workers': 1, or 'autoscale': {'min_workers': 1, 'max_workers': 4})."
        )


@dataclass(frozen=True)
class WorkflowTask:
    """One Databricks task. `settings` is the task-type block, e.g. {"notebook_task": {...}}."""

    task_key: str
    settings: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    job_cluster_key: str = DEFAULT_JOB_CLUSTER_KEY
    libraries: tuple[Mapping[str, Any], ...] = ()
    timeout_seconds: int = 0
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None

    def job_settings(self, *, compute: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The task as Jobs API JSON; `compute` replaces the job cluster (e.g. existing_cluster_id)."""
        task: dict[str, Any] = {"task_key": self.task_key, **json.loads(json.dumps(self.settings))}
        if self.depends_on:
            task["depends_on"] = [{"task_key": k} for k in sorted(self.depends_on)]
        task.update(compute or {"job_cluster_key": self.job_cluster_key})
        if self.libraries:
            task["libraries"] = [dict(lib) for lib in self.libraries]
        if self.timeout_seconds:
            task["timeout_seconds"] = self.timeout_seconds
        for name in ("max_retries", "min_retry_interval_millis", "retry_on_timeout"):  # only when declared
            if getattr(self, name) is not None:
                task[name] = getattr(self, name)
        return task


@dataclass(frozen=True)
class WorkflowSpec:
    """A whole job: its tasks, the job clusters they share, and the job parameters."""

    name: str
    tasks: tuple[WorkflowTask, ...]
    job_clusters: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {DEFAULT_JOB_CLUSTER_KEY: DEFAULT_CLUSTER_SPEC}
    )
    parameters: tuple[str, ...] = JOB_PARAMETERS
    max_concurrent_runs: int = 20
    timeout_seconds: int = 0
    git_source: dict[str, Any] | None = None  # Jobs API git_source: tasks read their files from it

    def task(self, task_key: str) -> WorkflowTask:
        for t in self.tasks:
            if t.task_key == task_key:
                return t
        raise KeyError(task_key)

    def job_settings(self) -> dict[str, Any]:
        used_keys = sorted({t.job_cluster_key for t in self.tasks})
        settings: dict[str, Any] = {
            "name": self.name,
            "tasks": [t.job_settings() for t in self.tasks],
            "job_clusters": [{"job_cluster_key": k, "new_cluster": self.job_clusters[k]} for k in used_keys],
            "parameters": [{"name": p, "default": ""} for p in self.parameters],
            "max_concurrent_runs": self.max_concurrent_runs,
            "queue": {"enabled": True},
            "tags": {"dbx_assets": "true"},
        }
        if self.timeout_seconds:
            settings["timeout_seconds"] = self.timeout_seconds
        if self.git_source:
            settings["git_source"] = dict(self.git_source)
        settings["tags"]["dbx_assets_spec_hash"] = spec_hash(settings)
        return settings

    @property
    def spec_hash(self) -> str:
        return self.job_settings()["tags"]["dbx_assets_spec_hash"]


def spec_hash(settings: dict[str, Any]) -> str:
    """A stable hash of job settings (ignoring the hash tag itself)."""
    clean = json.loads(json.dumps(settings))
    clean.get("tags", {}).pop("dbx_assets_spec_hash", None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]
