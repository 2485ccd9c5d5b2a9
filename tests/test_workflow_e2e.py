"""Notebook assets end to end on the fake runtime: Dagster → databricks-sdk → the local workspace
over HTTP → notebooks as plain Python processes (no JVM; tests/fake_runtime.py). Each scenario
once; real Spark is covered by tests/test_mixed_compute_e2e.py and tests/test_newcomer.py."""

from __future__ import annotations

import _thread
import contextvars
import io
import os
import signal
import threading
import time
import uuid

import dagster as dg
from fake_runtime import deployed_job_name, process_gone
from workflow_support import (
    ALL_ASSETS,
    IN_PROCESS,
    flag_dbfs_path,
    key,
    make_assets,
    make_resource,
    make_workflow,
    materialization_metadata,
    materialize,
    materialized,
    new_name,
    notebook_tasks,
    reconstructable_test_job,
    source_rows_dbfs_path,
    start_step,
    step_failure_message,
)

from dbx_assets.integration.deployment import default_deployment
from dbx_assets.integration.jobs.model import DEFAULT_CLUSTER_SPEC, DEFAULT_JOB_CLUSTER_KEY
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow


def _wait_terminated(ws, run_id: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ws.client.jobs.get_run(run_id)
        if run.state.life_cycle_state.value in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"Databricks run {run_id} did not end within {timeout}s")


