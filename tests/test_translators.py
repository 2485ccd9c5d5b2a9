"""Mapping a team's naming conventions without forking: a `NotebookTranslator` for notebooks and
dagster-dbt's own `DagsterDbtTranslator` (with a `DbtProject`) for the dbt project. Pure: reads
notebooks and the demo's dbt manifest (built by `make setup`), starts nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookProps, NotebookTasks, NotebookTranslator
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

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
        NotebookTasks(_team_declarations(), notebooks_dir=team_notebooks, translator=object())  # type: ignore[arg-type]
