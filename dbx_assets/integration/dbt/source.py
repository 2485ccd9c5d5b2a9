"""A dbt project as a task source: its models as assets (tests as checks), built by one
Databricks `dbt_task` on a SQL warehouse.

Specs come from the project's manifest (no dbt run at load time). The job's dbt task always
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
from typing import Any

import dagster as dg
import requests
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.run_results import RunResultsTranslator, run_results_from_artifacts
from dbx_assets.integration.dbt.specs import SpecsCache, build_all_specs
from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.jobs.runner import TaskFinished
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask, TaskReport

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
    """The dbt project at `project_dir`: asset specs from its manifest, one dbt task building them.

    schema:      where models land when the deployment names no schema (the dbt task's `schema`)
    task_key:    the job task's key
    job_cluster: which of the workflow's job clusters runs dbt (default: the workflow's default compute)
    environment: which of the workflow's serverless environments runs dbt instead (not with job_cluster);
                 the pinned dbt-databricks then goes into that environment's dependencies
    """

    needs_sql_warehouse = True

    def __init__(
        self,
        project_dir: Path | str,
        *,
        partitions_def: dg.PartitionsDefinition | None = None,
        schema: str = "default",
        task_key: str = DEFAULT_TASK_KEY,
        job_cluster: str | None = None,
        environment: str | None = None,
    ):
        self.project_dir = Path(project_dir).resolve()
        if not (self.project_dir / "dbt_project.yml").exists():
            raise dbt_manifest.DbtManifestError(f"No dbt project at {self.project_dir} (dbt_project.yml is missing).")
        loaded = dbt_manifest.load_manifest(self.project_dir)
        self.manifest: Mapping[str, Any] = loaded.data
        self.schema = schema
        self.task_key = task_key
        self.job_cluster = job_cluster
        self.environment = environment
        self.specs, self.checks = build_all_specs(
            loaded.data, _Translator(partitions_def), cache=SpecsCache.next_to(loaded)
        )
        self.project_name: str = self.manifest.get("metadata", {}).get("project_name") or self.project_dir.name
        self._unique_id_by_key = {s.key: s.metadata[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY] for s in self.specs}
        self._unique_id_by_check = {c.key: (c.metadata or {})[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY] for c in self.checks}
        self._results = RunResultsTranslator(
            self.manifest,
            key_by_unique_id={uid: key for key, uid in self._unique_id_by_key.items()},
            check_key_by_unique_id={uid: key for key, uid in self._unique_id_by_check.items()},
        )

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
        response = requests.get(dbt_output.artifacts_link, headers=dbt_output.artifacts_headers or {}, timeout=60)
        response.raise_for_status()
        run_results = run_results_from_artifacts(response.content)
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
        return self.build_command(models, checks, vars=selection.parameters)

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
        vars: Mapping[str, str],
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
