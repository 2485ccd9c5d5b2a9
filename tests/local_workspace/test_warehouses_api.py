"""The SQL Warehouses API subset through the real SDK, and what a dbt task with `warehouse_id`
becomes in the scheduler (warehouse started, DBT_ACCESS_TOKEN injected, unknown ids refused).

Runs on a workspace of its own (warehouse state is workspace-wide) whose clusters are the fake
runtime from conftest, recording each TaskInvocation the scheduler hands them. No JVM."""

from __future__ import annotations

import io
import re
import time
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import jobs, sql
from databricks.sdk.service.workspace import ImportFormat
from fake_runtime import FakeCluster

from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime.contract import TaskInvocation

PROJECT = "/Shared/wh_test/dbt_project"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    class RecordingCluster(FakeCluster):  # the fake runtime conftest's workspaces use
        invocations: list[TaskInvocation] = []

        def run_task(self, inv: TaskInvocation):
            RecordingCluster.invocations.append(inv)
            return super().run_task(inv)

    class RecordingWorkspace(LocalWorkspace):
        recorded: list[TaskInvocation]

    workspace = RecordingWorkspace(tmp_path_factory.mktemp("wh_ws"), cluster_factory=RecordingCluster)
    workspace.recorded = RecordingCluster.invocations
    workspace.start()
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def w(ws) -> WorkspaceClient:
    client = WorkspaceClient(host=ws.host, token=ws.token)
    client.workspace.mkdirs(PROJECT)
    client.workspace.upload(
        f"{PROJECT}/dbt_project.yml",
        io.BytesIO(b"name: p\nprofile: p\nversion: '1'\nconfig-version: 2\n"),
        format=ImportFormat.AUTO,
        overwrite=True,
    )
    return client


def _submit_dbt(w: WorkspaceClient, **dbt_fields) -> jobs.Run:
    task = jobs.SubmitTask.from_dict(
        {
            "task_key": "dbt_build",
            "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 0},
            "dbt_task": {"project_directory": PROJECT, "commands": ["dbt build"], "source": "WORKSPACE", **dbt_fields},
            "libraries": [{"pypi": {"package": "dbt-databricks>=1.11,<1.12"}}],
        }
    )
    return w.jobs.submit(run_name="dbt on a warehouse", tasks=[task]).result(timeout=timedelta(seconds=60))


def test_the_local_warehouse_is_listed_started_and_stopped_through_the_sdk(w):
    listed = list(w.warehouses.list())
    assert [(type(x), x.name, x.state) for x in listed] == [
        (sql.EndpointInfo, "Local SQL warehouse", sql.State.STOPPED)
    ]
    wid = listed[0].id
    assert re.fullmatch(r"[0-9a-f]{16}", wid)

    got = w.warehouses.get(wid)
    assert got.state == sql.State.STOPPED and got.num_clusters == 0 and got.health is None
    assert got.odbc_params.path == f"/sql/1.0/warehouses/{wid}"
    assert f"{got.odbc_params.protocol}://{got.odbc_params.hostname}:{got.odbc_params.port}" == w.config.host

    started = time.monotonic()
    waiter = w.warehouses.start(wid)
    assert w.warehouses.get(wid).state == sql.State.STARTING  # not RUNNING at once, like a real one
    running = waiter.result()
    assert (
        running.state == sql.State.RUNNING and running.num_clusters == 1 and running.health.status == sql.Status.HEALTHY
    )
    assert 1.0 <= time.monotonic() - started < 15
    w.warehouses.start(wid)  # idempotent
    assert w.warehouses.get(wid).state == sql.State.RUNNING

    assert w.warehouses.stop(wid).result().state == sql.State.STOPPED
    w.warehouses.stop(wid)  # idempotent
    assert w.warehouses.get(wid).state == sql.State.STOPPED


def test_an_unknown_warehouse_is_not_found_like_on_databricks(w):
    for call in (w.warehouses.get, w.warehouses.start, w.warehouses.stop):
        with pytest.raises(NotFound) as err:
            call("0123456789abcdef")
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert "0123456789abcdef" in str(err.value)


def test_dbt_task_on_a_stopped_warehouse_starts_it_and_gets_a_token(ws, w):
    wid = next(iter(w.warehouses.list())).id
    w.warehouses.stop(wid).result()
    before = len(ws.recorded)

    run = _submit_dbt(w, warehouse_id=wid, schema="analytics", catalog="main")

    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    assert w.warehouses.get(wid).state in (sql.State.STARTING, sql.State.RUNNING)  # the job started it
    (inv,) = ws.recorded[before:]
    assert inv.kind == "dbt" and inv.dbt.warehouse_id == wid
    assert (inv.dbt.schema, inv.dbt.catalog, inv.dbt.profiles_dir) == ("analytics", "main", None)
    assert inv.env["DBT_ACCESS_TOKEN"] == ws.token  # authenticates against this workspace
    assert inv.pypi_packages == ("dbt-databricks>=1.11,<1.12",)


def test_dbt_task_with_an_unknown_warehouse_fails_before_it_runs(ws, w):
    before = len(ws.recorded)
    run = _submit_dbt(w, warehouse_id="0123456789abcdef", schema="analytics")
    assert run.tasks is not None
    (task,) = run.tasks
    assert task.state is not None
    assert task.state.result_state == jobs.RunResultState.FAILED
    assert task.state.state_message == "SQL warehouse 0123456789abcdef does not exist."
    assert len(ws.recorded) == before  # never reached a cluster


def test_dbt_task_fields_only_valid_with_or_without_a_warehouse(ws, w):
    wid = next(iter(w.warehouses.list())).id
    run = _submit_dbt(w, warehouse_id=wid, profiles_directory=PROJECT)
    assert run.tasks and run.tasks[0].state
    assert run.tasks[0].state.state_message == (
        "Task dbt_build: dbt_task.profiles_directory can only be specified if no warehouse_id is specified."
    )
    run = _submit_dbt(w, catalog="main")
    assert run.tasks and run.tasks[0].state
    assert (
        run.tasks[0].state.state_message
        == "Task dbt_build: dbt_task.catalog can only be specified if a warehouse_id is specified."
    )

    # Without a warehouse the project's own profiles are used, as before; schema is documented as unused then.
    before = len(ws.recorded)
    run = _submit_dbt(w, schema="ignored")
    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    (inv,) = ws.recorded[before:]
    assert (inv.dbt.warehouse_id, inv.dbt.schema, inv.dbt.profiles_dir) == (None, None, None)
    assert "DBT_ACCESS_TOKEN" not in inv.env
