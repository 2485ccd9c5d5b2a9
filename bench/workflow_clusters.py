"""One shared-cluster run vs one run per asset, on the embedded local workspace.

A: the demo's notebook graph materialized through Dagster as ONE Databricks run
   (run-now with a shared job cluster).
B: the same notebooks as one `runs/submit` per asset, each with its own new cluster, in
   dependency order (independent ones in parallel) — what an operator-per-notebook DAG does.
Prints wall time and clusters started (counted from the workspace's own cluster list).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from databricks.sdk.service.jobs import SubmitTask

from dbx_assets import (
    DEFAULT_CLUSTER_SPEC,
    DatabricksResource,
    NotebookAsset,
    NotebookTasks,
    Workflow,
    build_workflow_assets,
)
from dbx_assets.demo.definitions import NOTEBOOKS_DIR
from dbx_assets.demo.landing import land_customers, land_day
from dbx_assets.integration.jobs.deploy import WorkflowDeployer
from dbx_assets.local_workspace.launcher import stop

NOTEBOOKS = [
    NotebookAsset(key="bronze_orders", notebook="ingest_orders.py"),
    NotebookAsset(key="bronze_customers", notebook="ingest_customers.py"),
    NotebookAsset(key="silver_orders", notebook="clean_orders.py", deps=["bronze_orders", "bronze_customers"]),
]
LEVELS = [["bronze_orders", "bronze_customers"], ["silver_orders"]]
DAY = dt.date(2026, 11, 20)


def _cluster_ids(client) -> set[str]:
    return {c.cluster_id for c in client.clusters.list()}


def shared_run(resource: DatabricksResource) -> tuple[float, int]:
    client = resource.get_client()
    before = _cluster_ids(client)
    assets = build_workflow_assets(
        Workflow(name="bench_shared", sources=[NotebookTasks(NOTEBOOKS, notebooks_dir=NOTEBOOKS_DIR)])
    )
    start = time.perf_counter()
    result = dg.materialize([assets], resources={"databricks": resource})
    wall = time.perf_counter() - start
    assert result.success
    return wall, len(_cluster_ids(client) - before)


def per_asset_runs(resource: DatabricksResource) -> tuple[float, int]:
    client = resource.get_client()
    workflow = Workflow(name="bench_per_asset", sources=[NotebookTasks(NOTEBOOKS, notebooks_dir=NOTEBOOKS_DIR)])
    target = resource.deploy_target(needs_sql_warehouse=False)
    WorkflowDeployer(client, target.workspace_root).sync_files(workflow.files())
    spec = workflow.spec(target)
    before = _cluster_ids(client)

    def run_one(asset: str) -> None:
        settings = spec.task(asset).job_settings(compute={"new_cluster": DEFAULT_CLUSTER_SPEC})
        settings.pop("depends_on", None)  # one run per asset: ordering is this script's job
        run = client.jobs.submit(run_name=f"bench {asset}", tasks=[SubmitTask.from_dict(settings)]).result()
        assert run.state and run.state.result_state and run.state.result_state.value == "SUCCESS", run.state

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for level in LEVELS:
            list(pool.map(run_one, level))
    wall = time.perf_counter() - start
    return wall, len(_cluster_ids(client) - before)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_clusters_") as state_dir:
        resource = DatabricksResource(local_state_dir=state_dir, workspace_root="/Shared/bench")
        try:
            client = resource.get_client()
            land_customers(client)
            land_day(client, DAY)
            shared_wall, shared_clusters = shared_run(resource)
            per_wall, per_clusters = per_asset_runs(resource)
        finally:
            stop(Path(state_dir))
    print(f"{'':34}{'wall time':>12}{'clusters started':>20}")
    print(f"{'one run, shared job cluster':34}{shared_wall:>11.1f}s{shared_clusters:>20}")
    print(f"{'one run per asset (own cluster)':34}{per_wall:>11.1f}s{per_clusters:>20}")
    print(
        f"notebooks: {len(NOTEBOOKS)}; speed-up {per_wall / shared_wall:.2f}x, "
        f"{per_clusters - shared_clusters} fewer cluster starts"
    )


if __name__ == "__main__":
    main()
