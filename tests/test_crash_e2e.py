"""Issue 24's "done when" for a crash, on real Spark through Dagster: the embedded workspace's server
is killed (SIGKILL) while a notebook is writing a table. Its cluster dies with it (no orphan JVM, nor
anything the task started);
the step says the workspace is unreachable within a minute, restarts it on the same state dir and
ends with the restarted workspace's message; the cluster is marked terminated with a reason; the
half-written table is gone while a committed one stays; materializing the same partition again is
green with no cleanup by hand. One cluster at a time: two cluster starts in all.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from fake_runtime import process_gone

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.deployment import DEPLOYMENT_ENV
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.local_workspace.app import read_connection
from dbx_assets.local_workspace.engine.scheduler import RESTART_MESSAGE
from dbx_assets.local_workspace.launcher import stop

PARTITION = "2026-11-02"
# Writes a small committed table, then `crash.orders` slowly (one row a second through a Python UDF)
# while the flag file exists: the window in which the test kills the server.
WRITER = """# Databricks notebook source
import json, os, time
from pyspark.sql import functions as F
dbutils.widgets.text("partition_key", "")
dbutils.widgets.text("slow_flag", "")
day = dbutils.widgets.get("partition_key")
spark.sql("CREATE SCHEMA IF NOT EXISTS crash")
spark.range(3).write.mode("overwrite").saveAsTable("crash.committed")
rows = spark.range(0, 60, 1, 1)
if os.path.exists(dbutils.widgets.get("slow_flag")):
    import subprocess
    subprocess.Popen(["sleep", "597"])  # what a task starts (%sh, a tool): it must not outlive the server
    crawl = F.udf(lambda x: (time.sleep(1), x)[1], "long")
    rows = rows.select(crawl("id").alias("id"))
rows.withColumn("day", F.lit(day)).write.mode("overwrite").saveAsTable("crash.orders")
dbutils.notebook.exit(json.dumps({"rows": spark.table("crash.orders").count()}))
"""


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (the server's clusters: driver, JVM, Python workers, task processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _wait(what: str, condition: Callable[[], object], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _logs(instance: dg.DagsterInstance) -> list[tuple[float, str]]:
    """(timestamp, message) of what the steps logged; a read can collide with the step's writes."""
    for _ in range(50):
        try:
            return [
                (e.timestamp, e.user_message)
                for r in instance.get_runs()
                for e in instance.all_logs(r.run_id)
                if e.user_message
            ]
        except Exception:
            time.sleep(0.05)
    return []


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    """No workspace settings: the resource starts the embedded workspace in a state dir of this test's own."""
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", DEPLOYMENT_ENV):
        monkeypatch.delenv(var, raising=False)
    state_dir = tmp_path / "workspace"
    try:
        yield state_dir
    finally:
        stop(state_dir)


