"""Dagster components (`dg`, `defs.yaml`) for what dbx_assets loads from Python: a team writes

    type: dbx_assets.DatabricksBundleComponent
    attributes:
      path: ../../bundle/databricks.yml
      target: dev

in a `defs.yaml` and gets the same assets `build_workflow_assets` gives. Each component builds only
assets; the workspace is one `DatabricksResourceComponent` per project (several components cannot
each bring a resource under one key: Dagster refuses two different resources with the same key).

Relative paths are relative to the folder of the `defs.yaml` that names them; `{{ project_root }}`
works too (dg's templating). Nothing here calls Databricks at load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field

from dbx_assets.integration.bundles.bundle import DatabricksBundle
from dbx_assets.integration.dbt.source import DbtProjectTasks
from dbx_assets.integration.existing_jobs.jobs import DatabricksJobs
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.base import TaskSource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import DEFAULT_POOL, build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

RESOURCE_KEY = "databricks"


def _path(context: dg.ComponentLoadContext, value: str) -> Path:
    return (Path(context.path) / value).resolve()


def _assets(workflows: list[Workflow], resource_key: str, pool: str) -> dg.Definitions:
    return dg.Definitions(assets=[build_workflow_assets(w, resource_key=resource_key, pool=pool) for w in workflows])


def _from_project_root(request: dg.ScaffoldRequest[Any], path: str) -> str:
    """A path given to `dg scaffold defs`, as `{{ context.project_root }}/...` in the defs.yaml."""
    root = request.project_root or Path.cwd()
    return "{{ context.project_root }}/" + os.path.relpath(Path(path).resolve(), root)


class BundleScaffoldParams(BaseModel):
    bundle_path: str = Field(description="The bundle's databricks.yml (or its folder).")
    target: str | None = Field(default=None, description="A target of the bundle.")


class BundleScaffolder(dg.Scaffolder[BundleScaffoldParams]):
    """`dg scaffold defs dbx_assets.DatabricksBundleComponent NAME --bundle-path PATH [--target T]`."""

    @classmethod
    def get_scaffold_params(cls) -> type[BundleScaffoldParams]:
        return BundleScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[BundleScaffoldParams]) -> None:
        attributes: dict[str, Any] = {"path": _from_project_root(request, request.params.bundle_path)}
        if request.params.target:
            attributes["target"] = request.params.target
        dg.scaffold_component(request, attributes)


class JobsScaffoldParams(BaseModel):
    snapshot: str = Field(description="The snapshot file (python -m dbx_assets.integration.existing_jobs snapshot).")


class JobsScaffolder(dg.Scaffolder[JobsScaffoldParams]):
    """`dg scaffold defs dbx_assets.DatabricksJobsComponent NAME --snapshot FILE`."""

    @classmethod
    def get_scaffold_params(cls) -> type[JobsScaffoldParams]:
        return JobsScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[JobsScaffoldParams]) -> None:
        dg.scaffold_component(request, {"snapshot": _from_project_root(request, request.params.snapshot)})


class DatabricksResourceComponent(dg.Component, dg.Model, dg.Resolvable):
    """The Databricks workspace the project's dbx_assets components run on, as `DatabricksResource`.

    Credentials never go in YAML: the workspace comes from DATABRICKS_HOST with DATABRICKS_TOKEN (or
    DATABRICKS_CLIENT_ID/_SECRET, or `profile`), as the Databricks SDK reads them; with none of them set,
    the embedded local workspace."""

    resource_key: str = Field(default=RESOURCE_KEY, description="The resource key the assets require.")
    host: str | None = Field(default=None, description="Workspace URL (default: DATABRICKS_HOST).")
    profile: str | None = Field(default=None, description="A ~/.databrickscfg profile name.")
    deployment: str | None = Field(default=None, description="Names the jobs, folders and tables this project creates.")
    workspace_root: str = Field(default="/Shared/dbx_assets", description="Workspace folder the files deploy under.")
    sql_warehouse: str | None = Field(default=None, description="SQL warehouse (id or name) for dbt and SQL tasks.")
    catalog: str | None = Field(
        default=None, description="Unity Catalog catalog the tasks write to; may hold {deployment}."
    )
    schema_name: str | None = Field(default=None, description="Schema dbt writes to; may hold {deployment}.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = self.model_dump(exclude={"resource_key"}, exclude_none=True)
        return dg.Definitions(resources={self.resource_key: DatabricksResource(**settings)})


@dg.scaffold_with(BundleScaffolder)
class DatabricksBundleComponent(dg.Component, dg.Model, dg.Resolvable):
    """A Databricks Asset Bundle's jobs as assets (`DatabricksBundle`): each job one workflow, each task
    one asset, a selection one run of the job with `only=`."""

    path: str = Field(description="The bundle's databricks.yml (or its folder), relative to this defs.yaml.")
    target: str | None = Field(default=None, description="A target of the bundle (default: its default target).")
    variables: dict[str, Any] = Field(default_factory=dict, description="The CLI's --var name=value.")
    jobs: list[str] | None = Field(default=None, description="Job keys to load (default: every job of the bundle).")
    key_prefix: list[str] = Field(default_factory=list, description="Prefix of every asset key.")
    group: str | None = Field(default=None, description="The assets' group (default: the bundle's name).")
    user_name: str | None = Field(default=None, description="What ${workspace.current_user.userName} stands for.")
    resource_key: str = Field(default=RESOURCE_KEY, description="The DatabricksResource the assets run on.")
    pool: str = Field(default=DEFAULT_POOL, description="The Dagster pool capping concurrent Databricks runs.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        bundle = DatabricksBundle(
            _path(context, self.path),
            target=self.target,
            variables=self.variables or None,
            user_name=self.user_name,
            key_prefix=self.key_prefix,
            group=self.group,
        )
        workflows = [bundle.workflow(job) for job in self.jobs] if self.jobs else bundle.workflows()
        return _assets(workflows, self.resource_key, self.pool)


@dg.scaffold_with(JobsScaffolder)
class DatabricksJobsComponent(dg.Component, dg.Model, dg.Resolvable):
    """Existing workspace jobs as assets (`DatabricksJobs`), from a snapshot written by
    `python -m dbx_assets.integration.existing_jobs snapshot`."""

    snapshot: str = Field(description="The snapshot file, relative to this defs.yaml.")
    jobs: list[str] | None = Field(default=None, description="Job names or ids to load (default: every job).")
    key_prefix: list[str] | None = Field(
        default=None, description="Prefix of every asset key (default: each job's name as a slug)."
    )
    group: str | None = Field(default=None, description="The assets' group (default: each job's name).")
    resource_key: str = Field(default=RESOURCE_KEY, description="The DatabricksResource the assets run on.")
    pool: str = Field(default=DEFAULT_POOL, description="The Dagster pool capping concurrent Databricks runs.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        existing = DatabricksJobs(_path(context, self.snapshot), key_prefix=self.key_prefix, group=self.group)
        workflows = [existing.workflow(job) for job in self.jobs] if self.jobs else existing.workflows()
        return _assets(workflows, self.resource_key, self.pool)


class NotebookModel(dg.Model, dg.Resolvable):
    """A notebook asset (`NotebookAsset`)."""

    key: str = Field(description='Asset key, "name" or "prefix/name".')
    notebook: str = Field(description="The notebook file in notebooks_dir, e.g. ingest_orders.py.")
    deps: list[str] = Field(default_factory=list, description="Upstream asset keys (notebooks, dbt models).")
    group: str = Field(default="databricks", description="The asset's group.")
    owners: list[str] = Field(default_factory=list, description='Owners, e.g. "team:data-eng".')
    params: dict[str, str] = Field(default_factory=dict, description="base_parameters (widgets).")
    table: str | None = Field(default=None, description='The table it writes, e.g. "{catalog}.sales.orders".')
    job_cluster: str | None = Field(default=None, description="Which job cluster runs it.")
    libraries: list[str] = Field(default_factory=list, description="PyPI requirements for its task.")


class DbtModel(dg.Model, dg.Resolvable):
    """A dbt project (`DbtProjectTasks`); its manifest comes from `python -m dbx_assets.integration.dbt prepare`."""

    project_dir: str = Field(description="The dbt project folder, relative to this defs.yaml.")
    schema_name: str = Field(default="default", description="The schema dbt writes to.")


class DatabricksWorkflowComponent(dg.Component, dg.Model, dg.Resolvable):
    """Notebooks and a dbt project as one workflow (`Workflow`): one Databricks job, any selection one run
    on shared job clusters."""

    name: str = Field(description="The workflow's name (the job is '<name> [<deployment>]').")
    notebooks_dir: str = Field(default=".", description="The notebooks folder, relative to this defs.yaml.")
    notebooks: list[NotebookModel] = Field(default_factory=list, description="The notebook assets.")
    dbt: DbtModel | None = Field(default=None, description="A dbt project whose models become assets.")
    job_clusters: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Job cluster key -> Jobs API cluster spec (default: one small cluster)."
    )
    external_deps: list[str] = Field(default_factory=list, description="Asset keys read but produced elsewhere.")
    resource_key: str = Field(default=RESOURCE_KEY, description="The DatabricksResource the assets run on.")
    pool: str = Field(default=DEFAULT_POOL, description="The Dagster pool capping concurrent Databricks runs.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        sources: list[TaskSource] = []
        if self.notebooks:
            declarations = [NotebookAsset(**n.model_dump(exclude_none=True)) for n in self.notebooks]
            sources.append(NotebookTasks(declarations, notebooks_dir=_path(context, self.notebooks_dir)))
        if self.dbt is not None:
            sources.append(DbtProjectTasks(_path(context, self.dbt.project_dir), schema=self.dbt.schema_name))
        options: dict[str, Any] = {"external_deps": self.external_deps}
        if self.job_clusters:
            options["job_clusters"] = self.job_clusters
            options["default_job_cluster"] = next(iter(self.job_clusters))
        return _assets([Workflow(name=self.name, sources=sources, **options)], self.resource_key, self.pool)
