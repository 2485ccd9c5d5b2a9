"""A dbt project as a task source: its models as assets (tests as checks), built by one
Databricks `dbt_task` on a SQL warehouse.

Specs come from the project's manifest (no dbt run at load time) through dagster-dbt's own
`DagsterDbtTranslator` (keys, groups, owners, metadata, tags, descriptions, partitions: pass yours as
`dagster_dbt_translator=`, as to `@dbt_assets`). The job's dbt task always
builds everything; each run narrows it with run-now's `dbt_commands`, so the job spec does not
change with the selection. The task follows Databricks' production contract: `warehouse_id`
(+ `catalog`/`schema`) means Databricks generates the dbt profile and runs dbt's SQL on that
warehouse; `dbt-databricks` is pinned in the task's libraries. The project's own
`profiles.yml` is for `dbt parse` and local CLI use only. Makes no Databricks calls itself.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import dagster as dg
import requests
from dagster_dbt import DagsterDbtTranslator, DbtProject

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.run_results import RunResultsTranslator, run_results_from_artifacts
from dbx_assets.integration.dbt.specs import SpecsCache, build_all_specs
from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskReport

if TYPE_CHECKING:  # a step's: the runner (and the SDK) load when a step runs, not with the definitions
    from dbx_assets.integration.jobs.runner import TaskFinished

DEFAULT_TASK_KEY = "dbt_build"
# Databricks installs this on the task's compute; it generates the profile for the warehouse.
DBT_DATABRICKS_LIBRARY = {"pypi": {"package": "dbt-databricks>=1.11,<1.12"}}


class UnknownDbtAssetError(KeyError):
    """An asset or check key that is not part of the dbt project."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class _Translator(DagsterDbtTranslator):
    """dagster-dbt's defaults, plus the code location's partitions on every dbt asset."""

    def __init__(self, partitions_def: dg.PartitionsDefinition | None):
        super().__init__()
        self._partitions_def = partitions_def

    def get_partitions_def(self, dbt_resource_props: Mapping[str, Any]) -> dg.PartitionsDefinition | None:
        return self._partitions_def


