"""Python file and wheel tasks on real Spark, through Dagster: one workflow of a Python file, two entry
points of a wheel built from tests/data/orders_wheel (its pyproject.toml, with `uv build` at deploy)
and a notebook, materialized with `dg.materialize` on the local workspace (real HTTP, the SDK, one
job cluster with a real JVM) as ONE Databricks run. Every task reads or writes Unity Catalog tables
through `from databricks.sdk.runtime import spark, dbutils, display`, as Databricks' templates do.

A Python file that raises fails its asset (and only its asset) with the exception's line as the
error; runs/get-output has what each Python task printed as its `logs`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
from workflow_support import key, materialization_metadata, materialized, new_name, step_failure_message

from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.sources.python_file import PythonFileAsset, PythonFileTasks
from dbx_assets.integration.sources.python_wheel import PythonWheelAsset, PythonWheelTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

WHEEL_PROJECT = Path(__file__).parent / "data" / "orders_wheel"

LOAD_ORDERS = '''"""Lands a few orders into {catalog}.{schema}.orders."""
import argparse

from databricks.sdk.runtime import dbutils, display, spark
from helpers import ORDERS

parser = argparse.ArgumentParser()
parser.add_argument("--catalog")
parser.add_argument("--schema")
parser.add_argument("--day")
args = parser.parse_args()
assert __name__ == "__main__"
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {args.catalog}.{args.schema}")
orders = spark.createDataFrame(ORDERS, "day string, amount double")
orders.write.mode("overwrite").format("parquet").saveAsTable(f"{args.catalog}.{args.schema}.orders")
display(orders)
dbutils.jobs.taskValues.set("rows", orders.count())
print(f"load_orders: {orders.count()} orders (partition {args.day!r})")
'''

BROKEN = """import sys

print("broken: checking the landing folder", flush=True)
raise ValueError(f"no orders landed for {sys.argv[1]}")
"""

REPORT = """# Databricks notebook source
import json
from databricks.sdk.runtime import dbutils as runtime_dbutils, spark as runtime_spark

totals = runtime_spark.table(f"main.{dbutils.widgets.get('schema')}.daily_totals")
dbutils.notebook.exit(json.dumps({
    "days": totals.count(),
    "revenue": sum(r.revenue for r in totals.collect()),
    "same_objects": runtime_dbutils is dbutils and runtime_spark is spark,
}))
"""


def _workflow(name: str, tmp_path: Path) -> Workflow:
    files = tmp_path / "jobs"
    files.mkdir()
    (files / "load_orders.py").write_text(LOAD_ORDERS)
    (files / "broken.py").write_text(BROKEN)
    (files / "helpers.py").write_text(
        textwrap.dedent(
            """
            ORDERS = [("2026-11-01", 10.0), ("2026-11-01", 5.5), ("2026-11-02", 20.0)]
            """
        )
    )
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "report.py").write_text(REPORT)
    return Workflow(
        name=name,
        sources=[
            PythonFileTasks(
                [
                    PythonFileAsset(
                        key=f"{name}/orders",
                        python_file="load_orders.py",
                        parameters=[
                            "--catalog",
                            "{catalog}",
                            "--schema",
                            "{schema}",
                            "--day={{job.parameters.partition_key}}",
                        ],
                        table=f"{{catalog}}.{name}.orders",
                    ),
                    PythonFileAsset(key=f"{name}/broken", python_file="broken.py", parameters=["2026-11-03"]),
                ],
                files_dir=files,
                include=["helpers.py"],
            ),
            PythonWheelTasks(
                [
                    PythonWheelAsset(
                        key=f"{name}/daily_totals",
                        entry_point="summarize",  # a [project.scripts] entry; --catalog/--schema from the deployment
                        named_parameters={"source": "orders"},
                        deps=[f"{name}/orders"],
                        table=f"main.{name}.daily_totals",
                    ),
                    PythonWheelAsset(
                        key=f"{name}/order_count",
                        entry_point="count_orders",  # a function of the package
                        package_name="orders_wheel",
                        parameters=["{catalog}.{schema}.orders"],
                        deps=[f"{name}/orders"],
                    ),
                ],
                project_dir=WHEEL_PROJECT,
                build_dir=tmp_path / "wheels",
            ),
            NotebookTasks(
                [NotebookAsset(key=f"{name}/report", notebook="report.py", deps=[f"{name}/daily_totals"])],
                notebooks_dir=notebooks,
            ),
        ],
    )


def test_a_file_a_wheel_and_a_notebook_in_one_run_and_a_failing_file_reported(
    local_workspace, workspace_client, tmp_path
):
    name = new_name()
    resource = DatabricksResource(
        host=local_workspace.host,
        token=local_workspace.token,
        workspace_root=f"/Shared/tests/{name}",
        catalog="main",
        schema_name=name,
    )
    result = dg.materialize(
        [build_workflow_assets(_workflow(name, tmp_path))], resources={"databricks": resource}, raise_on_error=False
    )

    assert not result.success
    assert materialized(result) == {key(name, a) for a in ("orders", "daily_totals", "order_count", "report")}
    message = step_failure_message(result)
    assert f"{name}/broken: FAILED: ValueError: no orders landed for 2026-11-03" in message, message

    meta = {
        a: materialization_metadata(result, key(name, a)) for a in ("orders", "daily_totals", "order_count", "report")
    }
    assert len({m["databricks_run_id"] for m in meta.values()}) == 1  # one Databricks run
    assert len({m["databricks_cluster_id"] for m in meta.values()}) == 1  # on one job cluster
    assert all(m["databricks_compute"].startswith("job cluster 'shared'") for m in meta.values())
    orders, totals = meta["orders"], meta["daily_totals"]
    assert orders["dagster/table_name"] == f"main.{name}.orders" and orders["dagster/row_count"] == 3
    assert totals["dagster/table_name"] == f"main.{name}.daily_totals" and totals["dagster/row_count"] == 2
    columns = [c.name for c in totals["dagster/column_schema"].columns]
    assert columns == ["day", "orders", "revenue"]
    assert (meta["report"]["days"], meta["report"]["revenue"], meta["report"]["same_objects"]) == (2, 35.5, "True")

    # As Databricks reports them: each Python task's printed lines are its logs, a failure's line its error.
    run = workspace_client.jobs.get_run(orders["databricks_run_id"])
    tasks = {t.task_key.split("__")[1]: t for t in run.tasks}
    output = {k: workspace_client.jobs.get_run_output(t.run_id) for k, t in tasks.items() if k != "report"}
    assert "load_orders: 3 orders (partition '')" in output["orders"].logs
    assert f"summarize: 2 days into main.{name}.daily_totals" in output["daily_totals"].logs
    assert f"main.{name}.orders: 3 orders" in output["order_count"].logs
    broken = output["broken"]
    assert broken.error == "ValueError: no orders landed for 2026-11-03"
    assert "broken.py" in broken.error_trace and "task_process" not in broken.error_trace
    assert "broken: checking the landing folder" in broken.logs
    assert tasks["broken"].state.result_state.value == "FAILED"

    # The wheel was built at deploy, uploaded to the deployment's folder and installed from there.
    [library] = tasks["daily_totals"].libraries
    assert library.whl.startswith(f"/Workspace/Shared/tests/{name}/dev/wheels/orders_wheel-")
    assert library.whl.endswith("/orders_wheel-0.1.0-py3-none-any.whl")
    status = workspace_client.workspace.get_status(library.whl)
    assert status.object_type is not None and status.object_type.value == "FILE"
    assert tasks["daily_totals"].resolved_values.python_wheel_task.named_parameters["schema"] == name
