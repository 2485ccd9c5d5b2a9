"""API fidelity of the local workspace, checked through the real SDK and raw HTTP (fake runtime, no Spark):
Databricks' status codes and error codes, the SDK's own helpers, single-task submits as Airflow sends
them, explicit nulls, scheduler failures that must not hang a run, and the clock-skew fault."""

from __future__ import annotations

import base64
import io
import time
from email.utils import parsedate_to_datetime

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.workspace import ImportFormat

from dbx_assets.local_workspace.__main__ import FAULT_FLAGS, _fault_settings
from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.http.faults import FaultConfig

HEADER = "# Databricks notebook source\n"
NEW_CLUSTER = {"spark_version": "15.4.x-scala2.12", "num_workers": 0}
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


def call(ws, method: str, path: str, body: dict | None = None, params: dict | None = None) -> requests.Response:
    return requests.request(
        method, ws.host + path, json=body, params=params, timeout=30, headers={"Authorization": f"Bearer {ws.token}"}
    )


def wait_raw(ws, run_id: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = call(ws, "GET", "/api/2.1/jobs/runs/get", params={"run_id": run_id}).json()
        if run["state"]["life_cycle_state"] in TERMINAL:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not terminal after {timeout}s: {run['state']}")


@pytest.fixture(scope="module")
def nb(fake_client) -> str:
    w = fake_client
    w.workspace.mkdirs("/Shared/fidelity")
    w.workspace.upload(
        "/Shared/fidelity/ok.py",
        io.BytesIO((HEADER + "dbutils.notebook.exit('ok')\n").encode()),
        format=ImportFormat.AUTO,
        overwrite=True,
    )
    return "/Shared/fidelity/ok"


def test_unknown_ids_answer_like_databricks(fake_workspace, fake_client):
    w = fake_client
    unknown: list[tuple[str, dict]] = [
        ("/api/2.1/clusters/get", {"cluster_id": "0000-000000-nope"}),
        ("/api/2.1/jobs/get", {"job_id": 987654321}),
        ("/api/2.1/jobs/runs/get", {"run_id": 987654321}),
    ]
    for path, params in unknown:
        r = call(fake_workspace, "GET", path, params=params)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, r.text)
        assert "does not exist" in r.json()["message"]
    # The SDK turns exactly these answers into ResourceDoesNotExist (its error overrides) ...
    with pytest.raises(ResourceDoesNotExist):
        w.clusters.get("0000-000000-nope")
    with pytest.raises(ResourceDoesNotExist):
        w.jobs.get(987654321)
    with pytest.raises(ResourceDoesNotExist):
        w.jobs.get_run(987654321)
    # ... and everywhere else they stay InvalidParameterValue.
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        w.clusters.delete("0000-000000-nope")
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        w.jobs.cancel_run(987654321)


def test_sdk_node_type_and_spark_version_helpers(fake_client):
    w = fake_client
    assert w.clusters.select_node_type(local_disk=True) == "local"
    assert w.clusters.select_node_type(min_memory_gb=1, min_cores=1) == "local"
    assert w.clusters.select_spark_version(long_term_support=True) == "15.4.x-scala2.12"
    assert w.clusters.select_spark_version(spark_version="3.5.0") == "15.4.x-scala2.12"
    node = w.clusters.list_node_types().node_types[0]
    assert node.node_instance_type.local_disks == 1 and node.is_deprecated is False


