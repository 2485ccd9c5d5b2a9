"""Notebooks as assets: a small typed declaration per notebook, and the task source that turns
a folder's declared notebooks into asset specs, notebook tasks and events."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError, task_key_for
from dbx_assets.integration.jobs.runner import TaskFinished
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskReport
from dbx_assets.integration.sources.notebook_file import NotebookFile, read_notebook, read_run_dependencies
from dbx_assets.integration.sources.pipes_layout import (
    CHANNEL_PARAMETER,
    DEFAULT_PIPES_ROOT,
    PipesLocation,
    dagster_pipes_requirement,
)
from dbx_assets.integration.sources.task_assets import table_metadata
from dbx_assets.integration.tables import TABLE_NAME, resolve_table_name, validate_table_name

# How Databricks (and the local workspace) report a task whose notebook path does not exist.
_MISSING_NOTEBOOK = re.compile(
    r"Notebook not found|Unable to access the notebook|RESOURCE_DOES_NOT_EXIST", re.IGNORECASE
)


@dataclass(frozen=True)
class NotebookAsset:
    """One notebook materializing one asset.

    key:         asset key, "name" or "prefix/name"
    notebook:    file in the notebooks folder, e.g. "ingest_orders.py": a SOURCE notebook (.py, .sql,
                 .scala, .r, with its language's header) or an .ipynb
    deps:        upstream asset keys (other notebooks, dbt models, or declared external assets)
    params:      base_parameters (widgets); job parameters (partition_key, ...) take precedence, and so
                 do `deployment`, `catalog` and `schema`, which every task gets from its deployment
    job_cluster: which of the workflow's job clusters runs it (default: the workflow's default compute)
    environment: which of the workflow's serverless environments runs it instead (not with job_cluster)
    libraries:   pypi requirements installed for the task, e.g. ("requests==2.32.3",)
    max_retries, min_retry_interval_millis, retry_on_timeout: the task's Databricks retry policy
                 (None: the job task leaves it unset)
    pipes:       the notebook reports through Dagster Pipes (dagster-pipes): it gets its own context
                 and message channel (the `dagster_pipes_channel` widget) and dagster-pipes as a library
    checks:      asset checks the notebook reports through Pipes (names or dg.AssetCheckSpec)
    """

    key: str
    notebook: str
    deps: Sequence[str] = ()
    group: str = "databricks"
    owners: Sequence[str] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    job_cluster: str | None = None
    environment: str | None = None
    description: str | None = None
    libraries: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None
    # The Unity Catalog table it writes, "catalog.schema.table"; "{catalog}" is the deploy target's
    # catalog. Its materializations then carry the table's name, columns and row count.
    table: str | None = None
    pipes: bool = False
    checks: Sequence[str | dg.AssetCheckSpec] = ()

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
    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return [dg.AssetCheckSpec(name=c, asset=self.asset_key) if isinstance(c, str) else c for c in self.checks]

    @property
    def workspace_relative_path(self) -> str:
        """Notebooks lose their extension in the workspace, as Databricks does on import."""
        return posixpath.join("notebooks", posixpath.splitext(self.notebook)[0])


@dataclass(frozen=True)
class _LoadedNotebook:
    declaration: NotebookAsset
    file: NotebookFile
    helpers: Mapping[str, NotebookFile] = field(default_factory=dict)  # what it %runs, by path in the folder

    @property
    def code_version(self) -> str:
        """Changes when the notebook or a notebook it %runs changes."""
        if not self.helpers:
            return self.file.code_version
        parts = [self.file.code_version, *(f"{k}:{f.code_version}" for k, f in self.helpers.items())]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class NotebookTasks:
    """The notebooks of one folder, each declared as one asset materialized by one notebook task.

    Reads every declared notebook at construction: a missing or malformed one raises at
    definitions load, naming the file and the fix.
    """

    needs_sql_warehouse = False

    def __init__(
        self,
        declarations: Sequence[NotebookAsset],
        *,
        notebooks_dir: Path | str,
        pipes_root: str = DEFAULT_PIPES_ROOT,
    ):
        """pipes_root: where pipes-enabled notebooks' channels live, `dbfs:/...` or
        `/Volumes/<catalog>/<schema>/<volume>/...` (one folder per Dagster run and task below it)."""
        self.notebooks_dir = Path(notebooks_dir)
        self.pipes_location = PipesLocation(pipes_root)
        seen: dict[dg.AssetKey, str] = {}
        for nb in declarations:
            if nb.asset_key in seen:
                raise WorkflowDefinitionError(
                    f"Asset key '{nb.key}' is declared twice (notebooks {seen[nb.asset_key]} and {nb.notebook}). "
                    "Give each notebook asset its own key."
                )
            seen[nb.asset_key] = nb.notebook
            if nb.table is not None:
                validate_table_name(nb.table, f"Notebook asset '{nb.key}'")
            if nb.checks and not nb.pipes:
                raise WorkflowDefinitionError(
                    f"Notebook asset '{nb.key}' declares checks, which a notebook reports through Dagster Pipes: "
                    "set pipes=True and report them with pipes.report_asset_check(...)."
                )
            for check in nb.check_specs:
                if check.asset_key != nb.asset_key:
                    raise WorkflowDefinitionError(
                        f"Notebook asset '{nb.key}' declares check '{check.name}' on another asset "
                        f"({check.asset_key.to_user_string()}); a notebook's checks are on its own asset."
                    )
        self._notebooks = [
            _LoadedNotebook(
                d, read_notebook(self.notebooks_dir / d.notebook), read_run_dependencies(self.notebooks_dir, d.notebook)
            )
            for d in declarations
        ]
        _check_workspace_paths(self.notebooks_dir, self._notebooks)
        self._by_task_key = {nb.declaration.task_key: nb for nb in self._notebooks}

    @property
    def declarations(self) -> list[NotebookAsset]:
        return [nb.declaration for nb in self._notebooks]

    # -- declaration ----------------------------------------------------------------------------
    def asset_specs(self) -> list[dg.AssetSpec]:
        return [self._spec(nb) for nb in self._notebooks]

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return [spec for nb in self._notebooks for spec in nb.declaration.check_specs]

    def tasks(self, target: DeployTarget) -> list[SourceTask]:
        return [
            SourceTask(
                task_key=nb.declaration.task_key,
                asset_keys=frozenset({nb.declaration.asset_key}),
                upstream_keys=frozenset(nb.declaration.dep_keys),
                settings={
                    "notebook_task": {
                        "notebook_path": self._repo_path(nb.declaration)
                        if target.from_git
                        else posixpath.join(target.workspace_root, nb.declaration.workspace_relative_path),
                        # The deployment's parameters win: they keep deployments' tables apart.
                        "base_parameters": {
                            **nb.declaration.params,
                            **target.task_parameters,
                            **self._pipes_parameters(nb.declaration),
                        },
                        "source": "GIT" if target.from_git else "WORKSPACE",
                    }
                },
                libraries=tuple({"pypi": {"package": p}} for p in self._libraries(nb.declaration)),
                check_keys=frozenset(spec.key for spec in nb.declaration.check_specs),
                job_cluster=nb.declaration.job_cluster,
                environment=nb.declaration.environment,
                max_retries=nb.declaration.max_retries,
                min_retry_interval_millis=nb.declaration.min_retry_interval_millis,
                retry_on_timeout=nb.declaration.retry_on_timeout,
            )
            for nb in self._notebooks
        ]

    def files(self) -> dict[str, WorkspaceFile]:
        files = {
            nb.declaration.workspace_relative_path: _workspace_file(nb.declaration.workspace_relative_path, nb.file)
            for nb in self._notebooks
        }
        for nb in self._notebooks:  # helpers others %run sit next to them, so relative %run paths resolve
            for rel, helper in nb.helpers.items():
                path = posixpath.join("notebooks", posixpath.splitext(rel)[0])
                files.setdefault(path, _workspace_file(path, helper))
        return files

    def _repo_path(self, declaration: NotebookAsset) -> str:
        """The notebook's path in the Git repository holding the notebooks folder (no extension, as
        Databricks takes notebook paths of a Git source)."""
        folder = self.notebooks_dir.resolve()
        root = next((p for p in (folder, *folder.parents) if (p / ".git").exists()), None)
        if root is None:
            raise WorkflowDefinitionError(
                f"The workflow deploys from a Git source, but the notebooks folder {self.notebooks_dir} is not inside "
                "a Git repository (no .git above it)."
            )
        rel = (folder / declaration.notebook).relative_to(root).as_posix()
        return posixpath.splitext(rel)[0]

    # -- execution ------------------------------------------------------------------------------
    def run_overrides(self, selection: Selection, target: DeployTarget) -> Mapping[str, Any]:
        return {}  # notebooks read the run's job parameters; nothing else narrows them

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        notebook_task = dict(task.settings["notebook_task"])
        notebook_task["base_parameters"] = {**notebook_task.get("base_parameters", {}), **selection.parameters}
        return {"notebook_task": notebook_task}

    def report(
        self, finished: TaskFinished, selection: Selection, target: DeployTarget, metadata: Mapping[str, Any]
    ) -> TaskReport:
        nb = self._by_task_key[finished.task_key]
        key = nb.declaration.asset_key
        report = TaskReport()
        if key not in selection.assets:
            return report
        if not finished.succeeded:
            report.failures[key] = f"{finished.result_state}: {self._explain_error(nb, finished, target)}"
            return report
        exit_value = (
            finished.output.notebook_output.result if finished.output and finished.output.notebook_output else None
        )
        report.events.append(
            dg.MaterializeResult(
                asset_key=key, metadata={**metadata, **exit_value_metadata(exit_value), **self._table(nb, target)}
            )
        )
        return report

    # -- helpers --------------------------------------------------------------------------------
    def _pipes_parameters(self, declaration: NotebookAsset) -> dict[str, str]:
        """A pipes-enabled task's channel folder, static in the job spec (see sources/pipes_layout.py)."""
        if not declaration.pipes:
            return {}
        return {CHANNEL_PARAMETER: self.pipes_location.channel_parameter(declaration.task_key)}

    @staticmethod
    def _libraries(declaration: NotebookAsset) -> list[str]:
        declared = list(declaration.libraries)
        if declaration.pipes and not any(p.split("=")[0].strip().lower() == "dagster-pipes" for p in declared):
            declared.append(dagster_pipes_requirement())
        return declared

    @staticmethod
    def _table(nb: _LoadedNotebook, target: DeployTarget) -> dict[str, Any]:
        """The table's name on the event; the workflow adds its columns and row count from the workspace."""
        return table_metadata(nb.declaration.table, target)

    def _spec(self, nb: _LoadedNotebook) -> dg.AssetSpec:
        d = nb.declaration
        return dg.AssetSpec(
            key=d.asset_key,
            deps=d.dep_keys,
            group_name=d.group,
            owners=list(d.owners),
            description=d.description or nb.file.first_markdown() or f"Databricks notebook {d.notebook}",
            code_version=nb.code_version,
            kinds={"databricks", "notebook"},
            tags=dict(d.tags),
            skippable=True,
            metadata={
                "notebook": d.notebook,
                "databricks_task_key": d.task_key,
                # A table without "{catalog}" is known before any run: the catalog shows it from the start.
                **({TABLE_NAME: d.table} if d.table and resolve_table_name(d.table, None) else {}),
            },
        )

    @staticmethod
    def _explain_error(nb: _LoadedNotebook, finished: TaskFinished, target: DeployTarget) -> str:
        """A notebook deleted from the workspace after deploy: say so, and that the next deploy
        restores it (the deployer checks that deployed notebooks are still there before each run)."""
        if not _MISSING_NOTEBOOK.search(finished.error):
            return finished.error
        return (
            f"notebook {posixpath.join(target.workspace_root, nb.declaration.workspace_relative_path)} is missing in the workspace (deleted after deploy?); "
            f"the next materialization uploads it again. Databricks said: {finished.error}"
        )


