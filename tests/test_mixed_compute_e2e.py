"""Issue 13's "done when", on real Spark and real dbt: one selection whose tasks run on the shared
job cluster, on a second (larger) job cluster and serverless (a notebook and the dbt task, in one
environment, so one serverless runtime) is ONE Databricks run, and every asset's metadata says
where it ran. Three runtimes start (shared, large, serverless); the notebooks and the dbt project
are tiny, so the JVM starts are the cost.

The workspace is served over TLS, as a team's shared dev server would be, and addressed only by
DATABRICKS_HOST (https) and DATABRICKS_TOKEN, the way a real workspace is: dbt must work there
exactly as on the embedded one. The selection leaves one dbt model out, so the run narrows dbt's
command (the job's task keeps `dbt build`) and real dbt builds only the selected model.

The same run is the real-Spark smoke test of notebook features through Dagster (their runtime
details are tested in tests/local_workspace/test_runtime_cluster.py; cancelling a run in flight on
real Spark, by stopping Dagster, in tests/test_newcomer.py):
- the second cluster's notebook writes a CSV through `/dbfs`, reads it from `dbfs:/` and sums it in
  a `%sql` cell;
- on the shared cluster `producer` sets a task value and `main` (downstream) %runs a helper with a
  $ argument, %pip installs tomli-w (not in the venv), runs a %sh cell, reads the producer's value
  with taskValues.get and through a {{tasks...}} reference in its parameters, and calls
  dbutils.notebook.run on a child notebook; its exit value (with the child's) lands in the asset's
  metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from workflow_support import NOTEBOOKS, key, new_name

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.source import DBT_DATABRICKS_LIBRARY, DbtProjectTasks
from dbx_assets.integration.jobs.model import DEFAULT_CLUSTER_SPEC, serverless_environment, task_key_for
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
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
SEP = "\n# COMMAND ----------\n"


def _write_notebook(path: Path, *cells: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NOTEBOOK + SEP.join(cells) + "\n")


def _feature_notebooks(notebooks: Path) -> None:
    """producer, main and what main %runs and dbutils.notebook.runs."""
    _write_notebook(notebooks / "producer.py", "dbutils.jobs.taskValues.set('rows', spark.range(7).count())")
    _write_notebook(
        notebooks / "lib" / "helpers.py",
        "dbutils.widgets.text('suffix', 'none')\nSUFFIX = dbutils.widgets.get('suffix')\n"
        "def shout(s):\n    return s.upper() + SUFFIX",
    )
    _write_notebook(
        notebooks / "child.py",
        "n = int(dbutils.widgets.get('n'))\ndbutils.notebook.exit(f'child:{spark.range(n).count()}')",
    )
    _write_notebook(
        notebooks / "main.py",
        "# MAGIC %run ./lib/helpers $suffix=!",
        "# MAGIC %pip install tomli-w",
        '# MAGIC %sh\n# MAGIC echo "sh says hi from $(basename $PWD)" > sh_out.txt\n# MAGIC cat sh_out.txt',
        "import json, tomli_w\n"
        "rows = dbutils.jobs.taskValues.get(taskKey=dbutils.widgets.get('producer'), key='rows')\n"
        "child = dbutils.notebook.run('./child', 120, {'n': '3'})\n"
        "dbutils.notebook.exit(json.dumps({'helper': shout('hi'), 'toml': tomli_w.dumps({'a': 1}).strip(),\n"
        "    'rows': rows, 'rows_ref': dbutils.widgets.get('rows_ref'), 'child': child}))",
    )


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
    shutil.copy(NOTEBOOKS / "spark_sql.py", notebooks / "spark_sql.py")
    _feature_notebooks(notebooks)
    producer_key = task_key_for([name, "producer"])
    seed_key = [name, "seed"]
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key=f"{name}/seed", notebook="seed.py", params={"schema": name}),
                    NotebookAsset(
                        key=f"{name}/heavy",
                        notebook="spark_sql.py",
                        job_cluster="large",
                        params={"dir": f"/dbfs/tmp/{name}"},
                    ),
                    NotebookAsset(key=f"{name}/light", notebook="one_row.py", environment="default"),
                    NotebookAsset(key=f"{name}/producer", notebook="producer.py"),
                    NotebookAsset(
                        key=f"{name}/main",
                        notebook="main.py",
                        deps=[f"{name}/producer"],
                        params={"producer": producer_key, "rows_ref": f"{{{{tasks.{producer_key}.values.rows}}}}"},
                    ),
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
    notebooks_run = {key(name, n) for n in ("seed", "heavy", "light", "producer", "main")}
    assert set(meta) == notebooks_run | {dg.AssetKey("doubled")}
    assert len({m["databricks_run_id"] for m in meta.values()}) == 1  # one Databricks run

    shared_id = meta[key(name, "seed")]["databricks_cluster_id"]
    large_id = meta[key(name, "heavy")]["databricks_cluster_id"]
    assert shared_id != large_id
    assert meta[key(name, "seed")]["databricks_compute"] == f"job cluster 'shared' (cluster id {shared_id})"
    assert meta[key(name, "heavy")]["databricks_compute"] == f"job cluster 'large' (cluster id {large_id})"
    assert meta[key(name, "light")]["databricks_compute"] == "serverless environment 'default'"
    assert meta[dg.AssetKey("doubled")]["databricks_compute"] == "serverless environment 'default'"
    assert meta[key(name, "seed")]["rows"] == 3
    assert (meta[key(name, "heavy")]["total"], meta[key(name, "heavy")]["rows"]) == (55, 10)  # %sql over /dbfs
    csv = workspace_client.dbfs.get_status(f"/tmp/{name}/numbers.csv")  # what /dbfs wrote, as dbfs:/ sees it
    assert csv.file_size and not csv.is_dir

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

    # The notebook features, on the shared cluster.
    main_meta = meta[key(name, "main")]
    assert meta[key(name, "producer")]["databricks_cluster_id"] == main_meta["databricks_cluster_id"] == shared_id
    assert main_meta["child"] == "child:3"  # dbutils.notebook.run's exit value
    assert main_meta["helper"] == "HI!"  # %run helper with its $suffix widget
    assert main_meta["toml"] == "a = 1"  # %pip installed, importable in the same notebook
    assert main_meta["rows"] == 7 and main_meta["rows_ref"] == "7"  # task values, get and {{tasks...}}
    main = tasks[task_key_for([name, "main"])]
    assert main.run_id is not None and main.resolved_values and main.resolved_values.notebook_task
    assert (main.resolved_values.notebook_task.base_parameters or {}).get("rows_ref") == "7"
    output = workspace_client.jobs.get_run_output(main.run_id)
    assert output.notebook_output and output.notebook_output.result
    assert json.loads(output.notebook_output.result)["child"] == "child:3"
    logs = (tls_workspace.state_dir / "task_runs" / str(main.run_id) / "logs.txt").read_text()
    assert "sh says hi from " in logs  # %sh output in the task's logs, run in the driver's dir
    assert f"Notebook run {main.run_id}-1:" in logs  # the child run named in the parent's output
    assert (tls_workspace.state_dir / "clusters" / str(shared_id) / "sh_out.txt").is_file()
