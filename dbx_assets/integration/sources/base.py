"""What a workflow needs from each kind of task (a notebook, a dbt project, later a Python or
SQL file): the assets and checks it materializes, the job tasks that do it, the files those
tasks need in the workspace, and the Dagster events for a finished task.

The workflow only ever talks to `TaskSource`; adding a kind of task is one new module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import dagster as dg

from dbx_assets.integration.deployment import DEFAULT_DEPLOYMENT
from dbx_assets.integration.jobs.deploy import WorkspaceFile

if TYPE_CHECKING:  # the runner (and the SDK under it) is imported when a step runs, not at load
    from dbx_assets.integration.jobs.runner import TaskFinished


@dataclass(frozen=True)
class DeployTarget:
    """Where and how a workflow is deployed: what its task settings may depend on (never on
    whether the workspace is local)."""

    workspace_root: str  # workspace folder the workflow's files live in, e.g. /Shared/dbx_assets
    sql_warehouse_id: str | None = None  # for tasks that run SQL on a warehouse (dbt)
    catalog: str | None = None  # Unity Catalog catalog the tasks write to (None: the workspace default)
    schema: str | None = None  # default schema for tasks that take one (dbt)
    from_git: bool = False  # the job has a git_source: task files are read from it (repo-relative paths)
    # Names what the workflow creates (job, folder, and through catalog/schema its tables); see deployment.py.
    deployment: str = DEFAULT_DEPLOYMENT
    # (name, id) of each instance pool the workflow's job clusters name by name, resolved at deploy.
    instance_pool_ids: tuple[tuple[str, str], ...] = ()

    @property
    def task_parameters(self) -> dict[str, str]:
        """What every notebook task gets as parameters (widgets), so it writes where its deployment
        writes: `deployment`, and `catalog`/`schema` when the deployment names them."""
        named = {"deployment": self.deployment, "catalog": self.catalog, "schema": self.schema}
        return {k: v for k, v in named.items() if v}


@dataclass(frozen=True)
class SourceTask:
    """One Databricks task of a workflow, as its source declares it.

    `settings` is the task's own block(s) (e.g. {"notebook_task": {...}}); the workflow adds
    task_key, depends_on (from `upstream_keys`), compute and timeouts.
    """

    task_key: str
    asset_keys: frozenset[dg.AssetKey]
    upstream_keys: frozenset[dg.AssetKey]
    settings: Mapping[str, Any]
    check_keys: frozenset[dg.AssetCheckKey] = frozenset()
    libraries: tuple[Mapping[str, Any], ...] = ()
    # Compute: a job cluster of the workflow, or one of its serverless environments; at most one is
    # set, neither means the workflow's default compute.
    job_cluster: str | None = None
    environment: str | None = None
    # The task's Databricks retry policy; None leaves the field out of the job spec.
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None


@dataclass(frozen=True)
class Selection:
    """What one Dagster step materializes, and the job parameters it passes (partitions)."""

    assets: frozenset[dg.AssetKey]
    checks: frozenset[dg.AssetCheckKey]
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass
class TaskReport:
    """The Dagster side of a finished task: events to yield, and assets that failed (key -> why)."""

    events: list[dg.MaterializeResult | dg.AssetCheckResult] = field(default_factory=list)
    failures: dict[dg.AssetKey, str] = field(default_factory=dict)


@runtime_checkable
class TaskSource(Protocol):
    """A kind of task that materializes assets inside a workflow's one Databricks run."""

    # True when its tasks run SQL on a SQL warehouse: the deploy target then names one.
    needs_sql_warehouse: bool

    def asset_specs(self) -> Sequence[dg.AssetSpec]: ...

    def check_specs(self) -> Sequence[dg.AssetCheckSpec]: ...

    def tasks(self, target: DeployTarget) -> Sequence[SourceTask]:
        """The job tasks, in a stable order (the job spec's hash depends on it)."""
        ...

    def files(self) -> Mapping[str, WorkspaceFile]:
        """Files to sync under the workspace root, keyed by their relative path."""
        ...

    def run_overrides(self, selection: Selection, target: DeployTarget) -> Mapping[str, Any]:
        """Extra run-now / repair arguments that narrow this source's tasks to `selection`
        (e.g. dbt_commands), so the job spec itself never changes with the selection."""
        ...

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        """The task's settings for a one-time runs/submit, which has no job parameters or
        run-now overrides: the selection and parameters go into the task itself."""
        ...

    def report(
        self, finished: TaskFinished, selection: Selection, target: DeployTarget, metadata: Mapping[str, Any]
    ) -> TaskReport:
        """Events for a finished task of this source, restricted to `selection`; `metadata`
        (run ids, run page URL, timings) goes on every event."""
        ...
