"""Existing workspace jobs as assets: each job of a snapshot (snapshot.py) is one workflow whose
every task is one asset, deps from `depends_on`.

The job is not ours: nothing is deployed, reset or deleted. A selection is one run of the job
itself, `run-now` with `only=` the selected task keys, each asset reported as its task ends (the
workflow's own watcher: execution.py). Any task type runs, since Databricks runs it; a task's
asset shows what it runs, and its code version is the hash of the task's definition, so
re-snapshotting a changed task flags its asset as changed in the UI.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dbx_assets.integration.existing_jobs.execution import ExistingJobExecution
from dbx_assets.integration.existing_jobs.snapshot import (
    ExistingJob,
    JobSnapshot,
    JobSnapshotError,
    Snapshot,
    read_snapshot,
    snapshot_command,
)
from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import JOB_PARAMETERS, WorkflowSpec, WorkflowTask
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask
from dbx_assets.integration.sources.job_tasks import KIND_LABELS, task_target, task_type, upstream_tasks
from dbx_assets.integration.sources.task_assets import OneTaskPerAsset, TaskAsset, task_asset_spec
from dbx_assets.integration.workflow.definition import Workflow

_NAME_RE = re.compile(r"[^A-Za-z0-9_]+")


def job_slug(name: str) -> str:
    """A job name as an asset key part, group or op name: "Daily sales (prod)" -> "daily_sales_prod"."""
    return _NAME_RE.sub("_", name).strip("_").lower() or "job"


@dataclass(frozen=True, kw_only=True)
class ExistingTask(TaskAsset):
    """One task of an existing job; its task key is the job's, whatever its asset key."""

    job_task_key: str
    kind: str
    task: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task_key(self) -> str:
        return self.job_task_key


