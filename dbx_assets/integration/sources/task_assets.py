"""What the task sources that run one task per declared asset share (Python files, Python wheels,
and the parts notebooks have in common with them): the declaration fields every such asset takes,
its asset spec, its job task, the `{catalog}`-style placeholders of its parameters, its table
metadata and the Dagster events for its finished task.

A source built on `OneTaskPerAsset` supplies only what is its own: the task's settings block
(`spark_python_task`, `python_wheel_task`, ...), its files, description, kinds and code version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import dagster as dg

from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError, task_key_for
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskReport
from dbx_assets.integration.tables import TABLE_NAME, TABLE_WARNING, resolve_table_name, validate_table_name

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from dbx_assets.integration.jobs.runner import TaskFinished


# What a task's parameters may name with single braces: the deploy target's values. Databricks' own
# dynamic value references ({{job.parameters.x}}, {{job.run_id}}, ...) keep their double braces.
PLACEHOLDERS = ("catalog", "schema", "deployment")
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_JOB_PARAMETER_REF = re.compile(r"\{\{\s*job\.parameters\.([\w.-]+)\s*\}\}")


class TaskAssetLike(Protocol):
    """The declaration fields the helpers below read; `TaskAsset` and `NotebookAsset` both have them."""

    @property
    def key(self) -> str: ...
    @property
    def deps(self) -> Sequence[str]: ...
    @property
    def group(self) -> str: ...
    @property
    def owners(self) -> Sequence[str]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def table(self) -> str | None: ...
    @property
    def job_cluster(self) -> str | None: ...
    @property
    def environment(self) -> str | None: ...
    @property
    def max_retries(self) -> int | None: ...
    @property
    def min_retry_interval_millis(self) -> int | None: ...
    @property
    def retry_on_timeout(self) -> bool | None: ...
    @property
    def asset_key(self) -> dg.AssetKey: ...
    @property
    def dep_keys(self) -> list[dg.AssetKey]: ...
    @property
    def task_key(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class TaskAsset:
    """The fields every one-task asset declaration takes, as `NotebookAsset` names them.

    key:         asset key, "name" or "prefix/name" (the task key follows it)
    deps:        upstream asset keys (notebooks, dbt models, Python tasks, or declared external assets)
    table:       the Unity Catalog table it writes, "catalog.schema.table"; "{catalog}" is the deploy
                 target's catalog. Its materializations then carry the table's name, columns and row count.
    libraries:   pypi requirements installed for the task, e.g. ("requests==2.32.3",)
    job_cluster: which of the workflow's job clusters runs it (default: the workflow's default compute)
    environment: which of the workflow's serverless environments runs it instead (not with job_cluster)
    max_retries, min_retry_interval_millis, retry_on_timeout: the task's Databricks retry policy
                 (None: the job task leaves it unset)
    """

    key: str
    deps: Sequence[str] = ()
    group: str = "databricks"
    owners: Sequence[str] = ()
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    table: str | None = None
    libraries: Sequence[str] = ()
    job_cluster: str | None = None
    environment: str | None = None
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey.from_user_string(self.key)

    @property
    def dep_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey.from_user_string(d) for d in self.deps]

    @property
    def task_key(self) -> str:
        return task_key_for(self.asset_key.path)


# -- helpers any one-task-per-asset source can use ------------------------------------------------


def check_declarations(declarations: Sequence[TaskAssetLike], what: str, names: Sequence[str]) -> None:
    """At definitions load: each key declared once, each table a Unity Catalog name. `what` names the
    kind ("Python file asset"), `names` each declaration's file or entry point for the message."""
    seen: dict[dg.AssetKey, str] = {}
    for declaration, name in zip(declarations, names, strict=True):
        if declaration.asset_key in seen:
            raise WorkflowDefinitionError(
                f"Asset key '{declaration.key}' is declared twice ({seen[declaration.asset_key]} and {name}). "
                f"Give each {what} its own key."
            )
        seen[declaration.asset_key] = name
        if declaration.table is not None:
            validate_table_name(declaration.table, f"{what[0].upper()}{what[1:]} '{declaration.key}'")


def check_placeholders(values: Sequence[str], where: str) -> None:
    """At definitions load: a `{name}` in a parameter is one the deploy target fills in."""
    for value in values:
        for name in _PLACEHOLDER.findall(value):
            if name not in PLACEHOLDERS:
                raise WorkflowDefinitionError(
                    f"{where}: parameter {value!r} names {{{name}}}, which is not a placeholder; use "
                    f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} (the deploy target's), or Databricks' "
                    f"dynamic value references such as {{{{job.parameters.partition_key}}}}."
                )


def fill_placeholders(value: str, target: DeployTarget) -> str:
    """`{catalog}`, `{schema}`, `{deployment}` -> the deploy target's values ("" when it names none)."""
    values = {"catalog": target.catalog or "", "schema": target.schema or "", "deployment": target.deployment}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)


