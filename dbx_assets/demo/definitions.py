"""The demo code location: `defs`.

Loading this module reads notebooks and the dbt manifest from disk and nothing else: it never
contacts a workspace, starts a server or starts Spark (the UI reloads it often).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dbx_assets import (
    DEFAULT_CLUSTER_SPEC,
    DatabricksResource,
    DbtProjectTasks,
    NotebookAsset,
    NotebookTasks,
    Workflow,
    build_workflow_assets,
)
from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.demo.pool import DEMO_POOL_NAME
from dbx_assets.demo.schedules import demo_daily_job, demo_daily_schedule
from dbx_assets.demo.sensors import orders_landing_sensor

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks_source"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
WORKFLOW_NAME = "dbx_assets_demo"
# Unity Catalog: each deployment writes its own catalog (dev: dbx_demo_dev.bronze.orders, prod:
# dbx_demo_prod...), notebooks through the `catalog` parameter every task gets, dbt through its task.
CATALOG = "dbx_demo_{deployment}"
# The shared job cluster delivers its driver logs here (Databricks' own cluster_log_conf; the same job
# spec on every workspace), and the step copies each new line the notebooks and dbt print into the
# run's stdout, labelled `[shared <cluster id>]`: a green run shows what its notebooks printed.
CLUSTER_LOG_DESTINATION = "dbfs:/cluster-logs/dbx_assets_demo"
# The job cluster takes its driver from the demo's instance pool (`make dev` creates it), named by
# name; the node type is the pool's.
JOB_CLUSTER = {
    "spark_version": DEFAULT_CLUSTER_SPEC["spark_version"],
    "num_workers": DEFAULT_CLUSTER_SPEC["num_workers"],
    "instance_pool_name": DEMO_POOL_NAME,
    "cluster_log_conf": {"dbfs": {"destination": CLUSTER_LOG_DESTINATION}},
}

notebooks = NotebookTasks(
    [
        NotebookAsset(
            key="bronze_orders",
            notebook="ingest_orders.py",
            table="{catalog}.bronze.orders",  # {catalog}: the resource's catalog, as the notebooks get it
            group="bronze",
            owners=["team:data-eng"],
        ),
        NotebookAsset(
            key="bronze_customers",
            notebook="ingest_customers.py",
            table="{catalog}.bronze.customers",
            group="bronze",
            owners=["team:data-eng"],
        ),
        NotebookAsset(
            key="silver_orders",
            notebook="clean_orders.py",
            table="{catalog}.silver.orders_enriched",
            deps=["bronze_orders", "bronze_customers"],
            group="silver",
            owners=["team:data-eng"],
        ),
        NotebookAsset(
            key="revenue_report",
            notebook="revenue_report.py",
            deps=["fct_daily_revenue"],
            group="reporting",
            owners=["team:analytics"],
        ),
    ],
    notebooks_dir=NOTEBOOKS_DIR,
)
dbt_models = DbtProjectTasks(DBT_PROJECT_DIR, schema="analytics")

workflow = Workflow(
    name=WORKFLOW_NAME,
    sources=[notebooks, dbt_models],
    job_clusters={"shared": JOB_CLUSTER},
    # The pool's node type on the local workspace is `local` (this machine): priced like an i3.xlarge,
    # so the demo's DBU estimates read as they would on one (a real pool's node type has its own rate).
    dbu_rates={"local": 1.0},
)
demo_assets = build_workflow_assets(
    workflow, partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run()
)

# Unset everything (the default) to use the embedded local workspace; set DATABRICKS_HOST and
# DATABRICKS_TOKEN (or a profile / OAuth M2M variables) to run against a real workspace. The
# deployment is Dagster+'s ($DAGSTER_CLOUD_DEPLOYMENT_NAME), else `dev`.
databricks_resource = DatabricksResource(catalog=CATALOG)

defs = dg.Definitions(
    assets=[demo_assets],
    jobs=[demo_daily_job],
    schedules=[demo_daily_schedule],
    sensors=[orders_landing_sensor],
    resources={"databricks": databricks_resource},
    # A run's steps only wait on the workspace (the demo's one workflow is one step): a step process
    # of its own would cost every run a Python start and a definitions load (~14 s) for nothing.
    executor=dg.in_process_executor,
)