class ExistingJobTasks(OneTaskPerAsset[ExistingTask]):
    """The tasks of one existing job. Their settings are the job's own: they describe the job for
    the step (costs, compute) and are never sent to the workspace."""

    kinds = frozenset({"databricks"})
    what = "job task"

    def __init__(self, job: JobSnapshot, declarations: Sequence[ExistingTask]):
        super().__init__(declarations, [d.job_task_key for d in declarations])
        self.job = job

    def _settings(self, d: ExistingTask, target: DeployTarget) -> dict[str, Any]:
        return {d.kind: d.task[d.kind]}

    def _libraries(self, d: ExistingTask, target: DeployTarget) -> list[dict[str, Any]]:
        return [dict(lib) for lib in d.task.get("libraries") or []]

    def _description(self, d: ExistingTask) -> str:
        what = task_target(d.task, d.kind)
        return str(
            d.task.get("description")
            or f"Task `{d.job_task_key}` of Databricks job '{self.job.name}' ({self.job.job_id}): "
            f"{KIND_LABELS.get(d.kind, d.kind)} {what}".rstrip()
        )

    def _code_version(self, d: ExistingTask) -> str:
        return hashlib.sha256(json.dumps(d.task, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _metadata(self, d: ExistingTask) -> dict[str, Any]:
        return {
            "databricks_job_id": self.job.job_id,
            "databricks_job_name": self.job.name,
            "databricks_task_type": d.kind,
            "databricks_task": dg.MetadataValue.json(dict(d.task)),
        }

    def asset_specs(self) -> list[dg.AssetSpec]:
        return [
            task_asset_spec(
                d,
                description=self._description(d),
                code_version=self._code_version(d),
                kinds={"databricks", KIND_LABELS.get(d.kind, "task")},
                metadata=self._metadata(d),
            )
            for d in self.declarations
        ]

    def files(self) -> Mapping[str, WorkspaceFile]:
        return {}  # the job's files are already in the workspace

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        raise JobSnapshotError(f"Job '{self.job.name}' is an existing job: it runs with run-now, never runs/submit.")


@dataclass(frozen=True)
class ExistingJobWorkflow(Workflow):
    """A workflow that is an existing job: its spec mirrors the snapshot (never deployed) and its
    step runs the job by id (execution.py)."""

    existing: ExistingJob = field(kw_only=True)
    execution_type = ExistingJobExecution

    @property
    def job(self) -> JobSnapshot:
        return self.existing.job

    def _validate(self) -> None:
        # Databricks accepted the job as it is; only what the assets need is checked (task graph, keys).
        tasks = self._source_tasks(DeployTarget(workspace_root="/"))
        producers = {key: task.task_key for _, task in tasks for key in task.asset_keys}
        if len(producers) != len(tasks):
            raise JobSnapshotError(f"Job '{self.job.name}' maps two tasks to one asset key.")

    def spec(self, target: DeployTarget) -> WorkflowSpec:
        tasks = []
        for t in self.job.tasks:
            kind = task_type(t, self.where, JobSnapshotError)
            tasks.append(
                WorkflowTask(
                    task_key=t["task_key"],
                    settings={kind: t[kind]},
                    depends_on=tuple(d["task_key"] for d in t.get("depends_on") or []),
                    job_cluster_key=str(t.get("job_cluster_key") or ""),
                    environment_key=t.get("environment_key"),
                )
            )
        return WorkflowSpec(
            name=self.job.name,
            tasks=tuple(tasks),
            job_clusters={k: dict(v) for k, v in self.job_clusters.items()},
            parameters=tuple(p for p in self.job.parameter_names if p in JOB_PARAMETERS),
            extra_parameters={k: str(v) for k, v in self.parameters.items()},
        )

    @property
    def where(self) -> str:
        return f"Job '{self.job.name}' ({self.job.job_id}) in {self.existing.snapshot_path}"

    def files(self) -> dict[str, WorkspaceFile]:
        return {}


class DatabricksJobs:
    """Existing workspace jobs, from a snapshot file written by
    `python -m dbx_assets.integration.existing_jobs snapshot --job NAME --output FILE`.

    snapshot:   the snapshot file (read at construction; definitions load never calls Databricks)
    key_prefix: prefix of every asset key; default (None): each job's name as a slug, so tasks of
                different jobs never collide ("daily_sales/ingest"); () gives bare task keys
    group:      the assets' group (default: the job's name as a slug)

    `workflow(job)` is one job (by name or id) as a workflow; `workflows()` all of them. Pass each to
    `build_workflow_assets`.
    """

    def __init__(
        self,
        snapshot: Path | str,
        *,
        key_prefix: Sequence[str] | None = None,
        group: str | None = None,
        dbu_rates: Mapping[str, float] | None = None,
    ):
        self.path = Path(snapshot).resolve()
        self.snapshot: Snapshot = read_snapshot(self.path)
        self.key_prefix = None if key_prefix is None else tuple(key_prefix)
        self.group = group
        self.dbu_rates = dict(dbu_rates or {})
        self._workflows = {job.job_id: self._build(job) for job in self.snapshot.jobs}
        self._check_unique_keys()

    @property
    def jobs(self) -> list[JobSnapshot]:
        return list(self.snapshot.jobs)

    def workflows(self) -> list[Workflow]:
        return list(self._workflows.values())

    def workflow(self, job: str | int | None = None) -> Workflow:
        """The job named `job` (its name or id; optional when the snapshot holds one job)."""
        jobs = self.snapshot.jobs
        if job is None:
            if len(jobs) != 1:
                raise JobSnapshotError(
                    f"{self.path} holds {len(jobs)} jobs ({self._names()}); name one: jobs.workflow('<name or id>')."
                )
            return self._workflows[jobs[0].job_id]
        found = [j for j in jobs if str(job) in (j.name, str(j.job_id))]
        if not found:
            raise JobSnapshotError(
                f"{self.path} holds no job '{job}' (jobs: {self._names()}). Snapshot it: "
                f"`{snapshot_command(self.path, [f'--job {job!r}'])}`."
            )
        return self._workflows[found[0].job_id]

    def _names(self) -> str:
        return ", ".join(f"{j.name} ({j.job_id})" for j in self.snapshot.jobs)

    def _build(self, job: JobSnapshot) -> ExistingJobWorkflow:
        where = f"Job '{job.name}' ({job.job_id}) in {self.path}"
        slug = job_slug(job.name)
        prefix = (slug,) if self.key_prefix is None else self.key_prefix
        keys = [t["task_key"] for t in job.tasks if t.get("task_key")]
        declarations = []
        for t in job.tasks:
            kind = task_type(t, where, JobSnapshotError)
            asset_key = dg.AssetKey([*prefix, t["task_key"]])
            declarations.append(
                ExistingTask(
                    key=asset_key.to_user_string(),
                    deps=[
                        dg.AssetKey([*prefix, up]).to_user_string()
                        for up in upstream_tasks(t, keys, where, JobSnapshotError)
                    ],
                    group=self.group or slug,
                    job_task_key=t["task_key"],
                    kind=kind,
                    task=t,
                    job_cluster=t.get("job_cluster_key"),
                    environment=t.get("environment_key"),
                )
            )
        job_clusters = {
            c["job_cluster_key"]: c.get("new_cluster") or {} for c in job.settings.get("job_clusters") or []
        }
        environments = {e["environment_key"]: e.get("spec") or {} for e in job.settings.get("environments") or []}
        return ExistingJobWorkflow(
            name=f"{slug}_{job.job_id}",  # the multi-asset's op name: unique per job
            sources=[ExistingJobTasks(job, declarations)],
            job_clusters=job_clusters,
            environments=environments,
            dbu_rates=self.dbu_rates,
            parameters={  # settable per run; ours (if the job declares them) are set by the step
                str(p["name"]): str(p.get("default", ""))
                for p in job.settings.get("parameters") or []
                if p["name"] not in JOB_PARAMETERS
            },
            existing=ExistingJob(job, self.path, self.snapshot.selectors),
        )

    def _check_unique_keys(self) -> None:
        seen: dict[dg.AssetKey, str] = {}
        for workflow in self._workflows.values():
            for spec in workflow.asset_specs():
                if spec.key in seen:
                    raise JobSnapshotError(
                        f"Asset key '{spec.key.to_user_string()}' comes from two jobs ({seen[spec.key]} and "
                        f"{workflow.job.name}) in {self.path}; keep the default key_prefix (each job's name)."
                    )
                seen[spec.key] = workflow.job.name