def fill_job_parameters(value: str, parameters: Mapping[str, str]) -> str:
    """`{{job.parameters.x}}` -> the selection's value of x: a one-time run (runs/submit) has no job
    parameters for Databricks to resolve them from."""
    return _JOB_PARAMETER_REF.sub(lambda m: str(parameters.get(m.group(1), m.group(0))), value)


def table_metadata(table: str | None, target: DeployTarget) -> dict[str, Any]:
    """The table's name on a materialization; the workflow adds its columns and row count."""
    if table is None:
        return {}
    name = resolve_table_name(table, target.catalog)
    if name is None:
        return {
            TABLE_WARNING: f"table {table} names the deploy target's catalog, but none is set: "
            "set DatabricksResource(catalog=...) or write the catalog into the asset's table"
        }
    return {TABLE_NAME: name}


def static_table_metadata(table: str | None) -> dict[str, Any]:
    """A table without "{catalog}" is known before any run: the catalog shows it from the start."""
    return {TABLE_NAME: table} if table and resolve_table_name(table, None) else {}


def task_asset_spec(
    declaration: TaskAssetLike,
    *,
    description: str,
    code_version: str,
    kinds: set[str],
    metadata: Mapping[str, Any],
) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=declaration.asset_key,
        deps=declaration.dep_keys,
        group_name=declaration.group,
        owners=list(declaration.owners),
        description=description,
        code_version=code_version,
        kinds=kinds,
        tags=dict(declaration.tags),
        skippable=True,
        metadata={
            **metadata,
            "databricks_task_key": declaration.task_key,
            **static_table_metadata(declaration.table),
        },
    )


def source_task(
    declaration: TaskAssetLike, settings: Mapping[str, Any], libraries: Sequence[Mapping[str, Any]]
) -> SourceTask:
    return SourceTask(
        task_key=declaration.task_key,
        asset_keys=frozenset({declaration.asset_key}),
        upstream_keys=frozenset(declaration.dep_keys),
        settings=settings,
        libraries=tuple(libraries),
        job_cluster=declaration.job_cluster,
        environment=declaration.environment,
        max_retries=declaration.max_retries,
        min_retry_interval_millis=declaration.min_retry_interval_millis,
        retry_on_timeout=declaration.retry_on_timeout,
    )


def pypi_libraries(requirements: Sequence[str]) -> list[dict[str, Any]]:
    return [{"pypi": {"package": p}} for p in requirements]


D = TypeVar("D", bound=TaskAsset)


class OneTaskPerAsset(Generic[D]):
    """A TaskSource whose every declaration is one asset materialized by one task; subclasses say
    what the task is (`_settings`, `_libraries`), what it deploys (`files`) and how its asset reads
    (`_description`, `_code_version`, `_metadata`, `kinds`)."""

    needs_sql_warehouse = False
    what = "asset"  # "Python file asset": how messages name a declaration
    kinds: frozenset[str] = frozenset({"databricks"})

    def __init__(self, declarations: Sequence[D], names: Sequence[str]):
        check_declarations(declarations, self.what, names)
        self._declarations = list(declarations)
        self._by_task_key = {d.task_key: d for d in self._declarations}

    @property
    def declarations(self) -> list[D]:
        return list(self._declarations)

    # -- what a subclass provides ------------------------------------------------------------------
    def _settings(self, declaration: D, target: DeployTarget) -> dict[str, Any]:
        raise NotImplementedError

    def _libraries(self, declaration: D, target: DeployTarget) -> list[dict[str, Any]]:
        return pypi_libraries(declaration.libraries)

    def _description(self, declaration: D) -> str:
        raise NotImplementedError

    def _code_version(self, declaration: D) -> str:
        raise NotImplementedError

    def _metadata(self, declaration: D) -> dict[str, Any]:
        return {}

    def files(self) -> Mapping[str, WorkspaceFile]:
        raise NotImplementedError

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        raise NotImplementedError

    # -- TaskSource ---------------------------------------------------------------------------------
    def asset_specs(self) -> list[dg.AssetSpec]:
        return [
            task_asset_spec(
                d,
                description=d.description or self._description(d),
                code_version=self._code_version(d),
                kinds=set(self.kinds),
                metadata=self._metadata(d),
            )
            for d in self._declarations
        ]

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return []

    def tasks(self, target: DeployTarget) -> list[SourceTask]:
        return [source_task(d, self._settings(d, target), self._libraries(d, target)) for d in self._declarations]

    def run_overrides(self, selection: Selection, target: DeployTarget) -> Mapping[str, Any]:
        return {}  # the tasks read the run's job parameters (or references to them); nothing narrows them

    def report(
        self, finished: TaskFinished, selection: Selection, target: DeployTarget, metadata: Mapping[str, Any]
    ) -> TaskReport:
        declaration = self._by_task_key[finished.task_key]
        report = TaskReport()
        if declaration.asset_key not in selection.assets:
            return report
        if not finished.succeeded:
            report.failures[declaration.asset_key] = f"{finished.result_state}: {finished.error}"
            return report
        report.events.append(
            dg.MaterializeResult(
                asset_key=declaration.asset_key,
                metadata={**metadata, **table_metadata(declaration.table, target)},
            )
        )
        return report