def test_wrong_types_are_400_not_500(fake_workspace):
    r = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/runs/submit",
        {
            "run_name": "bad",
            "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "/x"}, "timeout_seconds": "soon"}],
        },
    )
    assert (
        r.status_code == 400
        and r.json()["error_code"] == "MALFORMED_REQUEST"
        and "tasks[0].timeout_seconds" in r.json()["message"]
    )
    r = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/create",
        {"name": "bad", "tasks": [{"task_key": "t", "run_if": "SOMETIMES"}]},
    )
    assert (
        r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "run_if" in r.json()["message"]
    )
    r = call(fake_workspace, "POST", "/api/2.0/dbfs/put", {"path": "/fidelity/x", "contents": "%%% not base64"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_single_task_submit_as_airflow_sends_it(fake_workspace, fake_client, nb):
    # DatabricksSubmitRunOperator(notebook_task=..., new_cluster=...): no `tasks`, fields at the top level.
    r = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/runs/submit",
        {
            "run_name": "airflow_nb",
            "notebook_task": {"notebook_path": nb},
            "new_cluster": NEW_CLUSTER,
            "timeout_seconds": 60,
        },
    )
    assert r.status_code == 200, r.text
    run = fake_client.jobs.wait_get_run_job_terminated_or_skipped(r.json()["run_id"])
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert [t.task_key for t in run.tasks] == ["airflow_nb"]
    assert fake_client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "ok"
    assert fake_client.clusters.get(run.tasks[0].cluster_instance.cluster_id).state == compute.State.TERMINATED

    # spark_python_task on an existing all-purpose cluster, same shape.
    w = fake_client
    w.dbfs.put("/fidelity/job.py", contents=base64.b64encode(b"print('hi')\n").decode(), overwrite=True)
    cluster = w.clusters.create(cluster_name="fidelity-ap", spark_version="15.4.x-scala2.12", num_workers=0).result()
    try:
        r = call(
            fake_workspace,
            "POST",
            "/api/2.1/jobs/runs/submit",
            {
                "run_name": "airflow_py",
                "spark_python_task": {"python_file": "dbfs:/fidelity/job.py", "parameters": ["a"]},
                "existing_cluster_id": cluster.cluster_id,
            },
        )
        assert r.status_code == 200, r.text
        run = w.jobs.wait_get_run_job_terminated_or_skipped(r.json()["run_id"])
        assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
        assert [t.task_key for t in run.tasks] == ["airflow_py"] and run.tasks[
            0
        ].existing_cluster_id == cluster.cluster_id
    finally:
        w.clusters.permanent_delete(cluster.cluster_id)
    r = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/runs/submit",
        {
            "run_name": "both",
            "notebook_task": {"notebook_path": nb},
            "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": nb}}],
        },
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_explicit_nulls_mean_unset(fake_workspace, fake_client, nb):
    body = {
        "run_name": "nulls",
        "timeout_seconds": None,
        "idempotency_token": None,
        "access_control_list": None,
        "tasks": [
            {
                "task_key": "a",
                "notebook_task": {"notebook_path": nb, "base_parameters": None, "source": None},
                "new_cluster": dict(NEW_CLUSTER, spark_conf=None, custom_tags=None),
                "libraries": None,
                "depends_on": None,
                "run_if": None,
                "timeout_seconds": None,
                "max_retries": None,
            },
            {
                "task_key": "b",
                "notebook_task": {"notebook_path": nb},
                "new_cluster": NEW_CLUSTER,
                "depends_on": [{"task_key": "a", "outcome": None}],
                "libraries": None,
            },
        ],
    }
    r = call(fake_workspace, "POST", "/api/2.1/jobs/runs/submit", body)
    assert r.status_code == 200, r.text
    run = wait_raw(fake_workspace, r.json()["run_id"])
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    for t in run["tasks"]:
        assert fake_client.clusters.get(t["cluster_instance"]["cluster_id"]).state == compute.State.TERMINATED
    job = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/create",
        {"name": "nulls", "tasks": None, "job_clusters": None, "parameters": None, "queue": None, "schedule": None},
    )
    assert job.status_code == 200, job.text
    r = call(
        fake_workspace,
        "POST",
        "/api/2.1/jobs/run-now",
        {"job_id": job.json()["job_id"], "notebook_params": None, "job_parameters": None, "only": None},
    )
    assert r.status_code == 200, r.text
    assert wait_raw(fake_workspace, r.json()["run_id"])["state"]["life_cycle_state"] == "TERMINATED"


def test_a_scheduler_bug_ends_the_task_internal_error_and_frees_its_cluster(
    fake_workspace, fake_client, nb, monkeypatch
):
    def broken(run, task, spec):
        raise RuntimeError("simulated scheduler bug")

    monkeypatch.setattr(fake_workspace.scheduler.invocations, "build", broken)
    waiter = fake_client.jobs.submit(
        run_name="bug",
        tasks=[
            jobs.SubmitTask(
                task_key="t",
                notebook_task=jobs.NotebookTask(notebook_path=nb),
                new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
            )
        ],
    )
    run = wait_raw(fake_workspace, waiter.run_id, timeout=20)
    task = run["tasks"][0]
    assert task["state"]["life_cycle_state"] == "INTERNAL_ERROR" and task["state"]["result_state"] == "FAILED"
    assert "simulated scheduler bug" in task["state"]["state_message"]
    assert task["status"]["termination_details"]["code"] == "INTERNAL_ERROR"
    assert run["state"]["life_cycle_state"] in TERMINAL
    assert (
        fake_client.clusters.get(
            task["cluster_instance"]["cluster_id"]
            if "cluster_instance" in task
            else _cluster_named(fake_client, f"run-{waiter.run_id}-t")
        ).state
        == compute.State.TERMINATED
    )
    assert fake_workspace.scheduler.executor(waiter.run_id) is None  # its active-run slot is free


def _cluster_named(w, suffix: str) -> str:
    return next(c.cluster_id for c in w.clusters.list() if (c.cluster_name or "").endswith(suffix))


