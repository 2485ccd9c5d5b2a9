"""Declaring notebooks in notebooks_source/ as assets: a small typed declaration per notebook."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from dbx_assets.notebook_source import NotebookSource, read_notebook
from dbx_assets.workflow.deploy import WorkspaceFile
from dbx_assets.workflow.model import DEFAULT_JOB_CLUSTER_KEY, WorkflowTask, task_key_for

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks_source"


@dataclass(frozen=True)
class NotebookAsset:
    """One notebook materializing one asset.

    key:         asset key, "name" or "prefix/name"
    notebook:    file in notebooks_source/, e.g. "ingest_orders.py"
    deps:        upstream asset keys (other notebooks, dbt models, or declared external assets)
    params:      base_parameters (widgets); job parameters (partition_key, ...) take precedence
    job_cluster: which of the workflow's job clusters runs it (default: the shared one)
    libraries:   pypi requirements installed for the task, e.g. ("requests==2.32.3",)
    """

    key: str
    notebook: str
    deps: Sequence[str] = ()
    group: str = "databricks"
    owners: Sequence[str] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    job_cluster: str = DEFAULT_JOB_CLUSTER_KEY
    description: str | None = None
    libraries: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey.from_user_string(self.key)

    @property
    def dep_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey.from_user_string(d) for d in self.deps]

    @property
    def task_key(self) -> str:
        return task_key_for(self.asset_key.path)

    @property
    def workspace_relative_path(self) -> str:
        """Notebooks lose their extension in the workspace, as Databricks does on import."""
        return posixpath.join("notebooks", posixpath.splitext(self.notebook)[0])


@dataclass(frozen=True)
class LoadedNotebook:
    declaration: NotebookAsset
    source: NotebookSource

    def spec(self) -> dg.AssetSpec:
        d = self.declaration
        return dg.AssetSpec(
            key=d.asset_key,
            deps=d.dep_keys,
            group_name=d.group,
            owners=list(d.owners),
            description=d.description or self.source.first_markdown() or f"Databricks notebook {d.notebook}",
            code_version=self.source.code_version,
            kinds={"databricks", "notebook"},
            tags=dict(d.tags),
            skippable=True,
            metadata={"notebook": d.notebook, "databricks_task_key": d.task_key},
        )

    def workspace_file(self) -> WorkspaceFile:
        return WorkspaceFile(self.declaration.workspace_relative_path, self.source.text.encode(), is_notebook=True)

    def task(self, *, workspace_root: str, depends_on: Sequence[str]) -> WorkflowTask:
        d = self.declaration
        return WorkflowTask(
            task_key=d.task_key,
            kind="notebook",
            payload={
                "notebook_task": {
                    "notebook_path": posixpath.join(workspace_root, d.workspace_relative_path),
                    "base_parameters": dict(d.params),
                    "source": "WORKSPACE",
                }
            },
            depends_on=tuple(depends_on),
            job_cluster_key=d.job_cluster,
            libraries=tuple({"pypi": {"package": p}} for p in d.libraries),
        )


def load_notebooks(declarations: Sequence[NotebookAsset], notebooks_dir: Path = NOTEBOOKS_DIR) -> list[LoadedNotebook]:
    """Read every declared notebook; the first problem raises with the file and the fix named."""
    return [LoadedNotebook(d, read_notebook(notebooks_dir / d.notebook)) for d in declarations]