def _kill(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_full_graph_is_one_run_on_one_cluster(dbx_env):
    ws, name = dbx_env, new_name()
    clusters_before = ws.cluster_ids()
    result = materialize(name)
    assert result.success
    metas = {a: materialization_metadata(result, key(name, a)) for a in ALL_ASSETS}
    run_ids = {m["databricks_run_id"] for m in metas.values()}
    assert len(run_ids) == 1
    run = ws.client.jobs.get_run(run_ids.pop())
    clusters = {t.cluster_instance.cluster_id for t in run.tasks}
    assert len(run.tasks) == 4 and len(clusters) == 1
    assert ws.cluster_ids() - clusters_before == clusters  # one cluster started for the whole graph
    assert {m["databricks_cluster_id"] for m in metas.values()} == clusters
    # exit values: a JSON object becomes entries, plain text stays text
    assert metas["source"]["rows"] == 10
    assert metas["flaky"]["notebook_exit_value"] == "plain text result"
    assert "notebook_exit_value" not in metas["sink"]
    assert metas["source"]["databricks_run_url"] == run.run_page_url
    assert all(m["databricks_task_run_id"] != m["databricks_run_id"] for m in metas.values())
    assert metas["source"]["execution_duration_s"] > 0
    # the notebook's /dbfs file is in the workspace's DBFS
    with ws.client.dbfs.download(source_rows_dbfs_path(name)) as fh:
        assert fh.read().decode().split() == [str(i) for i in range(10)]
    assert len(ws.job_runs(name)) == 1


def test_subset_runs_only_selected_tasks(dbx_env):
    ws, name = dbx_env, new_name()
    result = materialize(name, selection=[key(name, "source"), key(name, "slow")])
    assert result.success
    assert materialized(result) == {key(name, "source"), key(name, "slow")}
    run = ws.client.jobs.get_run(materialization_metadata(result, key(name, "slow"))["databricks_run_id"])
    assert sorted(t.task_key for t in run.tasks) == [f"{name}__slow", f"{name}__source"]


def test_failure_fails_its_asset_and_reexecution_repairs_the_same_run(dbx_env, tmp_path):
    ws, name = dbx_env, new_name()
    ws.client.dbfs.upload(flag_dbfs_path(name), io.BytesIO(b"fail"), overwrite=True)
    job = reconstructable_test_job(name)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.execute_job(job, instance=instance, run_config=IN_PROCESS, raise_on_error=False) as first:
            assert not first.success
            assert materialized(first) == {key(name, "source"), key(name, "slow")}  # siblings stay materialized
            message = step_failure_message(first)
            assert "flag file" in message and "says fail" in message  # the notebook's own error
            assert "/jobs/" in message  # and the run page URL
            source_meta = materialization_metadata(first, key(name, "source"))
        databricks_run_id = source_meta["databricks_run_id"]
        run = ws.client.jobs.get_run(databricks_run_id)
        states = {t.task_key.split("__")[1]: t.state.result_state.value for t in run.tasks}
        assert states == {"source": "SUCCESS", "flaky": "FAILED", "sink": "UPSTREAM_FAILED", "slow": "SUCCESS"}

        ws.client.dbfs.delete(flag_dbfs_path(name))
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        with dg.execute_job(
            job, instance=instance, run_config=IN_PROCESS, reexecution_options=options, raise_on_error=False
        ) as second:
            assert second.success
            assert materialized(second) == {key(name, "flaky"), key(name, "sink")}
            assert materialization_metadata(second, key(name, "flaky"))["databricks_run_id"] == databricks_run_id
    repaired = ws.client.jobs.get_run(databricks_run_id, include_history=True)
    assert [h.type.value for h in repaired.repair_history] == ["ORIGINAL", "REPAIR"]
    assert len(ws.job_runs(name)) == 1  # repaired, not rerun
    source_runs = {t.run_id for t in repaired.tasks if t.task_key == f"{name}__source"}
    assert source_runs == {source_meta["databricks_task_run_id"]}  # the successful task was not rerun


def test_sigint_to_the_step_process_cancels_the_run_and_its_task_process(dbx_env):
    ws, name = dbx_env, new_name()
    step = start_step(name, str(uuid.uuid4()), 600, "slow", ws.env())
    try:
        run, task = ws.wait_for_running_task(name, "slow")
        pid = ws.task_pid(task.run_id)
        assert not process_gone(pid)
        os.killpg(step.pid, signal.SIGINT)  # what terminating a Dagster run delivers to its step process
        ended = _wait_terminated(ws, run.run_id)
        assert ended.state.result_state.value == "CANCELED", ended.state
        deadline = time.monotonic() + 10
        while not process_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_gone(pid), f"task process {pid} still running after the run was cancelled"
        out = step.communicate(timeout=60)[0]
        assert "Cancelling Databricks run" in out, out[-3000:]
        assert out.strip().endswith("FAILURE"), out[-3000:]
    finally:
        _kill(step)


def test_terminating_an_in_process_run_cancels_the_databricks_run(dbx_env):
    """Dagster terminates an in-process step by interrupting the main thread (its SIGINT handler
    turns that into DagsterExecutionInterruptedError inside the step)."""
    ws, name = dbx_env, new_name()
    seen: dict = {}

    def interrupt_when_running() -> None:
        try:
            seen["run"], _ = ws.wait_for_running_task(name, "slow")
        finally:
            _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_when_running, daemon=True)
    watcher.start()
    try:
        # In a copy of the context: an interrupt can land while Dagster holds a context variable
        # (its current instance's state storage), which must not outlive this test.
        result = contextvars.copy_context().run(materialize, name, selection=[key(name, "slow")], slow_seconds=600)
    except KeyboardInterrupt:  # Dagster may re-raise the interrupt after the step cleaned up
        result = None
    watcher.join(timeout=30)
    assert "run" in seen, "the slow task never started"
    if result is not None:
        assert not result.success
        assert materialized(result) == set()
    ended = _wait_terminated(ws, seen["run"].run_id)
    assert ended.state.result_state.value == "CANCELED", ended.state


def test_killed_step_restarted_with_the_same_run_id_reattaches_whatever_the_clock(dbx_env):
    """Reattachment is decided by identity (the launch id job parameter), never by comparing
    clocks. The workspace clock runs 5 minutes ahead while the first step starts the run and
    5 minutes behind when the restarted step reattaches: the run looks like it started in the
    future, then long before the restart."""
    ws, name, run_id = dbx_env, new_name(), str(uuid.uuid4())
    clusters_before = ws.cluster_ids()
    ws.set_faults(clock_offset_seconds=300)
    first = start_step(name, run_id, 6, "all", ws.env())
    again = None
    try:
        run, _ = ws.wait_for_running_task(name, "slow")
        os.killpg(first.pid, signal.SIGKILL)  # no chance to cancel: the Databricks run keeps going
        first.wait(timeout=30)
        ws.set_faults(clock_offset_seconds=-300)
        again = start_step(name, run_id, 6, "all", ws.env())  # the same Dagster run id re-executes the step
        out = again.communicate(timeout=300)[0]
    finally:
        _kill(first)
        if again is not None:
            _kill(again)
        ws.faults_off()
    assert out.strip().endswith("SUCCESS"), out[-3000:]
    assert "Reattached to Databricks run" in out, out[-3000:]
    assert f"MATERIALIZED {sorted(f'{name}/{a}' for a in ALL_ASSETS)}" in out
    assert [r.run_id for r in ws.job_runs(name)] == [run.run_id]  # no second run
    assert len(ws.cluster_ids() - clusters_before) == 1  # and no second cluster