def test_clock_offset_shifts_reported_times(fake_workspace, fake_client, nb):
    w = fake_client
    offset = 3 * 86400
    r = call(fake_workspace, "PUT", "/api/2.0/local/faults", {"clock_offset_seconds": offset})
    assert r.status_code == 200 and r.json()["config"]["clock_offset_seconds"] == offset
    try:
        before = int(time.time() * 1000)
        run = w.jobs.submit(
            run_name="skewed",
            tasks=[
                jobs.SubmitTask(
                    task_key="t",
                    notebook_task=jobs.NotebookTask(notebook_path=nb),
                    new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
                )
            ],
        ).result()
        after = int(time.time() * 1000)
        skew = offset * 1000
        assert before + skew <= run.start_time <= after + skew
        assert before + skew <= run.end_time <= after + skew and run.end_time >= run.start_time
        assert before + skew <= run.tasks[0].start_time <= after + skew
        assert run.repair_history[0].start_time >= before + skew
        cluster = w.clusters.get(run.tasks[0].cluster_instance.cluster_id)
        assert before + skew <= cluster.start_time <= after + skew and cluster.terminated_time >= cluster.start_time
        # list filters are read in the workspace's clock too
        assert run.run_id in [x.run_id for x in w.jobs.list_runs(start_time_from=before + skew, limit=25)]
        w.dbfs.put("/fidelity/skew.txt", contents=base64.b64encode(b"x").decode(), overwrite=True)
        assert w.dbfs.get_status("/fidelity/skew.txt").modification_time >= before + skew
        w.files.upload("/Volumes/main/default/vol/skew.txt", io.BytesIO(b"x"), overwrite=True)
        assert w.files.get_metadata("/Volumes/main/default/vol/skew.txt").last_modified
        modified = parsedate_to_datetime(w.files.get_metadata("/Volumes/main/default/vol/skew.txt").last_modified)
        assert modified.timestamp() * 1000 >= before + skew - 1000
        date = parsedate_to_datetime(call(fake_workspace, "GET", "/api/2.0/local/faults").headers["Date"])
        assert date.timestamp() * 1000 >= before + skew - 1000
    finally:
        call(fake_workspace, "PUT", "/api/2.0/local/faults", {})
    assert abs(w.jobs.get_run(run.run_id).start_time - (run.start_time - skew)) < 1  # stored times are real


def test_clock_offset_setting_sources():
    assert FaultConfig.from_dict({"clock_offset_seconds": "-90.5"}).clock_offset_seconds == -90.5
    with pytest.raises(ValueError):
        FaultConfig.from_dict({"clock_offset_seconds": [1]})
    import argparse

    from dbx_assets.local_workspace.__main__ import main  # noqa: F401  (the flag is wired into `serve`)

    args = argparse.Namespace(
        **{f"fault_{n}": None for n in FAULT_FLAGS if n != "clock_offset_seconds"},
        fault_clock_offset_seconds=30.0,
    )
    assert FaultConfig.from_dict(_fault_settings(args)).clock_offset_seconds == 30.0


def test_runs_stay_readable_after_restart(tmp_path, fake_workspace):
    fake_cluster = fake_workspace.clusters.factory  # the fake runtime from conftest
    ws = LocalWorkspace(tmp_path, cluster_factory=fake_cluster).start()
    try:
        w = WorkspaceClient(host=ws.host, token=ws.token)
        w.workspace.mkdirs("/Shared")
        w.workspace.upload("/Shared/ok.py", io.BytesIO((HEADER + "print(1)\n").encode()), format=ImportFormat.AUTO)
        run_id = (
            w.jobs.submit(
                run_name="persist",
                tasks=[
                    jobs.SubmitTask(
                        task_key="t",
                        notebook_task=jobs.NotebookTask(notebook_path="/Shared/ok"),
                        new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
                    )
                ],
            )
            .result()
            .run_id
        )
        assert run_id is not None
        before = w.jobs.get_run(run_id).as_dict()
        # a document in the shape older versions stored (parent_run_id, format, no status) must still be served
        ws.store.put(
            "run",
            1,
            {
                "run_id": 1,
                "run_name": "legacy",
                "format": "MULTI_TASK",
                "run_type": "SUBMIT_RUN",
                "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""},
                "tasks": [{"task_key": "t", "run_id": 2, "state": {"life_cycle_state": "TERMINATED"}}],
                "_spec": {"tasks": []},
            },
        )
    finally:
        ws.close()
    ws2 = LocalWorkspace(tmp_path, cluster_factory=fake_cluster).start()
    try:
        w2 = WorkspaceClient(host=ws2.host, token=ws2.token)
        assert w2.jobs.get_run(run_id).as_dict() == before
        legacy = w2.jobs.get_run(1)
        assert legacy.state and legacy.state.result_state == jobs.RunResultState.SUCCESS
        assert legacy.tasks and legacy.tasks[0].task_key == "t"
    finally:
        ws2.close()