def test_killing_the_workspace_mid_write_then_the_same_partition_again_is_green(embedded, tmp_path):
    state_dir, notebooks = embedded, tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "writer.py").write_text(WRITER)
    slow_flag = state_dir / "dbfs" / "tmp" / "crash" / "slow"
    slow_flag.parent.mkdir(parents=True)
    slow_flag.touch()
    workflow = Workflow(
        name="crash",
        sources=[
            NotebookTasks(
                [NotebookAsset(key="crash_orders", notebook="writer.py", params={"slow_flag": "/dbfs/tmp/crash/slow"})],
                notebooks_dir=notebooks,
            )
        ],
    )
    assets = build_workflow_assets(
        workflow, partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run()
    )
    resource = DatabricksResource(local_state_dir=str(state_dir), workspace_root="/Shared/tests/crash")
    instance = dg.DagsterInstance.ephemeral()
    out: dict = {}

    def first_materialization() -> None:
        out["result"] = dg.materialize(
            [assets],
            partition_key=PARTITION,
            resources={"databricks": resource},
            instance=instance,
            raise_on_error=False,
        )

    started = time.monotonic()
    step = threading.Thread(target=first_materialization, daemon=True)
    step.start()
    orders = state_dir / "warehouse" / "crash.db" / "orders"
    committed = state_dir / "warehouse" / "crash.db" / "committed"
    # A Delta write puts its data files straight into the table dir and commits them in `_delta_log` at the end.
    _wait(
        "the notebook to be writing crash.orders",
        lambda: orders.is_dir() and any(f.name.startswith("part-") for f in orders.iterdir()),
    )
    assert not list(orders.glob("_delta_log/*.json"))  # nothing committed yet
    time.sleep(1)  # a few rows into the write
    before = read_connection(state_dir) or {}
    server_pid, host = int(before["pid"]), before["host"]
    doomed = _descendants(server_pid)
    assert len(doomed) >= 4, doomed  # the task process and what it started, the driver and its JVM at least
    assert any(_cmdline(p) == "sleep 597" for p in doomed)
    os.kill(server_pid, signal.SIGKILL)
    killed_at = time.time()

    # The cluster dies with its server: nothing of it outlives it for long.
    _wait("the cluster's processes to exit", lambda: all(process_gone(p) for p in doomed), timeout=30)

    step.join(timeout=300)
    assert not step.is_alive()
    ended_at = time.time()
    first = out["result"]
    assert not first.success
    logs = _logs(instance)
    lost = [(t, m) for t, m in logs if "unreachable since" in m]
    assert len(lost) == 1, logs
    lost_at, lost_line = lost[0]
    assert lost_at - killed_at < 60, f"said {lost_at - killed_at:.0f} s after the kill"
    assert (
        lost_line.startswith(f"Databricks workspace {host} unreachable since ")
        and "(ConnectionRefusedError)" in lost_line
    )
    assert any("restarted it on its state dir" in m for _, m in logs), logs
    failures = [e for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failures[0].step_failure_data.error.message
    assert f"- crash_orders: FAILED: {RESTART_MESSAGE}" in message, message
    assert "Traceback" not in message

    # The restarted workspace: the run and its cluster ended with a reason; the half-written table is
    # gone, the committed one is whole.
    after = read_connection(state_dir) or {}
    assert int(after["pid"]) != server_pid
    assert after["host"] == host  # back at the same address, as a control plane comes back
    resource_client = DatabricksResource(local_state_dir=str(state_dir)).get_client()
    assert resource_client.config.host == host
    (run,) = list(resource_client.jobs.list_runs(expand_tasks=True))
    assert run.state and run.state.life_cycle_state and run.state.life_cycle_state.value == "INTERNAL_ERROR"
    assert run.state.state_message == RESTART_MESSAGE
    (task,) = run.tasks or []
    assert task.cluster_instance and task.cluster_instance.cluster_id
    cluster_id = task.cluster_instance.cluster_id
    cluster = resource_client.clusters.get(cluster_id)
    assert cluster.state and cluster.state.value == "TERMINATED"
    assert cluster.termination_reason and cluster.termination_reason.code
    assert cluster.termination_reason.code.value == "DRIVER_UNREACHABLE"
    assert "restarted" in (cluster.state_message or "")
    termination_reasons = [
        e.details.reason.code.value
        for e in resource_client.clusters.events(cluster_id)
        if e.type and e.type.value == "TERMINATING" and e.details and e.details.reason and e.details.reason.code
    ]
    assert termination_reasons == ["DRIVER_UNREACHABLE"], (
        termination_reasons
    )  # clusters/events: the cluster was lost with the workspace
    assert not orders.exists()
    assert (committed / "_delta_log" / "00000000000000000000.json").is_file()
    assert "removed half-written table crash.orders" in (state_dir / "server.log").read_text()

    # The same partition again: green, nothing cleaned by hand.
    slow_flag.unlink()
    again = dg.materialize(
        [assets], partition_key=PARTITION, resources={"databricks": resource}, instance=instance, raise_on_error=False
    )
    assert again.success, [e.message for e in again.all_events if e.is_failure]
    (event,) = again.get_asset_materialization_events()
    assert event.materialization.metadata["rows"].value == 60
    print(
        f"crash e2e: {time.monotonic() - started:.0f} s; outage said {lost_at - killed_at:.0f} s and the step ended "
        f"{ended_at - killed_at:.0f} s after the kill"
    )
    for _, line in logs:
        print("STEP LOG:", line)
    print("STEP FAILURE:", message)