def test_partition_key_and_range_reach_the_notebook(dbx_env):
    name = new_name()
    assets = make_assets(name, partitioned=True)
    result = materialize(name, selection=[key(name, "source")], assets=assets, partition_key="2026-11-05")
    assert result.success
    meta = materialization_metadata(result, key(name, "source"))
    assert (meta["partition_key"], meta["partition_start"], meta["partition_end"]) == ("2026-11-05",) * 3

    job = dg.Definitions(
        assets=[assets], resources={"databricks": make_resource(name)}
    ).resolve_implicit_global_asset_job_def()
    ranged = job.execute_in_process(
        asset_selection=[key(name, "source")],
        tags={"dagster/asset_partition_range_start": "2026-11-02", "dagster/asset_partition_range_end": "2026-11-04"},
    )
    meta = materialization_metadata(ranged, key(name, "source"))
    assert (meta["partition_key"], meta["partition_start"], meta["partition_end"]) == ("", "2026-11-02", "2026-11-04")


def test_all_purpose_mode_deletes_its_cluster_even_on_failure(dbx_env):
    ws, name = dbx_env, new_name()
    ws.client.dbfs.upload(flag_dbfs_path(name), io.BytesIO(b"fail"), overwrite=True)
    before = ws.cluster_ids()
    result = materialize(name, assets=build_workflow_assets(make_workflow(name, compute="all_purpose")))
    assert not result.success  # flaky failed ...
    assert materialized(result) == {key(name, "source"), key(name, "slow")}
    meta = materialization_metadata(result, key(name, "source"))
    run = ws.client.jobs.get_run(meta["databricks_run_id"])
    assert run.run_type.value == "SUBMIT_RUN"
    assert {t.existing_cluster_id for t in run.tasks} == {meta["databricks_cluster_id"]}
    # ... and the all-purpose cluster it ran on is gone anyway
    assert ws.cluster_ids() == before


def test_notebook_deleted_from_the_workspace_is_named_and_reuploaded(dbx_env):
    """Deleted after deploy, before its task starts: the task fails naming the notebook; the next
    materialization notices the deploy manifest is stale, uploads it again, and succeeds."""
    ws, name = dbx_env, new_name()
    # A cluster that takes 3 s to start: the window between run-now and the task reading its notebook.
    slow_start = {**DEFAULT_CLUSTER_SPEC, "spark_conf": {"fake.start_seconds": "3"}}
    workflow = Workflow(name=name, sources=[notebook_tasks(name)], job_clusters={DEFAULT_JOB_CLUSTER_KEY: slow_start})
    assets = build_workflow_assets(workflow)
    selection = [key(name, "slow")]
    notebook = f"/Shared/tests/{name}/{default_deployment()}/notebooks/slow"
    results: dict = {}
    thread = threading.Thread(target=lambda: results.setdefault("first", materialize(name, selection, assets=assets)))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not (list(ws.client.jobs.list(name=deployed_job_name(name))) and ws.job_runs(name)):
            assert time.monotonic() < deadline, "the materialization started no run"
            time.sleep(0.1)
        ws.client.workspace.delete(notebook)
    finally:
        thread.join(timeout=300)
    first = results["first"]
    assert not first.success
    message = step_failure_message(first)
    assert notebook in message and "missing" in message, message

    second = materialize(name, selection, assets=assets)
    assert second.success
    assert ws.client.workspace.get_status(notebook).path == notebook
    runs = [ws.client.jobs.get_run(r.run_id) for r in ws.job_runs(name)]
    assert sorted(r.state.result_state.value for r in runs) == ["FAILED", "SUCCESS"]
