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
E: Dagster Pipes on real local Spark: three pipes-enabled notebooks (tests/notebooks/pipes_report.py)
   in one run; the channel's extra calls per task (dbfs put/mkdirs/list/read) and, per task, whether
   its check, metadata value and printed lines arrived (`python -m bench.api_calls --only-pipes`).
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

from dbx_assets import DEFAULT_CLUSTER_SPEC, DatabricksResource, Workflow, build_workflow_assets
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


def _log_tailing(host: str, token: str, api, state_dir: Path | None = None) -> None:
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


def _runtime_evidence(state_dir: Path) -> list[str]:
    """What each task process of the real runtime logged about its libraries and its Spark session."""
    lines = [
        f"{log.parent.name}/driver.log: {line.strip()[:160]}"
        for log in sorted(state_dir.rglob("driver.log"))
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("cluster driver ready:")
    ]
    for log in sorted(state_dir.rglob("logs.txt")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("[local runtime] libraries") or "spark" in line.lower():
                lines.append(line.strip()[:200])
    return lines


def _pipes(host: str, token: str, api, state_dir: Path | None = None) -> None:
    name = "benchpipes" + uuid.uuid4().hex[:8]
    resource = DatabricksResource(host=host, token=token, workspace_root=f"/Shared/bench/{name}")
    api.do("PUT", FAULTS, body={"reset_counts": True})
    with (
        tempfile.TemporaryDirectory(prefix="bench_pipes_dagster_") as home,
        dg.instance_for_test(temp_dir=home) as instance,
    ):
        started = time.perf_counter()
        result = dg.materialize(
            [build_workflow_assets(_workflow_support().pipes_workflow(name))],
            resources={"databricks": resource},
            instance=instance,
            raise_on_error=False,
        )
        wall = time.perf_counter() - started
        stdout, _ = _workflow_support().captured_compute_logs(instance, result)
        logged = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    requests = _faults(api, "GET")["requests"]

    def calls(suffix: str) -> int:
        return sum(n for k, n in requests.items() if k.endswith(suffix))

    tasks = len(_workflow_support().PIPES_LABELS)
    polls = calls("/jobs/runs/get")
    channel = {op: calls(f"/dbfs/{op}") for op in ("put", "mkdirs", "list", "read")}
    print(
        f"\nE. Dagster Pipes on local Spark ({tasks} pipes tasks, one run, {wall:.0f} s, success={result.success}): "
        f"{polls} runs/get; channel calls per task: "
        + ", ".join(f"{n / tasks:.1f} dbfs/{op}" for op, n in channel.items())
        + f" = {sum(channel.values()) / tasks:.1f} extra calls per task"
    )
    checks = {
        e.asset_check_evaluation_data.asset_key.path[-1]: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    materializations = {
        e.materialization.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()
    }
    for label in _workflow_support().PIPES_LABELS:
        task = f"{name}__{label}"
        check = checks.get(label)
        meta = materializations[label].metadata if label in materializations else {}
        value = meta["label"].value if "label" in meta else None
        version = (
            (materializations[label].tags or {}).get("dagster/data_version") if label in materializations else None
        )
        lines = [line for line in stdout.splitlines() if line.startswith(f"[{task}] ") and "printed by" in line]
        print(
            f"  {label}: check label_is_set "
            f"{'missing' if check is None else ('passed' if check.passed else 'FAILED')}; "
            f"metadata label={value!r}; data_version={version!r}; "
            f"pipes.log line {'arrived' if f'[{task}] {label} is reporting' in logged else 'MISSING'}; "
            f"stdout lines {lines}"
        )
    if state_dir is not None:
        for line in _runtime_evidence(state_dir):
            print(f"  runtime log: {line}")


def _run_alone(part) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_api_calls_") as tmp:
        conn = ensure_running(Path(tmp))
        try:
            from databricks.sdk import WorkspaceClient

            part(conn.host, conn.token, WorkspaceClient(host=conn.host, token=conn.token).api_client, Path(tmp))
        finally:
            stop(Path(tmp))


def main() -> None:
    if "--only-logs" in sys.argv[1:]:
        _run_alone(_log_tailing)
        return
    if "--only-pipes" in sys.argv[1:]:
        _run_alone(_pipes)
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
            _pipes(conn.host, conn.token, api, state_dir)
        finally:
            stop(state_dir)


if __name__ == "__main__":
    main()
