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
DEFAULT_ENVIRONMENT_KEY = "default"
# Serverless environment versions are small integers as strings ("1", "2", ...); each pins a Python
# version and a base set of packages.
DEFAULT_ENVIRONMENT_VERSION = "2"
PERFORMANCE_TARGETS = ("PERFORMANCE_OPTIMIZED", "STANDARD")
# What a Jobs API environment `spec` may hold (compute.Environment); anything else, e.g. spark_conf,
# is cluster configuration that serverless compute does not take.
_ENVIRONMENT_FIELDS = frozenset(
    {"client", "environment_version", "base_environment", "dependencies", "java_dependencies"}
)

# A small, real-looking default: one worker on a current LTS runtime. Users override per cloud.
DEFAULT_CLUSTER_SPEC: dict[str, Any] = {
    "spark_version": "15.4.x-scala2.12",
    "node_type_id": "i3.xlarge",
    "num_workers": 1,
}

# Job parameters every workflow declares; notebooks read them with dbutils.widgets.
PARTITION_KEY_PARAMETER = "partition_key"  # a single partition's key; empty for a range
PARTITION_START_PARAMETER = "partition_start"
PARTITION_END_PARAMETER = "partition_end"
PARTITION_PARAMETERS = (PARTITION_KEY_PARAMETER, PARTITION_START_PARAMETER, PARTITION_END_PARAMETER)
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


def serverless_environment(
    dependencies: Sequence[str] = (), version: str = DEFAULT_ENVIRONMENT_VERSION
) -> dict[str, Any]:
    """A Jobs API environment spec: a serverless environment version plus pip requirements."""
    return {"environment_version": version, "dependencies": list(dependencies)}


def validate_environment_spec(spec: Mapping[str, Any], where: str) -> None:
    """Reject what Databricks would reject in a job's `environments[].spec`, naming the declaration."""
    if not isinstance(spec, Mapping):
        raise WorkflowDefinitionError(f"{where}: the environment spec must be a mapping, got {type(spec).__name__}.")
    cluster_fields = sorted(set(spec) - _ENVIRONMENT_FIELDS)
    if cluster_fields:
        raise WorkflowDefinitionError(
            f"{where}: {', '.join(cluster_fields)} cannot be set on serverless compute (an environment takes only "
            f"{', '.join(sorted(_ENVIRONMENT_FIELDS))}). Run the tasks that need them on a job cluster instead."
        )
    if not (spec.get("environment_version") or spec.get("client") or spec.get("base_environment")):
        raise WorkflowDefinitionError(
            f"{where}: the environment spec needs 'environment_version' "
            f"(e.g. {serverless_environment(['requests==2.32.3'])!r})."
        )
    deps = spec.get("dependencies", [])
    if isinstance(deps, str) or not all(isinstance(d, str) for d in deps):
        raise WorkflowDefinitionError(f"{where}: 'dependencies' must be a list of pip requirement strings.")


def library_requirement(library: Mapping[str, Any], where: str) -> str:
    """A task library as a serverless environment dependency (a pip requirement line or a wheel path):
    serverless tasks take no `libraries`, their environment installs them."""
    if "pypi" in library and not library["pypi"].get("repo"):
        return str(library["pypi"]["package"])
    if "whl" in library:
        return str(library["whl"])
    raise WorkflowDefinitionError(
        f"{where}: library {dict(library)!r} cannot run on serverless compute, whose environments install only "
        "pip requirements and wheels. Run the task on a job cluster, or use a PyPI package or a wheel."
    )


