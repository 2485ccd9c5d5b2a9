"""The notebook features on real Spark, through Dagster, in one run on one job cluster:

`producer` sets task values; `main` (downstream) %runs a helper with a $ argument, %pip installs
tomli-w (not in the venv), runs a %sh cell, reads the producer's value with taskValues.get and
through a {{tasks...}} reference in its parameters, and calls dbutils.notebook.run on a child
notebook; its exit value (with the child's) lands in the asset's metadata.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dbx_assets.integration.deployment import job_name
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.model import task_key_for
from dbx_assets.local_workspace.launcher import ensure_running, stop

HEADER = "# Databricks notebook source\n"
SEP = "\n# COMMAND ----------\n"


def _write(path: Path, *cells: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + SEP.join(cells) + "\n")


@pytest.fixture
def state_dir(tmp_path):
    state = tmp_path / "workspace"
    ensure_running(state)
    try:
        yield state
    finally:
        stop(state)


def test_magics_task_values_and_child_notebooks_on_spark(state_dir, tmp_path):
    name = "nbf" + uuid.uuid4().hex[:8]
    producer_key = task_key_for([name, "producer"])
    nbs = tmp_path / "notebooks"
    _write(nbs / "producer.py", "dbutils.jobs.taskValues.set('rows', spark.range(7).count())")
    _write(
        nbs / "lib" / "helpers.py",
        "dbutils.widgets.text('suffix', 'none')\nSUFFIX = dbutils.widgets.get('suffix')\n"
        "def shout(s):\n    return s.upper() + SUFFIX",
    )
    _write(
        nbs / "child.py", "n = int(dbutils.widgets.get('n'))\ndbutils.notebook.exit(f'child:{spark.range(n).count()}')"
    )
    _write(
        nbs / "main.py",
        "# MAGIC %run ./lib/helpers $suffix=!",
        "# MAGIC %pip install tomli-w",
        '# MAGIC %sh\n# MAGIC echo "sh says hi from $(basename $PWD)" > sh_out.txt\n# MAGIC cat sh_out.txt',
        "import json, tomli_w\n"
        "rows = dbutils.jobs.taskValues.get(taskKey=dbutils.widgets.get('producer'), key='rows')\n"
        "child = dbutils.notebook.run('./child', 120, {'n': '3'})\n"
        "dbutils.notebook.exit(json.dumps({'helper': shout('hi'), 'toml': tomli_w.dumps({'a': 1}).strip(),\n"
        "    'rows': rows, 'rows_ref': dbutils.widgets.get('rows_ref'), 'child': child}))",
    )
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key=f"{name}/producer", notebook="producer.py"),
                    NotebookAsset(
                        key=f"{name}/main",
                        notebook="main.py",
                        deps=[f"{name}/producer"],
                        params={"producer": producer_key, "rows_ref": f"{{{{tasks.{producer_key}.values.rows}}}}"},
                    ),
                ],
                notebooks_dir=nbs,
            )
        ],
    )
    resource = DatabricksResource(local_state_dir=str(state_dir), workspace_root=f"/Shared/tests/{name}")

    result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": resource}, raise_on_error=False)

    client: Any = resource.get_client()  # SDK fields are all optional; the asserts say what must be there
    job = next(iter(client.jobs.list(name=job_name(name, resource.deployment_name()))))
    run: Any = client.jobs.get_run(next(iter(client.jobs.list_runs(job_id=job.job_id))).run_id)
    tasks: dict[str, Any] = {t.task_key: t for t in run.tasks or []}
    main = tasks[task_key_for([name, "main"])]
    output = client.jobs.get_run_output(main.run_id)
    assert result.success, (
        output.error,
        output.error_trace,
        (state_dir / "task_runs" / str(main.run_id) / "logs.txt").read_text()[-3000:],
    )
    events: Any = result.get_asset_materialization_events()
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in events}
    main_meta = meta[f"{name}/main"]
    assert main_meta["child"].value == "child:3"  # dbutils.notebook.run's exit value
    assert main_meta["helper"].value == "HI!"  # %run helper with its $suffix widget
    assert main_meta["toml"].value == "a = 1"  # %pip installed, importable in the same notebook
    assert main_meta["rows"].value == 7 and main_meta["rows_ref"].value == "7"  # task values, get and {{tasks...}}
    assert main.resolved_values.notebook_task.base_parameters["rows_ref"] == "7"
    assert len({t.cluster_instance.cluster_id for t in tasks.values() if t.cluster_instance}) == 1
    logs = (state_dir / "task_runs" / str(main.run_id) / "logs.txt").read_text()
    assert "sh says hi from " in logs  # %sh output in the task's logs, run in the driver's dir
    assert f"Notebook run {main.run_id}-1:" in logs  # the child run named in the parent's output
    assert (state_dir / "clusters" / main.cluster_instance.cluster_id / "sh_out.txt").is_file()
    assert json.loads(output.notebook_output.result)["child"] == "child:3"
