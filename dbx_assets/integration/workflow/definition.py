"""What a workflow is: task sources deployed as one Databricks job whose tasks share job clusters.

Pure declaration and validation (at definitions load): it reads nothing from disk (the sources
already did) and calls no workspace. Task dependencies come from asset dependencies: a task
depends on the tasks that produce the assets it reads, whatever kind of task either is.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import dagster as dg

from dbx_assets.integration.deployment import job_name
from dbx_assets.integration.jobs.cluster_logs import log_destination
from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import (
    DEFAULT_CLUSTER_SPEC,
    DEFAULT_JOB_CLUSTER_KEY,
    JOB_PARAMETERS,
    PERFORMANCE_TARGETS,
    WorkflowDefinitionError,
    WorkflowSpec,
    WorkflowTask,
    library_requirement,
    validate_cluster_spec,
    validate_environment_spec,
)
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskSource
from dbx_assets.integration.workflow.limits import check_workflow_limits

Compute = Literal["job_cluster", "all_purpose"]

# The task graph does not depend on where the workflow is deployed: validation builds the tasks
# for a stand-in target.
_DECLARATION_TARGET = DeployTarget(workspace_root="/Workspace/declaration", sql_warehouse_id="declaration")


@dataclass(frozen=True)
class Workflow:
    """Task sources (notebooks, a dbt project, ...) deployed as one Databricks job per deployment,
    named `<name> [<deployment>]`.

    job_clusters:        job cluster key -> cluster spec; tasks use `default_job_cluster` unless
                         their declaration names another job cluster or an environment; a spec's
                         `cluster_log_conf` ({"dbfs"|"volumes": {"destination": ...}}) makes the
                         step tail its driver stdout/stderr into the step's compute logs
    environments:        serverless environment key -> Jobs API environment spec
                         ({"environment_version": "2", "dependencies": [...]}, see
                         `serverless_environment`); a task naming one runs on serverless compute
    default_environment: set: tasks that name no compute run serverless in this environment
                         instead of on `default_job_cluster`
    performance_target:  serverless runs: "PERFORMANCE_OPTIMIZED" or "STANDARD" (None: Databricks' default)
    compute:             "job_cluster" (a deployed job, run-now) or "all_purpose" (create one
                         cluster from the default spec, submit the selection on it, delete it)
    external_deps:       asset keys read by tasks but produced outside this workflow
    timeout_seconds:     the job's timeout (0: none)
    max_concurrent_runs: the job's cap on concurrent runs (extra runs queue)
    git_source:          a Jobs API git_source (git_url, git_provider, git_branch/git_tag/git_commit):
                         tasks run the files of that Git reference (paths relative to the repository)
                         and no files are uploaded
    dbu_rates:           node type -> DBU per node-hour, over workflow/cost.py's small default table
                         (each materialization's DBU estimate; unknown node types get none)
    parameters:          the job's own job parameters besides dbx_assets' (name -> default), e.g. a bundle
                         job's `parameters:`; each run sets them from the step's config (`ops.<workflow
                         name>.config.<parameter>`), and `catalog`/`schema`/`deployment` default to the
                         deploy target's, as notebook widgets do
    """

    name: str
    sources: Sequence[TaskSource]
    job_clusters: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {DEFAULT_JOB_CLUSTER_KEY: DEFAULT_CLUSTER_SPEC}
    )
    default_job_cluster: str = DEFAULT_JOB_CLUSTER_KEY
    environments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_environment: str | None = None
    performance_target: str | None = None
    compute: Compute = "job_cluster"
    external_deps: Sequence[str] = ()
    timeout_seconds: int = 0
    max_concurrent_runs: int = 20
    git_source: Mapping[str, Any] | None = None
    dbu_rates: Mapping[str, float] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)

    # What runs a step of this workflow (None: workflow/execution.py's WorkflowExecution, which deploys
    # the job); a workflow that is an existing workspace job names its own.
    execution_type: ClassVar[Any] = None

    def __post_init__(self) -> None:
        self._validate()

    # -- validation (definitions load) ----------------------------------------------------------
    def _validate(self) -> None:
        for cluster_key, spec in self.job_clusters.items():
            validate_cluster_spec(dict(spec), f"Job cluster '{cluster_key}' of workflow '{self.name}'")
            log_destination(spec, f"Job cluster '{cluster_key}' of workflow '{self.name}'")  # its cluster_log_conf
        self._validate_serverless()
        for name in sorted(set(self.parameters) & set(JOB_PARAMETERS)):
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' declares job parameter '{name}', which dbx_assets sets itself "
                f"({', '.join(JOB_PARAMETERS)}). Rename the parameter."
            )
        if self.default_environment is None and self.default_job_cluster not in self.job_clusters:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has no job cluster '{self.default_job_cluster}' (its default_job_cluster); "
                f"defined: {', '.join(sorted(self.job_clusters)) or 'none'}."
            )
        tasks = self._source_tasks(_DECLARATION_TARGET)
        producers: dict[dg.AssetKey, str] = {}
        task_keys: set[str] = set()
        for _, task in tasks:
            if task.task_key in task_keys:
                raise WorkflowDefinitionError(f"Workflow '{self.name}' has two tasks with key '{task.task_key}'.")
            task_keys.add(task.task_key)
            for asset_key in task.asset_keys:
                if asset_key in producers:
                    raise WorkflowDefinitionError(
                        f"Asset key '{asset_key.to_user_string()}' is materialized by two tasks of workflow "
                        f"'{self.name}' ({producers[asset_key]} and {task.task_key}). Give each asset one producer."
                    )
                producers[asset_key] = task.task_key
        external = {dg.AssetKey.from_user_string(k) for k in self.external_deps}
        for _, task in tasks:
            for dep in sorted(task.upstream_keys - set(producers) - external, key=lambda k: k.to_user_string()):
                raise WorkflowDefinitionError(
                    f"Task '{task.task_key}' of workflow '{self.name}' depends on unknown asset "
                    f"'{dep.to_user_string()}'. Declare it as a notebook, a dbt model, or list it in external_deps."
                )
            self._validate_task_compute(task)
        deps = self._task_deps([t for _, t in tasks])
        try:
            list(graphlib.TopologicalSorter({k: set(v) for k, v in deps.items()}).static_order())
        except graphlib.CycleError as err:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has a dependency cycle between tasks {err.args[1]}: for example a notebook "
                "that reads a dbt model cannot also feed one of its sources."
            ) from None
        # Databricks' documented caps (1,000 tasks, 10 MB requests, ...), said here rather than at deploy.
        check_workflow_limits(
            self.name, self.spec(_DECLARATION_TARGET).job_settings(), self.sources, _DECLARATION_TARGET
        )

    def _validate_serverless(self) -> None:
        for env_key, env in self.environments.items():
            validate_environment_spec(env, f"Environment '{env_key}' of workflow '{self.name}'")
        if self.default_environment is not None and self.default_environment not in self.environments:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has no environment '{self.default_environment}' (its default_environment); "
                f"defined: {', '.join(sorted(self.environments)) or 'none'}. Add it to environments."
            )
        if self.performance_target is not None and self.performance_target not in PERFORMANCE_TARGETS:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has performance_target {self.performance_target!r}; "
                f"use one of {', '.join(PERFORMANCE_TARGETS)} (or None for Databricks' default)."
            )
        if self.compute == "all_purpose" and (self.environments or self.default_environment):
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' runs every task on one all-purpose cluster (compute='all_purpose'), so it "
                "cannot declare serverless environments. Use compute='job_cluster' to mix clusters and serverless."
            )

    def _validate_task_compute(self, task: SourceTask) -> None:
        where = f"Task '{task.task_key}' of workflow '{self.name}'"
        if task.job_cluster is not None and task.environment is not None:
            raise WorkflowDefinitionError(
                f"{where} names both job cluster '{task.job_cluster}' and serverless environment "
                f"'{task.environment}'. A task runs on one compute: keep one of them."
            )
        if task.job_cluster is not None and task.job_cluster not in self.job_clusters:
            raise WorkflowDefinitionError(
                f"{where} names job cluster '{task.job_cluster}', which the workflow does not define "
                f"(defined: {', '.join(sorted(self.job_clusters)) or 'none'})."
            )
        if task.environment is not None and task.environment not in self.environments:
            raise WorkflowDefinitionError(
                f"{where} names serverless environment '{task.environment}', which the workflow does not define "
                f"(defined: {', '.join(sorted(self.environments)) or 'none'}). Add it to the workflow's environments."
            )
        if self._environment_of(task) is not None:
            for library in task.libraries:  # its libraries become the environment's dependencies
                library_requirement(library, where)

    def _environment_of(self, task: SourceTask) -> str | None:
        """The serverless environment a task runs in, or None when it runs on a job cluster."""
        if task.environment is not None:
            return task.environment
        return None if task.job_cluster is not None else self.default_environment

    # -- the job --------------------------------------------------------------------------------
    @property
    def needs_sql_warehouse(self) -> bool:
        return any(source.needs_sql_warehouse for source in self.sources)

    def _source_tasks(self, target: DeployTarget) -> list[tuple[TaskSource, SourceTask]]:
        if self.git_source:
            target = dataclasses.replace(target, from_git=True)
        return [(source, task) for source in self.sources for task in source.tasks(target)]

    @staticmethod
    def _task_deps(tasks: Sequence[SourceTask]) -> dict[str, tuple[str, ...]]:
        producer = {key: t.task_key for t in tasks for key in t.asset_keys}
        return {
            t.task_key: tuple(sorted({producer[k] for k in t.upstream_keys if k in producer} - {t.task_key}))
            for t in tasks
        }

    def spec(self, target: DeployTarget) -> WorkflowSpec:
        tasks = [t for _, t in self._source_tasks(target)]
        deps = self._task_deps(tasks)
        return WorkflowSpec(
            name=job_name(self.name, target.deployment),  # one job per deployment: they never share one
            tasks=tuple(
                WorkflowTask(
                    task_key=t.task_key,
                    settings=t.settings,
                    depends_on=deps[t.task_key],
                    job_cluster_key=t.job_cluster or self.default_job_cluster,
                    environment_key=self._environment_of(t),
                    libraries=t.libraries,
                    max_retries=t.max_retries,
                    min_retry_interval_millis=t.min_retry_interval_millis,
                    retry_on_timeout=t.retry_on_timeout,
                )
                for t in tasks
            ),
            job_clusters={k: dict(v) for k, v in self.job_clusters.items()},
            max_concurrent_runs=self.max_concurrent_runs,
            timeout_seconds=self.timeout_seconds,
            git_source=dict(self.git_source) if self.git_source else None,
            environments={k: dict(v) for k, v in self.environments.items()},
            performance_target=self.performance_target,
            extra_parameters={k: str(v) for k, v in self.parameters.items()},
        )

    def files(self) -> dict[str, WorkspaceFile]:
        if self.git_source:  # the job reads its files from the Git reference
            return {}
        files: dict[str, WorkspaceFile] = {}
        for source in self.sources:
            files.update(source.files())
        return files

    # -- selection ------------------------------------------------------------------------------
    def selected_tasks(self, selection: Selection, target: DeployTarget) -> list[tuple[TaskSource, SourceTask]]:
        """The tasks that materialize something in `selection`, in job order."""
        return [
            (source, task)
            for source, task in self._source_tasks(target)
            if task.asset_keys & selection.assets or task.check_keys & selection.checks
        ]

    def asset_specs(self) -> list[dg.AssetSpec]:
        return [spec for source in self.sources for spec in source.asset_specs()]

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return [spec for source in self.sources for spec in source.check_specs()]
