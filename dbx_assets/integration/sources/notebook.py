"""Notebooks as assets: a small typed declaration per notebook, a translator deciding how a
declaration becomes an asset spec (one override point per concern, like dagster-dbt's
`DagsterDbtTranslator`), and the task source that turns a folder's declared notebooks into asset
specs, notebook tasks and events."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError, task_key_for
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskReport
from dbx_assets.integration.sources.notebook_file import NotebookFile, read_notebook, read_run_dependencies
from dbx_assets.integration.sources.pipes_layout import (
    CHANNEL_PARAMETER,
    DEFAULT_PIPES_ROOT,
    PipesLocation,
    dagster_pipes_requirement,
)
from dbx_assets.integration.sources.task_assets import TaskAsset, table_metadata
from dbx_assets.integration.tables import TABLE_NAME, resolve_table_name, validate_table_name

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from dbx_assets.integration.jobs.runner import TaskFinished


# How Databricks (and the local workspace) report a task whose notebook path does not exist.
_MISSING_NOTEBOOK = re.compile(
    r"Notebook not found|Unable to access the notebook|RESOURCE_DOES_NOT_EXIST", re.IGNORECASE
)


@dataclass(frozen=True, kw_only=True)
class NotebookAsset(TaskAsset):
    """One notebook materializing one asset. Takes `TaskAsset`'s fields (key, deps, group, owners,
    description, tags, table, libraries, job_cluster, environment, the retry policy), keyword only, and:

    notebook:    file in the notebooks folder, e.g. "ingest_orders.py": a SOURCE notebook (.py, .sql,
                 .scala, .r, with its language's header) or an .ipynb
    params:      base_parameters (widgets); job parameters (partition_key, ...) take precedence, and so
                 do `deployment`, `catalog` and `schema`, which every task gets from its deployment
    pipes:       the notebook reports through Dagster Pipes (dagster-pipes): it gets its own context
                 and message channel (the `dagster_pipes_channel` widget) and dagster-pipes as a library
    checks:      asset checks the notebook reports through Pipes (names or dg.AssetCheckSpec)
    """

    notebook: str
    params: Mapping[str, str] = field(default_factory=dict)
    pipes: bool = False
    checks: Sequence[str | dg.AssetCheckSpec] = ()

    @property
    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return [dg.AssetCheckSpec(name=c, asset=self.asset_key) if isinstance(c, str) else c for c in self.checks]

    @property
    def workspace_relative_path(self) -> str:
        """Notebooks lose their extension in the workspace, as Databricks does on import."""
        return posixpath.join("notebooks", posixpath.splitext(self.notebook)[0])


@dataclass(frozen=True)
class NotebookProps:
    """What a `NotebookTranslator` sees of one declared notebook (read at definitions load).

    declaration:    the `NotebookAsset` as declared
    path:           the notebook file on disk
    first_markdown: the text of its first `%md` cell, or None
    """

    declaration: NotebookAsset
    path: Path
    first_markdown: str | None = None

    @property
    def notebook(self) -> str:
        """The notebook's path in the notebooks folder, as declared: "sales/ingest_orders.py"."""
        return self.declaration.notebook

    @property
    def folder(self) -> str:
        """The folder it sits in inside the notebooks folder ("sales"; "" at the top)."""
        return posixpath.dirname(self.declaration.notebook)

    @property
    def name(self) -> str:
        """Its file name without extension ("ingest_orders")."""
        return posixpath.splitext(posixpath.basename(self.declaration.notebook))[0]


class NotebookTranslator:
    """How a declared notebook becomes a Dagster asset spec: one method per concern, each given the
    notebook's `NotebookProps`. Subclass it and override what a team's conventions decide (a key
    prefix from the folder, a group from the file name, owners from a lookup), then pass it as
    `NotebookTasks(..., translator=MyTranslator())`. The defaults are the declaration's own fields.

    The task key follows the translated asset key. What the library owns stays out of it: the
    notebook's code version (hash of its source and what it %runs), its kinds, the
    `databricks_task_key` and static table name metadata.
    """

    def get_asset_key(self, notebook: NotebookProps) -> dg.AssetKey:
        return dg.AssetKey.from_user_string(notebook.declaration.key)

    def get_deps(self, notebook: NotebookProps) -> Sequence[dg.AssetKey]:
        """Upstream asset keys: other notebooks' (as translated), dbt models', or external ones."""
        return [dg.AssetKey.from_user_string(d) for d in notebook.declaration.deps]

    def get_group_name(self, notebook: NotebookProps) -> str | None:
        return notebook.declaration.group

    def get_owners(self, notebook: NotebookProps) -> Sequence[str]:
        return list(notebook.declaration.owners)

    def get_tags(self, notebook: NotebookProps) -> Mapping[str, str]:
        return dict(notebook.declaration.tags)

    def get_description(self, notebook: NotebookProps) -> str | None:
        declared = notebook.declaration
        return declared.description or notebook.first_markdown or f"Databricks notebook {declared.notebook}"

    def get_metadata(self, notebook: NotebookProps) -> Mapping[str, Any]:
        return {"notebook": notebook.declaration.notebook}


def _as_key(value: Any, where: str) -> dg.AssetKey:
    if isinstance(value, dg.AssetKey):
        return value
    if isinstance(value, str):
        return dg.AssetKey.from_user_string(value)
    if isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value):
        return dg.AssetKey(list(value))
    raise WorkflowDefinitionError(f"{where} returned {value!r}; return a dg.AssetKey (or a 'prefix/name' string).")


