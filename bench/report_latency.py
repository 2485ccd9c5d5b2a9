"""How fast each asset turns green after its Databricks task ends, on the demo graph.

Two materializations of the whole demo graph for one day on a fresh embedded workspace: the
first builds the history the watcher learns usual durations from, the second is measured.
Prints, per asset, the latency from its task's `end_time` to its materialization event
(both clocks are this machine's), the worst for notebooks and for dbt models, the gaps between a
task's upstream tasks' end and its own start (from the run document), the step's wall time against
the Databricks run and the run against the ideal (its cluster start plus the critical path of the
tasks' execution times), and runs/get calls per minute. The demo's job cluster takes its driver
from the demo's instance pool, as under `make dev`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import dagster as dg

from dbx_assets import DatabricksResource
from dbx_assets.demo.definitions import demo_assets
from dbx_assets.demo.landing import land_customers, land_day
from dbx_assets.demo.pool import ensure_demo_pool
from dbx_assets.local_workspace.launcher import stop

DAY = dt.date(2026, 11, 20)
FAULTS = "/api/2.0/local/faults"  # the admin endpoint also counts requests by endpoint


def _critical_path_ms(tasks) -> float:
    """Longest chain of execution durations through depends_on."""
    by_key = {t.task_key: t for t in tasks}
    memo: dict[str, float] = {}

    def longest(key: str) -> float:
        if key not in memo:
            task = by_key[key]
            upstream = [d.task_key for d in task.depends_on or [] if d.task_key in by_key]
            memo[key] = (task.execution_duration or 0) + max((longest(u) for u in upstream), default=0.0)
        return memo[key]

    return max(longest(k) for k in by_key)


def _gaps_ms(tasks) -> list[tuple[str, float]]:
    """(task key, its start_time minus its upstream tasks' latest end_time) for each task with upstreams."""
    by_key = {t.task_key: t for t in tasks}
    gaps = []
    for task in tasks:
        ends = [by_key[d.task_key].end_time or 0 for d in task.depends_on or [] if d.task_key in by_key]
        if ends and task.start_time:
            gaps.append((task.task_key or "", float(task.start_time - max(ends))))
    return gaps


def _materialize(resource: DatabricksResource, instance: dg.DagsterInstance) -> tuple[dg.ExecuteInJobResult, float]:
    started = time.time()
    result = dg.materialize(
        [demo_assets], partition_key=DAY.isoformat(), resources={"databricks": resource}, instance=instance
    )
    return result, time.time() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_latency_") as tmp:
        state_dir = Path(tmp) / "workspace"
        resource = DatabricksResource(local_state_dir=str(state_dir), workspace_root="/Shared/bench_latency")
        try:
            client = resource.get_client()
            land_customers(client)
            land_day(client, DAY)
            ensure_demo_pool(client)
            with dg.DagsterInstance.ephemeral() as instance:
                _materialize(resource, instance)  # history: usual durations per task
                client.api_client.do("PUT", FAULTS, body={"reset_counts": True})
                result, wall = _materialize(resource, instance)
                counts = client.api_client.do("GET", FAULTS)
                calls: dict[str, int] = counts["requests"] if isinstance(counts, dict) else {}
                records = {
                    r.asset_key: r
                    for key in demo_assets.keys
                    for r in instance.fetch_materializations(key, limit=1).records
                    if r.asset_key is not None
                }
            events = {e.asset_key: e for e in result.get_asset_materialization_events()}
            run_id = int(next(iter(events.values())).materialization.metadata["databricks_run_id"].value)
            run = client.jobs.get_run(run_id)
            tasks = run.tasks or []
            end_ms = {t.run_id: t.end_time or 0 for t in tasks}
            dbt_task_runs = {t.run_id for t in tasks if t.dbt_task is not None}
            print(f"{'asset':26}{'task end -> event':>20}")
            latencies = []
            by_kind: dict[str, list[float]] = {"notebooks": [], "dbt models": []}
            for key in sorted(records, key=lambda k: k.to_user_string()):
                meta = events[key].materialization.metadata
                task_run_id = meta["databricks_task_run_id"].value
                latency = records[key].timestamp - end_ms[task_run_id] / 1000
                latencies.append(latency)
                by_kind["dbt models" if task_run_id in dbt_task_runs else "notebooks"].append(latency)
                print(f"{key.to_user_string():26}{latency:>19.2f}s")
            setup_ms = max((t.setup_duration or 0) for t in tasks)  # the first tasks wait for the cluster
            ideal = (setup_ms + _critical_path_ms(tasks)) / 1000
            databricks = ((run.end_time or 0) - (run.start_time or 0)) / 1000
            runs_get = sum(n for endpoint, n in calls.items() if endpoint.endswith("/jobs/runs/get"))
            print(f"max latency {max(latencies):.2f} s, mean {sum(latencies) / len(latencies):.2f} s")
            for kind, values in by_kind.items():
                if values:
                    print(f"  worst report latency, {kind}: {max(values):.2f} s (goal <= 1 s)")
            gaps = _gaps_ms(tasks)
            worst_gap = max(gaps, key=lambda g: g[1], default=("-", 0.0))
            print(
                f"gaps upstream end -> task start (run document): worst {worst_gap[1]:.0f} ms ({worst_gap[0]}), "
                f"all {sorted(round(g) for _, g in gaps)} ms (goal <= 100 ms)"
            )
            print(
                f"ideal {ideal:.1f} s (cluster start {setup_ms / 1000:.1f} s + critical path); Databricks run "
                f"{databricks:.1f} s = {databricks / ideal:.2f}x ideal (goal <= 1.05x); Dagster materialize "
                f"{wall:.1f} s = {wall / databricks:.2f}x the run (goal <= 1.03x), {wall / ideal:.2f}x ideal"
            )
            print(f"runs/get calls: {runs_get} in {wall:.0f} s = {runs_get / wall * 60:.1f} per minute")
        finally:
            stop(state_dir)


if __name__ == "__main__":
    main()
