"""API calls per full-graph materialization, with and without injected faults, and the polling rate.

Runs a workspace of its own (temp state dir) and reads the server's per-endpoint request counter
(GET /api/2.0/local/faults), so what is counted is what the workspace actually received.

A: the 4-notebook test workflow (tests/notebooks), fresh job, no faults.
B: the same with 20% of calls answered 429 and 5% 503 (the SDK retries them).
C: runs/get calls per minute while one 60 s notebook runs (from server.log timestamps
   within the task's execution window), i.e. the runner's backoff at steady state.
D: log tailing: the same four notebooks on a job cluster with a cluster_log_conf (dbfs:/), the
   driver log calls (dbfs/list + dbfs/read) against runs/get, i.e. the extra calls per poll
   (`python -m bench.api_calls --only-logs` runs just this one).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg

from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.model import DEFAULT_CLUSTER_SPEC
from dbx_assets.local_workspace.launcher import ensure_running, stop

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
FAULTS = "/api/2.0/local/faults"
_API_PREFIX = re.compile(r"^/api/[\d.]+/")
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO GET /api/[\d.]+/jobs/runs/get -> ")


def _workflow_support():
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    import workflow_support

    return workflow_support


def _materialize(host: str, token: str, slow_seconds: int = 1, only: str | None = None) -> tuple[str, float, bool]:
    ws = _workflow_support()
    name = "bench" + uuid.uuid4().hex[:8]
    assets = build_workflow_assets(ws.make_workflow(name, slow_seconds))
    resource = DatabricksResource(host=host, token=token, workspace_root=f"/Shared/bench/{name}")
    started = time.perf_counter()
    result = dg.materialize(
        [assets],
        resources={"databricks": resource},
        selection=[ws.key(name, only)] if only else None,
        raise_on_error=False,
    )
    return name, time.perf_counter() - started, result.success


def _short(endpoint: str) -> str:
    method, path = endpoint.split(" ", 1)
    return f"{method} {_API_PREFIX.sub('', path)}"


def _faults(api, method: str, **kwargs) -> dict:
    """The local workspace's fault settings and request counts (a JSON object)."""
    answer = api.do(method, FAULTS, **kwargs)
    assert isinstance(answer, dict), answer
    return answer


def _print_counts(label: str, snapshot: dict, wall: float) -> None:
    requests = snapshot["requests"]
    injected = {k: sum(v.values()) for k, v in snapshot["injected"].items()}
    print(f"\n{label}: {sum(requests.values())} API calls in {wall:.1f} s; injected faults: {injected or 'none'}")
    for endpoint, n in sorted(requests.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:4d}  {_short(endpoint)}")


def _runs_get_per_minute(client, log_path: Path, name: str) -> tuple[float, int, float]:
    job = next(iter(client.jobs.list(name=name)))
    run = client.jobs.get_run(next(iter(client.jobs.list_runs(job_id=job.job_id))).run_id)
    task = run.tasks[0]
    begin_ms = task.start_time + (task.setup_duration or 0)
    end_ms = task.end_time
    stamps = []
    for line in log_path.read_text().splitlines():
        m = _LOG_LINE.match(line)
        if m:
            stamps.append(dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000)
    inside = [s for s in stamps if begin_ms <= s <= end_ms]
    minutes = (end_ms - begin_ms) / 60000
    return len(inside) / minutes, len(inside), minutes * 60


def _log_tailing(host: str, token: str, api) -> None:
    ws = _workflow_support()
    name = "benchlogs" + uuid.uuid4().hex[:8]
    cluster = {**DEFAULT_CLUSTER_SPEC, "cluster_log_conf": {"dbfs": {"destination": f"dbfs:/cluster-logs/{name}"}}}
    workflow = Workflow(name=name, sources=[ws.notebook_tasks(name, 5)], job_clusters={"shared": cluster})
    resource = DatabricksResource(host=host, token=token, workspace_root=f"/Shared/bench/{name}")
    api.do("PUT", FAULTS, body={"reset_counts": True})
    started = time.perf_counter()
    result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": resource}, raise_on_error=False)
    wall = time.perf_counter() - started
    assert result.success, "the materialization with cluster logs failed"
    requests = _faults(api, "GET")["requests"]
    polls = sum(n for k, n in requests.items() if k.endswith("/jobs/runs/get"))
    listings = sum(n for k, n in requests.items() if k.endswith("/dbfs/list"))
    reads = sum(n for k, n in requests.items() if k.endswith("/dbfs/read"))
    print(
        f"\nD. cluster log tailing (1 job cluster, 4 tasks, {wall:.0f} s): {polls} runs/get, "
        f"{listings} dbfs/list, {reads} dbfs/read = {(listings + reads) / max(polls, 1):.2f} extra calls per poll "
        f"({listings / max(polls, 1):.2f} listings: at most one per cluster per poll; reads only when a file grew)"
    )


def main() -> None:
    if "--only-logs" in sys.argv[1:]:
        with tempfile.TemporaryDirectory(prefix="bench_api_calls_") as tmp:
            conn = ensure_running(Path(tmp))
            try:
                from databricks.sdk import WorkspaceClient

                _log_tailing(conn.host, conn.token, WorkspaceClient(host=conn.host, token=conn.token).api_client)
            finally:
                stop(Path(tmp))
        return
    with tempfile.TemporaryDirectory(prefix="bench_api_calls_") as tmp:
        state_dir = Path(tmp)
        conn = ensure_running(state_dir)
        try:
            from databricks.sdk import WorkspaceClient

            client = WorkspaceClient(host=conn.host, token=conn.token)
            api = client.api_client

            api.do("PUT", FAULTS, body={"reset_counts": True})
            _, wall, ok = _materialize(conn.host, conn.token)
            assert ok, "the fault-free materialization failed"
            _print_counts("A. full graph, no faults", _faults(api, "GET"), wall)

            config = _faults(api, "PUT", body={"rate_limit": 0.2, "server_error": 0.05, "reset_counts": True})
            _, wall, ok = _materialize(conn.host, conn.token)
            snapshot = _faults(api, "GET")
            api.do("PUT", FAULTS, body={})
            assert ok, f"the materialization under faults failed (seed {config['seed']})"
            _print_counts(f"B. full graph, 20% 429 + 5% 503 (seed {config['seed']})", snapshot, wall)

            name, wall, ok = _materialize(conn.host, conn.token, slow_seconds=60, only="slow")
            assert ok, "the 60 s notebook failed"
            per_minute, calls, seconds = _runs_get_per_minute(client, state_dir / "server.log", name)
            print(
                f"\nC. polling while a 60 s notebook runs: {calls} runs/get calls in {seconds:.0f} s "
                f"of task execution = {per_minute:.1f} per minute (materialization {wall:.0f} s)"
            )
            _log_tailing(conn.host, conn.token, api)
        finally:
            stop(state_dir)


if __name__ == "__main__":
    main()