def _workspace_file(path: str, file: NotebookFile) -> WorkspaceFile:
    """A notebook file as deployed: imported with its format (SOURCE or JUPYTER) and language."""
    return WorkspaceFile(
        path, file.text.encode(), is_notebook=True, language=file.language, notebook_format=file.format
    )


def _check_workspace_paths(notebooks_dir: Path, notebooks: Sequence[_LoadedNotebook]) -> None:
    """Two files that become one workspace notebook (`orders.py` and `orders.sql` are both `orders`)."""
    seen: dict[str, str] = {}
    for nb in notebooks:
        for rel in (posixpath.normpath(nb.declaration.notebook), *nb.helpers):
            path = posixpath.splitext(rel)[0]
            if seen.setdefault(path, rel) != rel:
                raise WorkflowDefinitionError(
                    f"Notebooks {notebooks_dir / seen[path]} and {notebooks_dir / rel} would both be deployed as "
                    f"notebook '{path}' (the workspace drops the extension); rename one of them."
                )


def exit_value_metadata(result: str | None) -> dict[str, Any]:
    """A notebook's exit value: a JSON object's keys become entries; anything else stays text."""
    if result is None or result == "":
        return {}
    try:
        value = json.loads(result)
    except ValueError:
        return {"notebook_exit_value": dg.MetadataValue.text(result)}
    if not isinstance(value, dict):
        return {"notebook_exit_value": dg.MetadataValue.text(result)}
    meta: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, bool) or v is None:
            meta[str(k)] = dg.MetadataValue.text(str(v))
        elif isinstance(v, (int, float, str)):
            meta[str(k)] = v
        else:
            meta[str(k)] = dg.MetadataValue.json(v)
    return meta
