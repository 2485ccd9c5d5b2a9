"""Cluster start, cold vs from an instance pool, on the embedded local workspace (real JVMs).

cold:   clusters/create without a pool: a driver process and its JVM start for the cluster.
pooled: a pool keeping one idle instance (a driver started ahead); clusters/create naming it.
Each start is timed twice: by the client (create -> clusters/get says RUNNING, polled every 20 ms)
and by the workspace (the cluster's start_time -> its RUNNING event). The pool refills between
pooled starts (its next instance starts while nobody waits). No assertion; figures only.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute

from dbx_assets import DatabricksResource
from dbx_assets.local_workspace.launcher import stop

SPARK_VERSION = "15.4.x-scala2.12"
STARTS = 2


def _start(client: WorkspaceClient, **spec) -> tuple[float, float]:
    """(client-seen seconds, workspace-recorded seconds) from clusters/create to RUNNING."""
    began = time.perf_counter()
    cluster_id = client.clusters.create(spark_version=SPARK_VERSION, num_workers=0, **spec).cluster_id
    assert cluster_id
    while (cluster := client.clusters.get(cluster_id)).state != compute.State.RUNNING:
        assert cluster.state in (compute.State.PENDING, None), cluster.state_message
        time.sleep(0.02)
    seen = time.perf_counter() - began
    running = next(e for e in client.clusters.events(cluster_id) if e.type == compute.EventType.RUNNING)
    recorded = ((running.timestamp or 0) - (cluster.start_time or 0)) / 1000
    client.clusters.permanent_delete(cluster_id)
    return seen, recorded


def _idle(client: WorkspaceClient, pool_id: str) -> None:
    while (client.instance_pools.get(pool_id).stats or compute.InstancePoolStats()).idle_count != 1:
        time.sleep(0.1)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_pools_") as tmp:
        state_dir = Path(tmp) / "workspace"
        client = DatabricksResource(local_state_dir=str(state_dir)).get_client()
        try:
            _start(client)  # the first JVM of a machine may build the class-data archive: not measured
            cold = [_start(client) for _ in range(STARTS)]
            pool_id = client.instance_pools.create(
                instance_pool_name="bench", node_type_id="local", min_idle_instances=1
            ).instance_pool_id
            assert pool_id
            pooled = []
            for _ in range(STARTS):
                _idle(client, pool_id)
                pooled.append(_start(client, instance_pool_id=pool_id))
        finally:
            stop(state_dir)
    print(f"{'cluster start (create -> RUNNING)':36}{'client-seen':>14}{'workspace':>12}")
    for label, times in (("cold (driver + JVM start)", cold), ("from a pool (idle instance)", pooled)):
        seen = statistics.median(t[0] for t in times)
        recorded = statistics.median(t[1] for t in times)
        print(f"{label:36}{seen:>13.2f}s{recorded:>11.2f}s")
    cold_seen = statistics.median(t[0] for t in cold)
    pooled_seen = statistics.median(t[0] for t in pooled)
    print(f"median of {STARTS} starts each; from a pool {cold_seen / pooled_seen:.0f}x faster (goal: pooled <= 1 s)")


if __name__ == "__main__":
    main()
