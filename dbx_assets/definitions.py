"""The single wiring point of the code location: `defs`.

Loading this module reads notebooks and the dbt manifest from disk and nothing else: it never
contacts a workspace, starts a server or starts Spark (the UI reloads it often).
"""

from __future__ import annotations

import dagster as dg

from dbx_assets.dbt import load_dbt_project
from dbx_assets.notebooks import NotebookAsset
from dbx_assets.partitions import daily_partitions
from dbx_assets.resource import DatabricksResource
from dbx_assets.workflow.assets import Workflow, build_workflow_assets

NOTEBOOK_ASSETS = [
    NotebookAsset(key="bronze_orders", notebook="ingest_orders.py", group="bronze", owners=["team:data-eng"]),
    NotebookAsset(key="bronze_customers", notebook="ingest_customers.py", group="bronze", owners=["team:data-eng"]),
    NotebookAsset(
        key="silver_orders",
        notebook="clean_orders.py",
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
]

workflow = Workflow(
    name="dbx_assets_demo",
    notebooks=NOTEBOOK_ASSETS,
    dbt=load_dbt_project(),
)
demo_assets = build_workflow_assets(
    workflow, partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run()
)

# Unset everything (the default) to use the embedded local workspace; set DATABRICKS_HOST and
# DATABRICKS_TOKEN (or a profile / OAuth M2M variables) to run against a real workspace.
databricks_resource = DatabricksResource()

defs = dg.Definitions(
    assets=[demo_assets],
    resources={"databricks": databricks_resource},
)
