"""dbt models as Dagster assets, built by one Databricks `dbt_task`.

Specs and check specs come from dagster-dbt's translator over the project's manifest
(no dbt run at load time). This module then answers what the workflow needs and
dagster-dbt does not provide for a *remote* dbt run: the dbt command for a selection,
the task payload, the files to sync, and events from the run's run_results.json.
It makes no Databricks calls.

    python -m dbx_assets.dbt prepare     # dbt parse -> dbt_project/target/manifest.json
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the CLI needs only dbt: don't pay for importing Dagster first
    from dbx_assets.dbt_manifest import main

    sys.exit(main())

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.asset_utils import (
    DAGSTER_DBT_UNIQUE_ID_METADATA_KEY,
    _validate_asset_keys,
    get_upstream_unique_ids,
    is_non_asset_node,
)
from dagster_dbt.utils import ASSET_RESOURCE_TYPES

from dbx_assets import dbt_manifest
from dbx_assets.dbt_events import DbtModelOutcome, RunResultsTranslator, read_outcomes, run_results_from_artifacts
from dbx_assets.dbt_manifest import DEFAULT_PROJECT_DIR, DbtManifestError, project_files

__all__ = [
    "DbtManifestError",
    "DbtModelOutcome",
    "DbtProjectAssets",
    "UnknownDbtAssetError",
    "build_all_specs",
    "load_dbt_project",
    "read_outcomes",
    "run_results_from_artifacts",
]

DEFAULT_SCHEMA = "analytics"
# dbt-databricks for the `databricks` target; the local cluster runs dbt-spark, already installed.
DATABRICKS_DBT_LIBRARY = {"pypi": {"package": "dbt-databricks>=1.11,<1.12"}}


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


class DbtProjectAssets:
    """The dbt project as asset specs + what a Databricks dbt task needs to build a selection of them."""

    def __init__(
        self,
        project_dir: Path,
        manifest: Mapping[str, Any],
        specs: Sequence[dg.AssetSpec],
        check_specs: Sequence[dg.AssetCheckSpec],
    ):
        self.project_dir = project_dir
        self.manifest = manifest
        self.specs = specs
        self.check_specs = check_specs
        self.project_name: str = manifest.get("metadata", {}).get("project_name") or project_dir.name
        self._unique_id_by_key = {s.key: s.metadata[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY] for s in specs}
        self._unique_id_by_check = {c.key: (c.metadata or {})[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY] for c in check_specs}
        self._results = RunResultsTranslator(
            manifest,
            key_by_unique_id={uid: key for key, uid in self._unique_id_by_key.items()},
            check_key_by_unique_id={uid: key for key, uid in self._unique_id_by_check.items()},
        )

    # --- the graph --------------------------------------------------------------------------

    def model_keys(self) -> set[dg.AssetKey]:
        return set(self._unique_id_by_key)

    def check_keys(self) -> set[dg.AssetCheckKey]:
        return set(self._unique_id_by_check)

    def upstream_keys(self) -> set[dg.AssetKey]:
        """Keys outside the dbt project that dbt sources map to (e.g. the notebook assets)."""
        deps = {dep.asset_key for spec in self.specs for dep in spec.deps}
        return deps - self.model_keys()

    # --- the dbt command --------------------------------------------------------------------

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
        target: str,
        vars: Mapping[str, str],
    ) -> str:
        """`dbt build` of exactly these models and tests.

        `--indirect-selection empty` stops dbt adding tests the user did not select
        (dbt's default, eager, would run every test touching a selected model).
        """
        selectors = self.select_args(selected_models) + self.check_select_args(selected_checks)
        if not selectors:
            raise ValueError(f"Nothing to build: no model or test of dbt project {self.project_name} was selected.")
        parts = ["dbt", "build", "--target", target, "--select", *selectors, "--indirect-selection", "empty"]
        if vars:
            parts += ["--vars", json.dumps(dict(vars), sort_keys=True)]
        return shlex.join(parts)

    def task_payload(self, *, workspace_project_dir: str, target: str) -> dict[str, Any]:
        """The job's dbt task. Its command builds everything; each run narrows it via run-now's
        `dbt_commands`, so the job spec (and its hash) does not change with the selection.
        profiles_directory is omitted on purpose: Databricks then uses the project root,
        where profiles.yml lives (the field is a path *relative* to the project)."""
        return {
            "dbt_task": {
                "project_directory": workspace_project_dir,
                "commands": [shlex.join(["dbt", "build", "--target", target])],
                "schema": DEFAULT_SCHEMA,
                "source": "WORKSPACE",
            }
        }

    def task_libraries(self, *, target: str) -> tuple[dict[str, Any], ...]:
        """Libraries the dbt task needs on the cluster (`WorkflowTask.libraries`)."""
        return (DATABRICKS_DBT_LIBRARY,) if target == "databricks" else ()

    def project_files(self) -> dict[str, bytes]:
        """Relative path -> bytes of every project file to sync (no target/, logs/, dbt_packages/, .user.yml)."""
        return project_files(self.project_dir)

    # --- after the run ----------------------------------------------------------------------

    def events_from_run_results(
        self,
        run_results: Mapping[str, Any],
        *,
        selected_models: Iterable[dg.AssetKey],
        selected_checks: Iterable[dg.AssetCheckKey],
        metadata: Mapping[str, Any],
    ) -> tuple[list[dg.MaterializeResult | dg.AssetCheckResult], dict[dg.AssetKey, str]]:
        """(events for selected models/checks, {failed/errored/skipped/not-run model key: dbt's message})."""
        return self._results.events(
            run_results, selected_models=selected_models, selected_checks=selected_checks, metadata=metadata
        )

    # --- helpers ----------------------------------------------------------------------------

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
        node = self.manifest["nodes"][unique_id]
        return "fqn:" + ".".join(node["fqn"])


def load_dbt_project(
    project_dir: Path | None = None, *, partitions_def: dg.PartitionsDefinition | None = None
) -> DbtProjectAssets:
    """Specs for the project at `project_dir` (default <repo>/dbt_project) from its manifest.

    Reads target/manifest.json only; runs `dbt parse` first only under `dagster dev` when the
    manifest is missing or stale. Elsewhere a missing manifest raises DbtManifestError naming
    the command to run.
    """
    project_dir = (project_dir or DEFAULT_PROJECT_DIR).resolve()
    if not (project_dir / "dbt_project.yml").exists():
        raise DbtManifestError(f"No dbt project at {project_dir} (dbt_project.yml is missing).")
    manifest = dbt_manifest.load_manifest(project_dir)
    specs, check_specs = build_all_specs(manifest, _Translator(partitions_def))
    return DbtProjectAssets(project_dir, manifest, specs, check_specs)


def build_all_specs(
    manifest: Mapping[str, Any], translator: DagsterDbtTranslator
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """dagster-dbt's `build_dbt_specs` for select="fqn:*", minus its selection engine.

    Selecting everything needs no dbt graph, but dagster-dbt always builds one (importing
    dbt.graph + networkx and hydrating the manifest): ~1 s warm / ~2 s cold per code-server
    load at 500 models. Same translator calls, same order of checks, same duplicate-key validation;
    tests compare the result with `build_dbt_specs` on the real manifest.
    """
    specs: list[dg.AssetSpec] = []
    check_specs: dict[str, dg.AssetCheckSpec] = {}
    key_by_unique_id: dict[str, dg.AssetKey] = {}
    child_map: Mapping[str, Sequence[str]] = manifest["child_map"]
    for unique_id, props in manifest["nodes"].items():
        if is_non_asset_node(props) or props["resource_type"] not in ASSET_RESOURCE_TYPES:
            continue
        spec = translator.get_asset_spec(manifest, unique_id, None)
        key_by_unique_id[unique_id] = spec.key
        specs.append(spec)
        for child_id in child_map.get(unique_id, []):
            if child_id.startswith("test"):
                check = translator.get_asset_check_spec(asset_spec=spec, manifest=manifest, unique_id=child_id, project=None)
                if check:
                    check_specs[check.get_python_identifier()] = check
        for upstream_id in get_upstream_unique_ids(manifest, props):
            key_by_unique_id[upstream_id] = translator.get_asset_spec(manifest, upstream_id, None).key
    _validate_asset_keys(translator, manifest, key_by_unique_id)
    return specs, list(check_specs.values())