class DbtProjectTasks:
    """A dbt project: asset specs from its manifest, one dbt task building them.

    project:     a `dagster_dbt.DbtProject` (its project_dir, target and profiles_dir are used to read
                 and, under `dagster dev`, re-parse the manifest; its manifest is `<project_dir>/target/
                 manifest.json`) or the project directory (a path)
    dagster_dbt_translator: a `dagster_dbt.DagsterDbtTranslator` deciding each model's asset key, group,
                 owners, metadata, tags, description, code version and partitions, and which dbt tests
                 become checks (its settings), exactly as `@dbt_assets` uses it. A source's key is the
                 translator's too: map dbt sources to the notebook assets that write them (by default
                 `meta.dagster.asset_key` on the source) so the graph stays connected.
    partitions_def: set on every dbt asset (the workflow's partitions); with a translator whose own
                 `get_partitions_def` returns one, that one must be the same
    schema:      where models land when the deployment names no schema (the dbt task's `schema`)
    task_key:    the job task's key
    job_cluster: which of the workflow's job clusters runs dbt (default: the workflow's default compute)
    environment: which of the workflow's serverless environments runs dbt instead (not with job_cluster);
                 the pinned dbt-databricks then goes into that environment's dependencies
    dbt_vars:    dbt's `--vars` for parsing and every build (the run's job parameters are added over them)
    """

    needs_sql_warehouse = True

    def __init__(
        self,
        project: DbtProject | Path | str,
        *,
        dagster_dbt_translator: DagsterDbtTranslator | None = None,
        partitions_def: dg.PartitionsDefinition | None = None,
        schema: str = "default",
        task_key: str = DEFAULT_TASK_KEY,
        job_cluster: str | None = None,
        environment: str | None = None,
        dbt_vars: Mapping[str, Any] | None = None,
    ):
        self.dbt_vars: dict[str, Any] = dict(dbt_vars or {})
        if dagster_dbt_translator is not None and not isinstance(dagster_dbt_translator, DagsterDbtTranslator):
            raise WorkflowDefinitionError(
                "DbtProjectTasks(dagster_dbt_translator=...) takes a dagster_dbt.DagsterDbtTranslator (or a subclass) "
                f"instance, got {type(dagster_dbt_translator).__name__}."
            )
        self.dbt_project = project if isinstance(project, DbtProject) else None
        self.project_dir = Path(project.project_dir if isinstance(project, DbtProject) else project).resolve()
        if not (self.project_dir / "dbt_project.yml").exists():
            raise dbt_manifest.DbtManifestError(f"No dbt project at {self.project_dir} (dbt_project.yml is missing).")
        loaded = self._load_manifest()
        self.manifest: Mapping[str, Any] = loaded.data
        self.schema = schema
        self.task_key = task_key
        self.job_cluster = job_cluster
        self.environment = environment
        self.dagster_dbt_translator = dagster_dbt_translator
        built = build_all_specs(
            loaded.data,
            dagster_dbt_translator if dagster_dbt_translator is not None else _Translator(partitions_def),
            project=self.dbt_project,
            cache=SpecsCache.next_to(loaded),
        )
        self.specs = built.specs
        if dagster_dbt_translator is not None and partitions_def is not None:
            self.specs = [self._partitioned(spec, partitions_def) for spec in self.specs]
        self.checks = built.checks
        self.project_name: str = self.manifest.get("metadata", {}).get("project_name") or self.project_dir.name
        self._unique_id_by_key = dict(built.unique_id_by_key)
        self._unique_id_by_check = dict(built.unique_id_by_check)
        self._results = RunResultsTranslator(
            self.manifest,
            key_by_unique_id={uid: key for key, uid in self._unique_id_by_key.items()},
            check_key_by_unique_id={uid: key for key, uid in self._unique_id_by_check.items()},
        )

    def _load_manifest(self) -> dbt_manifest.LoadedManifest:
        project = self.dbt_project
        if project is None:
            return dbt_manifest.load_manifest(self.project_dir, dbt_vars=self.dbt_vars)
        expected = self.project_dir / dbt_manifest.TARGET_DIR / dbt_manifest.MANIFEST_NAME
        if Path(project.manifest_path).resolve() != expected:
            raise dbt_manifest.DbtManifestError(
                f"DbtProject {project.name} puts its manifest at {project.manifest_path}; DbtProjectTasks reads and "
                f"prepares it at {expected} (target_path='target', dbt's default). Use DbtProject(..., "
                "target_path='target')."
            )
        if project.profile:
            raise dbt_manifest.DbtManifestError(
                f"DbtProject {project.name} names profile {project.profile!r}; DbtProjectTasks parses with the "
                "project's own profile (dbt_project.yml's `profile:`). Set it there, or leave DbtProject(profile=...) unset."
            )
        profiles_dir = Path(project.profiles_dir).resolve()
        return dbt_manifest.load_manifest(
            self.project_dir,
            target=project.target,
            profiles_dir=None if profiles_dir == self.project_dir else profiles_dir,
            dbt_vars=self.dbt_vars,
        )

    @staticmethod
    def _partitioned(spec: dg.AssetSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetSpec:
        if spec.partitions_def is None:
            return spec.replace_attributes(partitions_def=partitions_def)
        if spec.partitions_def != partitions_def:
            raise WorkflowDefinitionError(
                f"dbt asset {spec.key.to_user_string()} has partitions from the translator's get_partitions_def "
                "that differ from DbtProjectTasks(partitions_def=...); set them in one place."
            )
        return spec

    # -- the graph ------------------------------------------------------------------------------
    def model_keys(self) -> set[dg.AssetKey]:
        return set(self._unique_id_by_key)

    def check_keys(self) -> set[dg.AssetCheckKey]:
        return set(self._unique_id_by_check)

    def upstream_keys(self) -> set[dg.AssetKey]:
        """Keys outside the dbt project that dbt sources map to (e.g. notebook assets)."""
        return {dep.asset_key for spec in self.specs for dep in spec.deps} - self.model_keys()

    # -- TaskSource: declaration ------------------------------------------------------------------
    def asset_specs(self) -> Sequence[dg.AssetSpec]:
        return self.specs

    def check_specs(self) -> Sequence[dg.AssetCheckSpec]:
        return self.checks

    def tasks(self, target: DeployTarget) -> list[SourceTask]:
        if not target.sql_warehouse_id:
            raise WorkflowDefinitionError(
                f"The dbt task of project {self.project_name} needs a SQL warehouse: set the resource's "
                "sql_warehouse (an id or a name) or DATABRICKS_SQL_WAREHOUSE."
            )
        dbt_task: dict[str, Any] = {
            "project_directory": f"{target.workspace_root}/dbt_project",
            "commands": ["dbt build"],
            "warehouse_id": target.sql_warehouse_id,
            "schema": target.schema or self.schema,
            "source": "WORKSPACE",
        }
        if target.catalog:
            dbt_task["catalog"] = target.catalog
        return [
            SourceTask(
                task_key=self.task_key,
                asset_keys=frozenset(self.model_keys()),
                upstream_keys=frozenset(self.upstream_keys()),
                check_keys=frozenset(self.check_keys()),
                settings={"dbt_task": dbt_task},
                libraries=(DBT_DATABRICKS_LIBRARY,),
                job_cluster=self.job_cluster,
                environment=self.environment,
            )
        ]

    def files(self) -> dict[str, WorkspaceFile]:
        return {
            f"dbt_project/{rel}": WorkspaceFile(f"dbt_project/{rel}", content)
            for rel, content in dbt_manifest.project_files(self.project_dir).items()
        }

    # -- TaskSource: execution --------------------------------------------------------------------
    def run_overrides(self, selection: Selection, target: DeployTarget) -> Mapping[str, Any]:
        command = self.selection_command(selection)
        return {"dbt_commands": [command]} if command else {}

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        command = self.selection_command(selection)
        dbt_task = dict(task.settings["dbt_task"])
        if command:
            dbt_task["commands"] = [command]
        return {"dbt_task": dbt_task}

    def report(
        self, finished: TaskFinished, selection: Selection, target: DeployTarget, metadata: Mapping[str, Any]
    ) -> TaskReport:
        models = selection.assets & self.model_keys()
        report = TaskReport()
        dbt_output = finished.output.dbt_output if finished.output else None
        if dbt_output is None or not dbt_output.artifacts_link:
            for key in models:
                report.failures[key] = f"dbt task {finished.result_state}: {finished.error}"
            return report
        # Streamed: run_results.json is read as the archive arrives; the manifest is known already.
        with requests.get(
            dbt_output.artifacts_link, headers=dbt_output.artifacts_headers or {}, timeout=60, stream=True
        ) as response:
            response.raise_for_status()
            response.raw.decode_content = True  # a Content-Encoding, if any; the tar's own gzip stays
            run_results = run_results_from_artifacts(cast(IO[bytes], response.raw))
        events, failures = self._results.events(
            run_results, selected_models=models, selected_checks=selection.checks & self.check_keys(), metadata=metadata
        )
        report.events.extend(events)
        report.failures.update(failures)
        return report

    # -- the dbt command --------------------------------------------------------------------------
    def selection_command(self, selection: Selection) -> str | None:
        """`dbt build` of exactly the selected models and tests, or None when none is selected."""
        models = selection.assets & self.model_keys()
        checks = selection.checks & self.check_keys()
        if not models and not checks:
            return None
        return self.build_command(models, checks, vars={**self.dbt_vars, **selection.parameters})

    def select_args(self, selected: Iterable[dg.AssetKey]) -> list[str]:
        """dbt node selectors (`fqn:...`) for exactly these models, sorted."""
        return sorted(self._fqn_selector(self._model_unique_id(key)) for key in set(selected))

    def check_select_args(self, selected_checks: Iterable[dg.AssetCheckKey]) -> list[str]:
        """dbt node selectors for exactly these tests, sorted."""
        return sorted(self._fqn_selector(self._test_unique_id(key)) for key in set(selected_checks))

    def build_command(
        self,
        selected_models: Iterable[dg.AssetKey],
        selected_checks: Iterable[dg.AssetCheckKey],
        *,
        vars: Mapping[str, Any],
    ) -> str:
        """`dbt build` of exactly these models and tests.

        `--indirect-selection empty` stops dbt adding tests the user did not select
        (dbt's default, eager, would run every test touching a selected model).
        """
        selectors = self.select_args(selected_models) + self.check_select_args(selected_checks)
        if not selectors:
            raise ValueError(f"Nothing to build: no model or test of dbt project {self.project_name} was selected.")
        parts = ["dbt", "build", "--select", *selectors, "--indirect-selection", "empty"]
        if vars:
            parts += ["--vars", json.dumps(dict(vars), sort_keys=True)]
        return shlex.join(parts)

    def _model_unique_id(self, key: dg.AssetKey) -> str:
        try:
            return self._unique_id_by_key[key]
        except KeyError:
            known = ", ".join(sorted(k.to_user_string() for k in self._unique_id_by_key))
            raise UnknownDbtAssetError(
                f"Asset {key.to_user_string()} is not a model of dbt project {self.project_name} "
                f"({self.project_dir}); its models are: {known}. Select it through its own asset type, "
                f"or re-run `{dbt_manifest.prepare_command(self.project_dir)}` if the model is new."
            ) from None

    def _test_unique_id(self, key: dg.AssetCheckKey) -> str:
        try:
            return self._unique_id_by_check[key]
        except KeyError:
            raise UnknownDbtAssetError(
                f"Asset check {key.to_user_string()} is not a test of dbt project {self.project_name} "
                f"({self.project_dir}). Re-run `{dbt_manifest.prepare_command(self.project_dir)}` if the test is new."
            ) from None

    def _fqn_selector(self, unique_id: str) -> str:
        return "fqn:" + ".".join(self.manifest["nodes"][unique_id]["fqn"])
