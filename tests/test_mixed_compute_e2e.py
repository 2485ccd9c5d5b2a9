"""Issue 13's "done when", on real Spark and real dbt: one selection whose tasks run on the shared
job cluster, on a second (larger) job cluster and serverless (a notebook and the dbt task, in one
environment, so one serverless runtime) is ONE Databricks run, and every asset's metadata says
where it ran. Three runtimes start (shared, large, serverless); the notebooks and the dbt project
are tiny, so the JVM starts are the cost.

The workspace is served over TLS, as a team's shared dev server would be, and addressed only by
DATABRICKS_HOST (https) and DATABRICKS_TOKEN, the way a real workspace is: dbt must work there
exactly as on the embedded one. The selection leaves one dbt model out, so the run narrows dbt's
command (the job's task keeps `dbt build`) and real dbt builds only the selected model."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from workflow_support import key, new_name

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.source import DBT_DATABRICKS_LIBRARY, DbtProjectTasks
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.model import DEFAULT_CLUSTER_SPEC, serverless_environment
from dbx_assets.local_workspace.launcher import ensure_running, stop

NOTEBOOK = "# Databricks notebook source\n"
SEED = (
    NOTEBOOK
    + """import json
dbutils.widgets.text("schema", "")
schema = dbutils.widgets.get("schema")
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
spark.range(1, 4).toDF("n").write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.seed_numbers")
dbutils.notebook.exit(json.dumps({"rows": spark.table(f"{schema}.seed_numbers").count()}))
"""
)
ONE_ROW = NOTEBOOK + 'import json\ndbutils.notebook.exit(json.dumps({"rows": spark.range(1).count()}))\n'


def _dbt_project(root: Path, schema: str, seed_key: list[str]) -> Path:
    files = {
        "dbt_project.yml": "name: mixed\nversion: '1.0.0'\nconfig-version: 2\nprofile: mixed\n"
        "models:\n  mixed:\n    +materialized: table\n    +file_format: parquet\n",
        "profiles.yml": "mixed:\n  target: local\n  outputs:\n"
        f"    local: {{type: spark, method: session, host: NA, schema: {schema}}}\n",
        "models/_sources.yml": "version: 2\nsources:\n  - name: raw\n"
        f"    schema: {schema}\n    tables:\n      - name: seed_numbers\n"
        f"        config:\n          meta: {{dagster: {{asset_key: {json.dumps(seed_key)}}}}}\n",
        "models/doubled.sql": "select n * 2 as n2 from {{ source('raw', 'seed_numbers') }}\n",
        "models/tripled.sql": "select n * 3 as n3 from {{ source('raw', 'seed_numbers') }}\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    dbt_manifest.prepare(root)  # dbt parse, in-process, no JVM
    return root


@pytest.fixture
def tls_workspace(tmp_path, monkeypatch):
    """A workspace of this test's own over TLS, known to the code only by DATABRICKS_HOST/TOKEN."""
    state_dir = tmp_path / "tls_workspace"
    conn = ensure_running(state_dir, tls=True)
    monkeypatch.setenv("DATABRICKS_HOST", conn.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", conn.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(conn.ca_cert))
    try:
        yield conn
    finally:
        stop(state_dir)


def test_shared_cluster_second_cluster_serverless_and_dbt_in_one_run(tls_workspace, tmp_path):
    name = new_name()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "seed.py").write_text(SEED)
    (notebooks / "one_row.py").write_text(ONE_ROW)
    seed_key = [name, "seed"]
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key=f"{name}/seed", notebook="seed.py", params={"schema": name}),
                    NotebookAsset(key=f"{name}/heavy", notebook="one_row.py", job_cluster="large"),
                    NotebookAsset(key=f"{name}/light", notebook="one_row.py", environment="default"),
                ],
                notebooks_dir=notebooks,
            ),
            DbtProjectTasks(_dbt_project(tmp_path / "dbt", name, seed_key), schema=name, environment="default"),
        ],
        job_clusters={"shared": DEFAULT_CLUSTER_SPEC, "large": dict(DEFAULT_CLUSTER_SPEC, num_workers=4)},
        environments={"default": serverless_environment()},
        performance_target="STANDARD",
    )
    resource = DatabricksResource(workspace_root=f"/Shared/tests/{name}")
    workspace_client = resource.get_client()
    assert tls_workspace.host.startswith("https://") and workspace_client.config.host == tls_workspace.host
    assets = build_workflow_assets(workflow)
    selection = [k for k in assets.keys if k != dg.AssetKey("tripled")]
    result = dg.materialize([assets], selection=selection, resources={"databricks": resource}, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    meta = {}
    for event in result.get_asset_materialization_events():
        meta[event.asset_key] = {k: v.value for k, v in event.materialization.metadata.items()}
    assert set(meta) == {key(name, "seed"), key(name, "heavy"), key(name, "light"), dg.AssetKey("doubled")}
    assert len({m["databricks_run_id"] for m in meta.values()}) == 1  # one Databricks run

    shared_id = meta[key(name, "seed")]["databricks_cluster_id"]
    large_id = meta[key(name, "heavy")]["databricks_cluster_id"]
    assert shared_id != large_id
    assert meta[key(name, "seed")]["databricks_compute"] == f"job cluster 'shared' (cluster id {shared_id})"
    assert meta[key(name, "heavy")]["databricks_compute"] == f"job cluster 'large' (cluster id {large_id})"
    assert meta[key(name, "light")]["databricks_compute"] == "serverless environment 'default'"
    assert meta[dg.AssetKey("doubled")]["databricks_compute"] == "serverless environment 'default'"
    assert meta[key(name, "seed")]["rows"] == 3

    # As Databricks shows it: the dbt task and the light notebook share the one serverless runtime of
    # their environment, which installed the environment's dependencies (dbt-databricks, provided locally).
    run_id = meta[key(name, "seed")]["databricks_run_id"]
    assert isinstance(run_id, int)
    run = workspace_client.jobs.get_run(run_id)
    tasks = {t.task_key: t for t in run.tasks or []}
    dbt_task, light = tasks["dbt_build"], tasks[f"{name}__light"]
    assert dbt_task.environment_key == light.environment_key == "default" and not dbt_task.libraries
    assert dbt_task.cluster_instance and light.cluster_instance
    assert dbt_task.cluster_instance.cluster_id == light.cluster_instance.cluster_id not in (shared_id, large_id)
    assert run.job_id is not None
    settings = workspace_client.jobs.get(run.job_id).settings
    assert settings is not None and settings.environments
    assert settings.environments[0].spec and settings.environments[0].spec.dependencies == [
        DBT_DATABRICKS_LIBRARY["pypi"]["package"]
    ]

    # dbt built the selected model only: the run narrowed the command, the job kept `dbt build`.
    job_dbt_task = next(t.dbt_task for t in settings.tasks or [] if t.task_key == "dbt_build")
    assert job_dbt_task is not None and job_dbt_task.commands == ["dbt build"]
    assert run.overriding_parameters is not None
    (command,) = run.overriding_parameters.dbt_commands or []
    assert "--indirect-selection empty" in command
    assert {part.rsplit(".", 1)[-1] for part in command.split() if part.startswith("fqn:")} == {"doubled"}, command
    built = {t.name for t in workspace_client.tables.list(catalog_name="main", schema_name=name)}
    assert {"seed_numbers", "doubled"} <= built and "tripled" not in built, built
