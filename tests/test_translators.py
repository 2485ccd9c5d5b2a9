"""Mapping a team's naming conventions without forking: a `NotebookTranslator` for notebooks and
dagster-dbt's own `DagsterDbtTranslator` (with a `DbtProject`) for the dbt project. Pure: reads
notebooks and the demo's dbt manifest (built by `make setup`), starts nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dbt import DagsterDbtTranslator, DbtProject

from dbx_assets import (
    DbtManifestError,
    DbtProjectTasks,
    NotebookAsset,
    NotebookProps,
    NotebookTasks,
    NotebookTranslator,
    Workflow,
    WorkflowDefinitionError,
    build_workflow_assets,
)
from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.sources.base import DeployTarget, Selection

REPO = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO / "dbt_project"
DEMO_NOTEBOOKS = REPO / "notebooks_source"
TARGET = DeployTarget(workspace_root="/Shared/t", sql_warehouse_id="wh-1")
K = dg.AssetKey


def _graph(workflow: Workflow) -> Any:
    defs = dg.Definitions(
        assets=[build_workflow_assets(workflow)], resources={"databricks": dg.ResourceDefinition.none_resource()}
    )
    return defs.resolve_asset_graph()


def _notebook(title: str) -> str:
    return f"# Databricks notebook source\n# MAGIC %md\n# MAGIC {title}\n\n# COMMAND ----------\n\nprint('{title}')\n"


@pytest.fixture
def team_notebooks(tmp_path: Path) -> Path:
    """A team's folder layout: one folder per domain, files named <layer>_<table>.py."""
    for rel in ("sales/bronze_orders.py", "sales/silver_orders.py", "finance/gold_revenue.py", "top_level.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(_notebook(rel))
    return tmp_path


class TeamConvention(NotebookTranslator):
    """Keys prefixed by the notebook's folder, the group from the file name's layer, owners by domain;
    deps written as bare names resolve in the notebook's own folder."""

    OWNERS = {"sales": ["team:sales-eng"], "finance": ["finance@example.com"]}

    def get_asset_key(self, notebook: NotebookProps) -> dg.AssetKey:
        key = super().get_asset_key(notebook)
        return key.with_prefix(notebook.folder) if notebook.folder else key

    def get_deps(self, notebook: NotebookProps) -> Sequence[dg.AssetKey]:
        return [
            dg.AssetKey.from_user_string(d if "/" in d or not notebook.folder else f"{notebook.folder}/{d}")
            for d in notebook.declaration.deps
        ]

    def get_group_name(self, notebook: NotebookProps) -> str | None:
        return notebook.name.split("_", 1)[0]

    def get_owners(self, notebook: NotebookProps) -> Sequence[str]:
        return self.OWNERS.get(notebook.folder, [])

    def get_tags(self, notebook: NotebookProps) -> Mapping[str, str]:
        return {**super().get_tags(notebook), "domain": notebook.folder or "none"}

    def get_metadata(self, notebook: NotebookProps) -> Mapping[str, Any]:
        return {**super().get_metadata(notebook), "repo_path": f"notebooks/{notebook.notebook}"}


def _team_declarations() -> list[NotebookAsset]:
    return [
        NotebookAsset(key="orders", notebook="sales/bronze_orders.py"),
        NotebookAsset(
            key="orders_clean", notebook="sales/silver_orders.py", deps=["orders"], pipes=True, checks=["rows_positive"]
        ),
        NotebookAsset(key="revenue", notebook="finance/gold_revenue.py", deps=["sales/orders_clean"]),
        NotebookAsset(key="standalone", notebook="top_level.py", description="Declared description."),
    ]


def test_a_notebook_translator_maps_a_team_convention(team_notebooks: Path):
    notebooks = NotebookTasks(_team_declarations(), notebooks_dir=team_notebooks, translator=TeamConvention())
    specs = {s.key: s for s in notebooks.asset_specs()}
    orders, clean, revenue = K(["sales", "orders"]), K(["sales", "orders_clean"]), K(["finance", "revenue"])
    assert set(specs) == {orders, clean, revenue, K("standalone")}
    assert [d.asset_key for d in specs[clean].deps] == [orders]
    assert [d.asset_key for d in specs[revenue].deps] == [clean]
    assert {k: s.group_name for k, s in specs.items()} == {
        orders: "bronze",
        clean: "silver",
        revenue: "gold",
        K("standalone"): "top",
    }
    assert specs[orders].owners == ["team:sales-eng"] and specs[revenue].owners == ["finance@example.com"]
    assert specs[orders].tags["domain"] == "sales" and specs[K("standalone")].tags["domain"] == "none"
    assert specs[orders].metadata["repo_path"] == "notebooks/sales/bronze_orders.py"
    # what the library owns stays: task key (from the translated key), code version, kinds, descriptions
    assert specs[orders].metadata["databricks_task_key"] == "sales__orders"
    assert specs[orders].kinds == {"databricks", "notebook"} and specs[orders].code_version
    assert specs[orders].description == "sales/bronze_orders.py"  # the first %md cell
    assert specs[K("standalone")].description == "Declared description."
    # a declared check follows its asset's translated key
    assert [c.key for c in notebooks.check_specs()] == [dg.AssetCheckKey(clean, "rows_positive")]

    # the job: task keys and dependencies follow the translated keys
    workflow = Workflow(name="team", sources=[notebooks])
    tasks = {t["task_key"]: t for t in workflow.spec(TARGET).job_settings()["tasks"]}
    assert set(tasks) == {"sales__orders", "sales__orders_clean", "finance__revenue", "standalone"}
    assert tasks["sales__orders_clean"]["depends_on"] == [{"task_key": "sales__orders"}]
    assert tasks["finance__revenue"]["depends_on"] == [{"task_key": "sales__orders_clean"}]
    assert tasks["sales__orders_clean"]["notebook_task"]["base_parameters"]["dagster_pipes_channel"].endswith(
        "/sales__orders_clean"
    )
    assert tasks["sales__orders"]["notebook_task"]["notebook_path"] == "/Shared/t/notebooks/sales/bronze_orders"
    graph = _graph(workflow)
    assert graph.get(revenue).parent_keys == {clean}
    assert graph.get(clean).group_name == "silver"


def test_the_default_translator_is_the_declaration(team_notebooks: Path):
    declarations = [
        NotebookAsset(key="sales/orders", notebook="sales/bronze_orders.py", group="bronze", owners=["team:x"]),
        NotebookAsset(key="revenue", notebook="finance/gold_revenue.py", deps=["sales/orders"], tags={"t": "1"}),
    ]
    default = NotebookTasks(declarations, notebooks_dir=team_notebooks)
    explicit = NotebookTasks(declarations, notebooks_dir=team_notebooks, translator=NotebookTranslator())
    assert default.asset_specs() == explicit.asset_specs()
    orders, revenue = (s for s in default.asset_specs())
    assert orders.key == K(["sales", "orders"]) and orders.group_name == "bronze" and orders.owners == ["team:x"]
    assert revenue.group_name == "databricks" and revenue.tags["t"] == "1"
    assert [d.asset_key for d in revenue.deps] == [orders.key]
    assert revenue.metadata == {"notebook": "finance/gold_revenue.py", "databricks_task_key": "revenue"}
    assert [t.task_key for t in default.tasks(TARGET)] == [d.task_key for d in declarations]


def test_translator_mistakes_fail_at_load(team_notebooks: Path):
    class OneKey(NotebookTranslator):
        def get_asset_key(self, notebook: NotebookProps) -> dg.AssetKey:
            return K("same")

    with pytest.raises(WorkflowDefinitionError, match=r"Asset key 'same' is declared twice"):
        NotebookTasks(_team_declarations()[:2], notebooks_dir=team_notebooks, translator=OneKey())

    class NotAKey(NotebookTranslator):
        def get_asset_key(self, notebook: NotebookProps) -> Any:
            return 42

    with pytest.raises(WorkflowDefinitionError, match=r"NotAKey.get_asset_key for notebook top_level.py returned 42"):
        NotebookTasks(_team_declarations()[3:], notebooks_dir=team_notebooks, translator=NotAKey())
    with pytest.raises(WorkflowDefinitionError, match=r"takes a NotebookTranslator"):
        NotebookTasks(_team_declarations(), notebooks_dir=team_notebooks, translator=DagsterDbtTranslator())  # type: ignore[arg-type]


# -- dbt: dagster-dbt's own translator -------------------------------------------------------------


class AnalyticsDbtTranslator(DagsterDbtTranslator):
    """A team's dbt conventions: models under the `analytics` prefix, groups by dbt folder, owners and
    tags by layer; sources keep dagster-dbt's key (`meta.dagster.asset_key`: the notebooks' assets)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        key = super().get_asset_key(dbt_resource_props)
        return key if dbt_resource_props["resource_type"] == "source" else key.with_prefix("analytics")

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return f"dbt_{dbt_resource_props['fqn'][1]}"  # dbx_assets_demo.<staging|marts>.<model>

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        return ["team:analytics"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), "layer": dbt_resource_props["fqn"][1]}

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        return {**super().get_metadata(dbt_resource_props), "dbt_path": dbt_resource_props["original_file_path"]}

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return f"[{dbt_resource_props['name']}] {super().get_description(dbt_resource_props)}"


@pytest.fixture(scope="module")
def dbt_project() -> DbtProject:
    if not dbt_manifest.manifest_is_current(DBT_PROJECT_DIR):
        dbt_manifest.prepare(DBT_PROJECT_DIR)  # what `make setup` does; in-process dbt parse, no JVM
    return DbtProject(DBT_PROJECT_DIR)


def _demo_notebooks(revenue_dep: str) -> NotebookTasks:
    return NotebookTasks(
        [
            NotebookAsset(key="bronze_orders", notebook="ingest_orders.py"),
            NotebookAsset(key="bronze_customers", notebook="ingest_customers.py"),
            NotebookAsset(key="silver_orders", notebook="clean_orders.py", deps=["bronze_orders", "bronze_customers"]),
            NotebookAsset(key="revenue_report", notebook="revenue_report.py", deps=[revenue_dep]),
        ],
        notebooks_dir=DEMO_NOTEBOOKS,
    )


def test_a_dagster_dbt_translator_keys_groups_and_owns_the_dbt_assets(dbt_project: DbtProject):
    default = DbtProjectTasks(DBT_PROJECT_DIR)
    dbt = DbtProjectTasks(dbt_project, dagster_dbt_translator=AnalyticsDbtTranslator(), schema="analytics")
    assert dbt.project_dir == DBT_PROJECT_DIR.resolve()
    assert dbt.model_keys() == {k.with_prefix("analytics") for k in default.model_keys()}
    specs = {s.key: s for s in dbt.asset_specs()}
    fct, stg = K(["analytics", "fct_daily_revenue"]), K(["analytics", "stg_orders"])
    assert specs[fct].group_name == "dbt_marts" and specs[stg].group_name == "dbt_staging"
    assert all(s.owners == ["team:analytics"] for s in specs.values())
    assert specs[fct].tags["layer"] == "marts"
    assert specs[fct].metadata["dbt_path"] == "models/marts/fct_daily_revenue.sql"
    assert (specs[fct].description or "").startswith("[fct_daily_revenue] ")
    # the DbtProject reaches the specs as with @dbt_assets(project=...)
    assert any(v is dbt_project for v in specs[fct].metadata.values())
    # checks from dbt tests sit on the translated keys
    assert {c.asset_key for c in dbt.check_specs()} <= set(specs)
    assert dg.AssetCheckKey(stg, "unique_stg_orders_order_id") in dbt.check_keys()
    # the dbt sources still map to the notebooks' assets (meta.dagster.asset_key)
    assert dbt.upstream_keys() == {K("silver_orders"), K("bronze_customers")}
    # the dbt command selects the same dbt nodes whatever the keys are
    assert dbt.select_args([fct]) == default.select_args([K("fct_daily_revenue")])
    check = dg.AssetCheckKey(stg, "unique_stg_orders_order_id")
    assert dbt.selection_command(Selection(assets=frozenset({stg}), checks=frozenset({check}))) == (
        default.selection_command(
            Selection(
                assets=frozenset({K("stg_orders")}),
                checks=frozenset({dg.AssetCheckKey(K("stg_orders"), "unique_stg_orders_order_id")}),
            )
        )
    )

    # one workflow: the dbt task waits for the notebooks its sources map to, and a notebook reads a
    # translated dbt model
    workflow = Workflow(name="team_dbt", sources=[_demo_notebooks("analytics/fct_daily_revenue"), dbt])
    tasks = {t["task_key"]: t for t in workflow.spec(TARGET).job_settings()["tasks"]}
    assert tasks["dbt_build"]["depends_on"] == [{"task_key": "bronze_customers"}, {"task_key": "silver_orders"}]
    assert tasks["revenue_report"]["depends_on"] == [{"task_key": "dbt_build"}]
    graph = _graph(workflow)
    assert K("silver_orders") in graph.get(K(["analytics", "stg_orders"])).parent_keys
    assert graph.get(K("revenue_report")).parent_keys == {fct}
    assert graph.get(fct).owners == ["team:analytics"]


def test_dbt_partitions_with_a_translator(dbt_project: DbtProject):
    daily = dg.DailyPartitionsDefinition(start_date="2026-11-01")
    dbt = DbtProjectTasks(dbt_project, dagster_dbt_translator=AnalyticsDbtTranslator(), partitions_def=daily)
    assert all(s.partitions_def == daily for s in dbt.asset_specs())

    class Hourly(DagsterDbtTranslator):
        def get_partitions_def(self, dbt_resource_props: Mapping[str, Any]) -> dg.PartitionsDefinition | None:
            return dg.HourlyPartitionsDefinition(start_date="2026-11-01-00:00")

    with pytest.raises(WorkflowDefinitionError, match=r"differ from DbtProjectTasks\(partitions_def=...\)"):
        DbtProjectTasks(dbt_project, dagster_dbt_translator=Hourly(), partitions_def=daily)


def test_dbt_project_settings_we_cannot_honour_are_named(tmp_path: Path):
    with pytest.raises(DbtManifestError, match=r"target_path='target'"):
        DbtProjectTasks(DbtProject(DBT_PROJECT_DIR, target_path="elsewhere"))
    with pytest.raises(DbtManifestError, match=r"names profile 'other'"):
        DbtProjectTasks(DbtProject(DBT_PROJECT_DIR, profile="other"))
    with pytest.raises(WorkflowDefinitionError, match=r"takes a dagster_dbt.DagsterDbtTranslator"):
        DbtProjectTasks(DBT_PROJECT_DIR, dagster_dbt_translator=NotebookTranslator())  # type: ignore[arg-type]