@dataclass(frozen=True)
class _LoadedNotebook:
    """A declared notebook, read from disk and translated: what its spec, task and events use."""

    declaration: NotebookAsset
    file: NotebookFile
    helpers: Mapping[str, NotebookFile]  # what it %runs, by path in the folder
    # what the translator decided
    asset_key: dg.AssetKey
    dep_keys: tuple[dg.AssetKey, ...]
    group: str | None
    owners: tuple[str, ...]
    tags: Mapping[str, str]
    description: str | None
    metadata: Mapping[str, Any]
    check_specs: tuple[dg.AssetCheckSpec, ...]

    @property
    def task_key(self) -> str:
        return task_key_for(self.asset_key.path)

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
        translator: NotebookTranslator | None = None,
        include: Sequence[str] = (),
    ):
        """pipes_root: where pipes-enabled notebooks' channels live, `dbfs:/...` or
        `/Volumes/<catalog>/<schema>/<volume>/...` (one folder per Dagster run and task below it).
        translator: how each declaration becomes an asset spec (default: `NotebookTranslator()`, the
        declaration's own fields).
        include: more files of the folder (globs, e.g. "src/**/*.py") deployed as workspace files at the
        same relative paths next to the notebooks, so a notebook importing its project's modules (through
        its working directory, the notebook's folder, as on Databricks) finds them."""
        if translator is not None and not isinstance(translator, NotebookTranslator):
            raise WorkflowDefinitionError(
                f"NotebookTasks(translator=...) takes a NotebookTranslator (or a subclass) instance, "
                f"got {type(translator).__name__}."
            )
        self.notebooks_dir = Path(notebooks_dir)
        self.pipes_location = PipesLocation(pipes_root)
        self.translator = translator or NotebookTranslator()
        for nb in declarations:
            if nb.table is not None:
                validate_table_name(nb.table, f"Notebook asset '{nb.key}'")
            if nb.checks and not nb.pipes:
                raise WorkflowDefinitionError(
                    f"Notebook asset '{nb.key}' declares checks, which a notebook reports through Dagster Pipes: "
                    "set pipes=True and report them with pipes.report_asset_check(...)."
                )
        self._notebooks = [self._load(d) for d in declarations]
        declared = {nb.declaration.notebook for nb in self._notebooks}
        self._included: dict[str, bytes] = {}
        self._included_version = ""
        for pattern in include:
            for path in sorted(self.notebooks_dir.glob(pattern)):
                rel = path.relative_to(self.notebooks_dir).as_posix()
                if path.is_file() and rel not in declared and "__pycache__" not in path.parts:
                    self._included[rel] = path.read_bytes()
        if self._included:  # a notebook's code version also changes when a module it may import does
            listing = "".join(f"{rel}\0{hashlib.sha256(c).hexdigest()}\n" for rel, c in sorted(self._included.items()))
            self._included_version = hashlib.sha256(listing.encode()).hexdigest()[:16]
        seen: dict[dg.AssetKey, str] = {}
        for loaded in self._notebooks:
            if loaded.asset_key in seen:
                raise WorkflowDefinitionError(
                    f"Asset key '{loaded.asset_key.to_user_string()}' is declared twice (notebooks "
                    f"{seen[loaded.asset_key]} and {loaded.declaration.notebook}). Give each notebook asset its own key."
                )
            seen[loaded.asset_key] = loaded.declaration.notebook
        _check_workspace_paths(self.notebooks_dir, self._notebooks)
        self._by_task_key = {nb.task_key: nb for nb in self._notebooks}

    def _load(self, declaration: NotebookAsset) -> _LoadedNotebook:
        """Read the notebook (and what it %runs) and translate it: a missing or malformed file raises here."""
        file = read_notebook(self.notebooks_dir / declaration.notebook)
        helpers = read_run_dependencies(self.notebooks_dir, declaration.notebook)
        props = NotebookProps(declaration, self.notebooks_dir / declaration.notebook, file.first_markdown())
        t = self.translator
        where = f"{type(t).__name__}.%s for notebook {declaration.notebook}"
        key = _as_key(t.get_asset_key(props), where % "get_asset_key")
        return _LoadedNotebook(
            declaration=declaration,
            file=file,
            helpers=helpers,
            asset_key=key,
            dep_keys=tuple(_as_key(d, where % "get_deps") for d in t.get_deps(props)),
            group=t.get_group_name(props),
            owners=tuple(t.get_owners(props) or ()),
            tags=dict(t.get_tags(props) or {}),
            description=t.get_description(props),
            metadata=dict(t.get_metadata(props) or {}),
            check_specs=tuple(self._checks(declaration, key)),
        )

    @staticmethod
    def _checks(declaration: NotebookAsset, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        """The declared checks, on the asset's (translated) key: a check declared on the declared key
        follows the asset; one on any other asset is an error."""
        checks = []
        for check in declaration.check_specs:
            if check.asset_key == declaration.asset_key and key != declaration.asset_key:
                check = check.replace_key(dg.AssetCheckKey(key, check.name))
            if check.asset_key != key:
                raise WorkflowDefinitionError(
                    f"Notebook asset '{declaration.key}' declares check '{check.name}' on another asset "
                    f"({check.asset_key.to_user_string()}); a notebook's checks are on its own asset."
                )
            checks.append(check)
        return checks

    @property
    def declarations(self) -> list[NotebookAsset]:
        return [nb.declaration for nb in self._notebooks]

    # -- declaration ----------------------------------------------------------------------------
    def asset_specs(self) -> list[dg.AssetSpec]:
        return [self._spec(nb) for nb in self._notebooks]

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return [spec for nb in self._notebooks for spec in nb.check_specs]

    def tasks(self, target: DeployTarget) -> list[SourceTask]:
        return [
            SourceTask(
                task_key=nb.task_key,
                asset_keys=frozenset({nb.asset_key}),
                upstream_keys=frozenset(nb.dep_keys),
                settings={
                    "notebook_task": {
                        "notebook_path": self._repo_path(nb.declaration)
                        if target.from_git
                        else posixpath.join(target.workspace_root, nb.declaration.workspace_relative_path),
                        # The deployment's parameters win: they keep deployments' tables apart.
                        "base_parameters": {
                            **nb.declaration.params,
                            **target.task_parameters,
                            **self._pipes_parameters(nb),
                        },
                        "source": "GIT" if target.from_git else "WORKSPACE",
                    }
                },
                libraries=tuple({"pypi": {"package": p}} for p in self._libraries(nb.declaration)),
                check_keys=frozenset(spec.key for spec in nb.check_specs),
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
        for rel, content in self._included.items():
            path = posixpath.join("notebooks", rel)
            files.setdefault(path, WorkspaceFile(path, content))
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
        key = nb.asset_key
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
    def _pipes_parameters(self, nb: _LoadedNotebook) -> dict[str, str]:
        """A pipes-enabled task's channel folder, static in the job spec (see sources/pipes_layout.py)."""
        if not nb.declaration.pipes:
            return {}
        return {CHANNEL_PARAMETER: self.pipes_location.channel_parameter(nb.task_key)}

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
            key=nb.asset_key,
            deps=nb.dep_keys,
            group_name=nb.group,
            owners=list(nb.owners),
            description=nb.description,
            code_version=(
                hashlib.sha256(f"{nb.code_version}:{self._included_version}".encode()).hexdigest()[:16]
                if self._included_version
                else nb.code_version
            ),
            kinds={"databricks", "notebook"},
            tags=dict(nb.tags),
            skippable=True,
            metadata={
                **nb.metadata,
                "databricks_task_key": nb.task_key,
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