@dataclass(frozen=True)
class WorkflowTask:
    """One Databricks task. `settings` is the task-type block, e.g. {"notebook_task": {...}}."""

    task_key: str
    settings: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    job_cluster_key: str = DEFAULT_JOB_CLUSTER_KEY
    environment_key: str | None = None  # set: the task runs serverless, in that environment (no cluster)
    libraries: tuple[Mapping[str, Any], ...] = ()
    timeout_seconds: int = 0
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None

    def job_settings(self, *, compute: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The task as Jobs API JSON; `compute` replaces the job cluster or environment (e.g. existing_cluster_id)."""
        task: dict[str, Any] = {"task_key": self.task_key, **json.loads(json.dumps(self.settings))}
        if self.depends_on:
            task["depends_on"] = [{"task_key": k} for k in sorted(self.depends_on)]
        serverless = compute is None and self.environment_key is not None
        if serverless:
            task["environment_key"] = self.environment_key
        else:
            task.update(compute or {"job_cluster_key": self.job_cluster_key})
        if self.libraries and not serverless:  # a serverless task's libraries are its environment's dependencies
            task["libraries"] = [dict(lib) for lib in self.libraries]
        if self.timeout_seconds:
            task["timeout_seconds"] = self.timeout_seconds
        for name in ("max_retries", "min_retry_interval_millis", "retry_on_timeout"):  # only when declared
            if getattr(self, name) is not None:
                task[name] = getattr(self, name)
        return task

    def compute_description(self, cluster_id: str | None, *, all_purpose: bool = False) -> str:
        """Where the task ran, in words, from the job spec and runs/get's cluster_instance."""
        if all_purpose:
            return f"all-purpose cluster (cluster id {cluster_id or 'unknown'})"
        if self.environment_key is not None:
            return f"serverless environment '{self.environment_key}'"
        return f"job cluster '{self.job_cluster_key}' (cluster id {cluster_id or 'unknown'})"


@dataclass(frozen=True)
class WorkflowSpec:
    """A whole job: its tasks, the job clusters they share, and the job parameters."""

    name: str
    tasks: tuple[WorkflowTask, ...]
    job_clusters: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {DEFAULT_JOB_CLUSTER_KEY: DEFAULT_CLUSTER_SPEC}
    )
    parameters: tuple[str, ...] = JOB_PARAMETERS
    # The job's own parameters besides ours (a bundle job's `parameters:`): name -> default.
    extra_parameters: dict[str, str] = field(default_factory=dict)
    max_concurrent_runs: int = 20
    timeout_seconds: int = 0
    git_source: dict[str, Any] | None = None  # Jobs API git_source: tasks read their files from it
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)  # serverless: key -> environment spec
    performance_target: str | None = None  # serverless runs: PERFORMANCE_OPTIMIZED or STANDARD

    def task(self, task_key: str) -> WorkflowTask:
        for t in self.tasks:
            if t.task_key == task_key:
                return t
        raise KeyError(task_key)

    def job_settings(self) -> dict[str, Any]:
        used_keys = sorted({t.job_cluster_key for t in self.tasks if t.environment_key is None})
        settings: dict[str, Any] = {
            "name": self.name,
            "tasks": [t.job_settings() for t in self.tasks],
            "job_clusters": [{"job_cluster_key": k, "new_cluster": self.job_clusters[k]} for k in used_keys],
            "parameters": [{"name": p, "default": ""} for p in self.parameters]
            + [{"name": k, "default": v} for k, v in self.extra_parameters.items()],
            "max_concurrent_runs": self.max_concurrent_runs,
            "queue": {"enabled": True},
            "tags": {"dbx_assets": "true"},
        }
        if self.timeout_seconds:
            settings["timeout_seconds"] = self.timeout_seconds
        if self.git_source:
            settings["git_source"] = dict(self.git_source)
        environments = self._used_environments()
        if environments:
            settings["environments"] = environments
        if not used_keys:  # an all-serverless job declares no job clusters
            del settings["job_clusters"]
        if self.performance_target:
            settings["performance_target"] = self.performance_target
        settings["tags"]["dbx_assets_spec_hash"] = spec_hash(settings)
        return settings

    def _used_environments(self) -> list[dict[str, Any]]:
        """The environments tasks use; each installs its declared dependencies plus the libraries its
        tasks declare (sorted, deduplicated), since a serverless task carries no `libraries`."""
        out = []
        for key in sorted({t.environment_key for t in self.tasks if t.environment_key is not None}):
            spec = json.loads(json.dumps(self.environments[key]))
            deps = list(spec.get("dependencies", []))
            for task in self.tasks:
                if task.environment_key == key:
                    deps += [library_requirement(lib, f"Task '{task.task_key}'") for lib in task.libraries]
            if deps:
                spec["dependencies"] = sorted(set(deps))
            out.append({"environment_key": key, "spec": spec})
        return out

    @property
    def spec_hash(self) -> str:
        return self.job_settings()["tags"]["dbx_assets_spec_hash"]


def spec_hash(settings: dict[str, Any]) -> str:
    """A stable hash of job settings (ignoring the hash tag itself)."""
    clean = json.loads(json.dumps(settings))
    clean.get("tags", {}).pop("dbx_assets_spec_hash", None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]
