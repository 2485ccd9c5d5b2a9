"""Fault injection end to end: a workspace server of this module's own (real process, real HTTP,
real local Spark clusters) that answers 429s/5xx, drops connections and fails cluster starts.

Every test asserts on the WORKSPACE's own record (runs, clusters, request counts) through the
SDK, not only on what Dagster says. The last test checks that the token leaked nowhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import NotebookTask, SubmitTask

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError
from dbx_assets.integration.workflow.assets import Workflow, build_workflow_assets
from dbx_assets.integration.workflow.runner import WorkflowRunner
from workflow_support import key, make_workflow, new_name

TESTS_DIR = Path(__file__).parent
TOKEN_ENV = "DBX_FAULT_TEST_TOKEN"
HOST_ENV = "DBX_FAULT_TEST_HOST"
FAULTS = "/api/2.0/local/faults"
ASSETS = ("source", "flaky", "sink", "slow")

# Everything a person or a log could see, gathered for the final no-token check.
SEEN_TEXT: list[str] = []


@dataclass
class FaultyWorkspace:
    host: str
    token: str
    state_dir: Path
    client: WorkspaceClient

    def set_faults(self, **config) -> dict:
        return self.client.api_client.do("PUT", FAULTS, body={**config, "reset_counts": True})

    def faults_off(self) -> dict:
        return self.client.api_client.do("PUT", FAULTS, body={})

    def counts(self) -> dict:
        return self.client.api_client.do("GET", FAULTS)

    def cluster_ids(self) -> set[str]:
        return {c.cluster_id for c in self.client.clusters.list()}

    def job_runs(self, name: str) -> list:
        jobs = list(self.client.jobs.list(name=name))
        assert len(jobs) == 1, f"expected one job named {name}, found {len(jobs)}"
        return list(self.client.jobs.list_runs(job_id=jobs[0].job_id))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> FaultyWorkspace:
    state_dir = tmp_path_factory.mktemp("faulty_workspace")
    conn = ensure_running(state_dir, timeout=60)
    saved = {k: os.environ.get(k) for k in (TOKEN_ENV, HOST_ENV)}
    os.environ[TOKEN_ENV], os.environ[HOST_ENV] = conn.token, conn.host
    try:
        # The test client retries quickly; the resources under test keep the SDK's defaults.
        yield FaultyWorkspace(conn.host, conn.token, conn.state_dir, WorkspaceClient(host=conn.host, token=conn.token))
    finally:
        stop(state_dir)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def resource(name: str, **kwargs) -> DatabricksResource:
    kwargs.setdefault("host", dg.EnvVar(HOST_ENV))
    kwargs.setdefault("token", dg.EnvVar(TOKEN_ENV))
    return DatabricksResource(workspace_root=f"/Shared/faults/{name}", **kwargs)


def record(result) -> None:
    """Keep every event's text (messages, metadata, errors) for the final no-token check."""
    for event in result.all_events:
        SEEN_TEXT.append(repr(event))


def materialize(assets, name: str, selection=None, **resource_kwargs):
    result = dg.materialize([assets], selection=selection, resources={"databricks": resource(name, **resource_kwargs)},
                            raise_on_error=False)
    record(result)
    return result


def step_failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a step failure"
    return failures[0].step_failure_data.error.message


def materialized(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


# -- configuring faults ----------------------------------------------------------------------------------


def test_cli_flags_and_faults_json_configure_the_server_and_admin_is_never_faulted(tmp_path):
    (tmp_path / "faults.json").write_text(json.dumps({"latency_ms": 5, "rate_limit": 0.5}))
    server = subprocess.Popen(
        [sys.executable, "-m", "dbx_assets.local_workspace", "serve", "--state-dir", str(tmp_path),
         "--fault-rate-limit", "1", "--fault-seed", "7", "--fault-endpoint", "clusters/list$"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "connection.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        conn = json.loads((tmp_path / "connection.json").read_text())
        client = WorkspaceClient(config=Config(host=conn["host"], token=conn["token"], retry_timeout_seconds=2))
        seen = client.api_client.do("GET", FAULTS)  # rate_limit 1 everywhere it applies: not here
        assert seen["seed"] == 7
        assert seen["config"]["rate_limit"] == 1.0 and seen["config"]["latency_ms"] == 5  # flag over file, file kept
        assert client.clusters.list_node_types().node_types  # not matched by --fault-endpoint
        with pytest.raises(TimeoutError):
            list(client.clusters.list())  # every call 429'd until the SDK's retry budget is spent
        seen = client.api_client.do("GET", FAULTS)
        assert sum(seen["injected"]["rate_limit"].values()) >= 2
        assert set(seen["injected"]["rate_limit"]) == {"GET /api/2.1/clusters/list"}
        with pytest.raises(InvalidParameterValue, match="rate_limit"):
            client.api_client.do("PUT", FAULTS, body={"rate_limit": 2})
        with pytest.raises(InvalidParameterValue, match="no_such_setting"):
            client.api_client.do("PUT", FAULTS, body={"no_such_setting": 1})
        with pytest.raises(PermissionDenied):
            WorkspaceClient(host=conn["host"], token="wrong-token-0123456789").api_client.do("GET", FAULTS)
        assert "seed 7" in (tmp_path / "server.log").read_text()  # a failing run can be replayed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


# -- faults during a materialization ------------------------------------------------------------------


def test_full_graph_under_429s_and_5xx_is_one_run_on_one_cluster(ws):
    name = new_name()
    clusters_before = ws.cluster_ids()
    # A fixed seed: with ~35 calls a random one leaves 5% 5xx unexercised one time in five. Seed 3's
    # first draws give a 503 on the very first call and 429s on the 6th and 7th (the deploy's calls).
    config = ws.set_faults(rate_limit=0.2, server_error=0.05, seed=3)
    try:
        result = materialize(build_workflow_assets(make_workflow(name)), name)
    finally:
        seen = ws.counts()
        ws.faults_off()
    replay = f"(replay with seed {config['seed']})"
    print("requests:", seen["requests"], "\ninjected:", seen["injected"], replay)
    assert result.success, replay
    assert materialized(result) == {key(name, a) for a in ASSETS}
    injected = seen["injected"]
    assert sum(injected.get("rate_limit", {}).values()) > 0, f"no 429 was injected {replay}: {seen}"
    assert sum(injected.get("server_error", {}).values()) > 0, f"no 5xx was injected {replay}: {seen}"
    runs = ws.job_runs(name)
    assert len(runs) == 1, replay
    run = ws.client.jobs.get_run(runs[0].run_id)
    assert run.state.result_state.value == "SUCCESS"
    new_clusters = ws.cluster_ids() - clusters_before
    assert len(new_clusters) == 1, new_clusters
    assert {t.cluster_instance.cluster_id for t in run.tasks} == new_clusters


def test_lost_run_now_response_does_not_start_a_second_run(ws):
    """run-now takes effect but its answer is lost (connection dropped AFTER the run started);
    the SDK retries with the same idempotency token, so the workspace still has one run."""
    name = new_name()
    ws.set_faults(drop_after=1.0, endpoints=[r"/jobs/run-now$"], limit=1)
    try:
        result = materialize(build_workflow_assets(make_workflow(name)), name, selection=[key(name, "source")])
    finally:
        seen = ws.counts()
        ws.faults_off()
    assert result.success
    run_now = [e for e in seen["requests"] if e.endswith("/jobs/run-now")]
    assert len(run_now) == 1 and seen["requests"][run_now[0]] == 2, seen["requests"]  # lost, then answered
    assert seen["injected"] == {"drop_after": {run_now[0]: 1}}
    assert len(ws.job_runs(name)) == 1


def test_dropped_connections_before_effect_are_retried_without_side_effects(ws):
    """Connections closed before the server acted: each call is retried by the SDK and acts once."""
    name = new_name()
    ws.set_faults(drop=1.0, endpoints=[r"/jobs/(create|run-now)$"], limit=2)
    try:
        result = materialize(build_workflow_assets(make_workflow(name)), name, selection=[key(name, "source")])
    finally:
        seen = ws.counts()
        ws.faults_off()
    assert result.success
    assert sum(seen["injected"]["drop"].values()) == 2, seen
    assert len(list(ws.client.jobs.list(name=name))) == 1
    assert len(ws.job_runs(name)) == 1


# -- the step process dies / is terminated -------------------------------------------------------------

_STEP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import dagster as dg
    from workflow_support import key, make_workflow
    from dbx_assets.integration.resource import DatabricksResource
    from dbx_assets.integration.workflow.assets import build_workflow_assets
    name, run_id, seconds, only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    resource = DatabricksResource(host=dg.EnvVar("DBX_FAULT_TEST_HOST"), token=dg.EnvVar("DBX_FAULT_TEST_TOKEN"),
                                  workspace_root=f"/Shared/faults/{name}")
    assets = build_workflow_assets(make_workflow(name, seconds))
    job = dg.Definitions(assets=[assets], resources={"databricks": resource}).resolve_implicit_global_asset_job_def()
    selection = None if only == "all" else [key(name, only)]
    result = job.execute_in_process(run_id=run_id, asset_selection=selection, raise_on_error=False)
    for event in result.all_events:
        print("EVENT", repr(event), flush=True)
    print("MATERIALIZED", sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events()))
    print("SUCCESS" if result.success else "FAILURE", flush=True)
    """
)


def _start_step(name: str, run_id: str, seconds: int, only: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", _STEP_SCRIPT, name, run_id, str(seconds), only], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_running_task(ws: FaultyWorkspace, name: str, task: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in ws.client.jobs.list(name=name):
            for run in ws.client.jobs.list_runs(job_id=job.job_id):
                full = ws.client.jobs.get_run(run.run_id)
                for t in full.tasks or []:
                    if t.task_key.endswith("__" + task) and t.state.life_cycle_state.value == "RUNNING":
                        return full, t
        time.sleep(0.3)
    raise AssertionError(f"task {task} of {name} was not RUNNING within {timeout}s")


def _task_process_pid(task_run_id: int, timeout: float = 30) -> int:
    """The runtime's task process: the one whose command line names this task run's invocation file."""
    marker = f"task_runs/{task_run_id}/invocation.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no task process for task run {task_run_id}")


def _process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has already exited


def test_killed_step_reattaches_and_reports_every_asset(ws):
    name, run_id = new_name(), str(uuid.uuid4())
    clusters_before = ws.cluster_ids()
    first = _start_step(name, run_id, 8, "all")
    run, _ = _wait_for_running_task(ws, name, "slow")
    os.killpg(first.pid, signal.SIGKILL)  # no chance to cancel: the Databricks run keeps going
    SEEN_TEXT.append(first.communicate(timeout=30)[0])
    again = _start_step(name, run_id, 8, "all")  # the same Dagster run id re-executes the step
    out, _ = again.communicate(timeout=300)
    SEEN_TEXT.append(out)
    assert out.strip().endswith("SUCCESS"), out[-3000:]
    assert "Reattached to Databricks run" in out
    assert f"MATERIALIZED {sorted(f'{name}/{a}' for a in ASSETS)}" in out
    assert [r.run_id for r in ws.job_runs(name)] == [run.run_id]  # no second run
    assert len(ws.cluster_ids() - clusters_before) == 1  # and no second cluster


def test_terminating_the_step_cancels_the_run_and_kills_the_task_process(ws):
    name = new_name()
    step = _start_step(name, str(uuid.uuid4()), 600, "slow")
    try:
        run, task = _wait_for_running_task(ws, name, "slow")
        pid = _task_process_pid(task.run_id)
        assert not _process_gone(pid)
        os.killpg(step.pid, signal.SIGINT)  # what terminating a Dagster run delivers to its step
        signalled = time.monotonic()
        state = None
        while time.monotonic() - signalled < 10:
            state = ws.client.jobs.get_run(run.run_id).state
            if state.life_cycle_state.value == "TERMINATED" and _process_gone(pid):
                break
            time.sleep(0.25)
        assert state is not None and state.result_state.value == "CANCELED", state
        assert _process_gone(pid), f"task process {pid} still running 10 s after the step was terminated"
        SEEN_TEXT.append(step.communicate(timeout=60)[0])
    finally:
        if step.poll() is None:
            os.killpg(step.pid, signal.SIGKILL)


# -- cluster start failure, then recovery ---------------------------------------------------------------

FAULT_JOB_ENV = "DBX_FAULT_TEST_JOB_NAME"


def build_fault_job() -> dg.JobDefinition:
    """Reconstructable (re-execution rebuilds it by name from the env)."""
    name = os.environ[FAULT_JOB_ENV]
    defs = dg.Definitions(
        assets=[build_workflow_assets(make_workflow(name))],
        resources={"databricks": resource(name)},
        jobs=[dg.define_asset_job("fault_job", selection=dg.AssetSelection.all())],
    )
    return defs.resolve_job_def("fault_job")


def test_cluster_start_failure_fails_every_asset_then_reexecution_succeeds(ws, tmp_path, monkeypatch):
    name = new_name()
    monkeypatch.setenv(FAULT_JOB_ENV, name)
    job = dg.reconstructable(build_fault_job)
    in_process = {"execution": {"config": {"in_process": {}}}}
    ws.set_faults(cluster_start_fail=1.0)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        try:
            with dg.execute_job(job, instance=instance, run_config=in_process, raise_on_error=False) as first:
                record(first)
                assert not first.success
                assert materialized(first) == set()
                message = step_failure_message(first)
                first_run_id = first.run_id
        finally:
            ws.faults_off()
        assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in message, message
        lines = {line.split(":", 1)[0].lstrip("- "): line for line in message.splitlines() if line.startswith("- ")}
        assert set(lines) == {f"{name}/{a}" for a in ASSETS}, message
        for line in lines.values():  # every asset of the selection fails WITH the reason
            assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in line, message
        assert "Traceback" not in message
        (failed_run,) = ws.job_runs(name)
        failed_run = ws.client.jobs.get_run(failed_run.run_id)
        assert failed_run.state.life_cycle_state.value == "INTERNAL_ERROR"
        assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in failed_run.state.state_message
        failed_clusters = [c for c in ws.client.clusters.list()
                           if c.termination_reason and c.termination_reason.code and c.termination_reason.code.value == "CLOUD_PROVIDER_LAUNCH_FAILURE"
                           and (c.custom_tags or {}).get("JobRunId") == str(failed_run.run_id)]
        assert len(failed_clusters) == 1 and failed_clusters[0].state.value == "TERMINATED"

        options = dg.ReexecutionOptions.from_failure(first_run_id, instance)
        with dg.execute_job(job, instance=instance, run_config=in_process, reexecution_options=options,
                            raise_on_error=False) as second:
            record(second)
            assert second.success
            assert materialized(second) == {key(name, a) for a in ASSETS}
    runs = [ws.client.jobs.get_run(r.run_id) for r in ws.job_runs(name)]
    assert sorted(r.state.result_state.value for r in runs) == ["FAILED", "SUCCESS"]


# -- bad input: one clear message each ------------------------------------------------------------------


def _one_clear_line(message: str) -> None:
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 3, message


def test_wrong_token_is_one_clear_message_naming_the_host(ws):
    bad = DatabricksResource(host=ws.host, token="not-the-right-token-0123456789", workspace_root="/Shared/faults/x")
    with pytest.raises(WorkspaceConnectionError) as err:
        bad.check_connection()
    message = str(err.value.description)
    SEEN_TEXT.append(message)
    assert ws.host in message and "credentials" in message and "DATABRICKS_TOKEN" in message
    _one_clear_line(message)

    name = new_name()
    result = materialize(build_workflow_assets(make_workflow(name)), name, selection=[key(name, "source")],
                         token="not-the-right-token-0123456789")
    assert not result.success
    message = step_failure_message(result)
    assert ws.host in message and "credentials" in message, message
    _one_clear_line(message)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_is_one_clear_message_naming_the_host(ws):
    host = f"http://127.0.0.1:{_closed_port()}"
    unreachable = DatabricksResource(host=host, token="some-token-value-0123456789", retry_timeout_seconds=3,
                                     workspace_root="/Shared/faults/x")
    with pytest.raises(WorkspaceConnectionError) as err:
        unreachable.check_connection()
    message = str(err.value.description)
    assert host in message and "Cannot reach" in message, message
    _one_clear_line(message)

    name = new_name()
    result = materialize(build_workflow_assets(make_workflow(name)), name, selection=[key(name, "source")],
                         host=host, token="some-token-value-0123456789", retry_timeout_seconds=3)
    assert not result.success
    message = step_failure_message(result)
    assert host in message and "Cannot reach" in message, message
    _one_clear_line(message)


def test_notebook_deleted_from_the_workspace_is_named_and_reuploaded(ws):
    """Deleted after deploy while the run is going: its task fails naming the notebook; the next
    materialization notices the deploy manifest is stale, uploads it again, and succeeds."""
    name = new_name()
    assets = build_workflow_assets(make_workflow(name))
    selection = [key(name, "source"), key(name, "flaky")]
    notebook = f"/Shared/faults/{name}/notebooks/flaky"
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("first", materialize(assets, name, selection=selection)))
    thread.start()
    _wait_for_running_task(ws, name, "source")
    ws.client.workspace.delete(notebook)
    thread.join(timeout=300)
    first = results["first"]
    assert not first.success
    assert materialized(first) == {key(name, "source")}
    message = step_failure_message(first)
    assert notebook in message and "missing" in message, message

    second = materialize(assets, name, selection=selection)
    assert second.success
    assert ws.client.workspace.get_status(notebook).path == notebook
    runs = [ws.client.jobs.get_run(r.run_id) for r in ws.job_runs(name)]
    assert sorted(r.state.result_state.value for r in runs) == ["FAILED", "SUCCESS"]


def test_cluster_spec_without_spark_version_is_rejected_by_the_workspace(ws):
    with pytest.raises(InvalidParameterValue) as err:
        ws.client.jobs.submit(run_name="bad spec", tasks=[SubmitTask(
            task_key="t", notebook_task=NotebookTask(notebook_path="/Shared/nothing"),
            new_cluster=ClusterSpec(num_workers=0))])
    assert "spark_version" in str(err.value) and "t" in str(err.value)
    assert not [r for r in ws.client.jobs.list_runs() if r.run_name == "bad spec"]


class TimedWorkflow(Workflow):
    """The test workflow with a job-level timeout (a setting the workspace enforces)."""

    def spec(self, workspace_root: str, dbt_target: str):
        return dataclasses.replace(super().spec(workspace_root, dbt_target), timeout_seconds=5)


def test_run_timeout_reaches_the_asset_failure_and_unknown_repair_key_is_named(ws):
    name = new_name()
    base = make_workflow(name, slow_seconds=300)
    workflow = TimedWorkflow(name=name, notebooks=base.notebooks, notebooks_dir=base.notebooks_dir)
    result = materialize(build_workflow_assets(workflow), name, selection=[key(name, "slow")])
    assert not result.success
    message = step_failure_message(result)
    assert "TIMEDOUT" in message and f"{name}/slow" in message, message
    (run,) = ws.job_runs(name)
    run = ws.client.jobs.get_run(run.run_id)
    assert run.state.result_state.value == "TIMEDOUT"

    with pytest.raises(InvalidParameterValue) as err:
        WorkflowRunner(ws.client).repair(run.run_id, ["no_such_task"])
    assert "no_such_task" in str(err.value) and str(run.run_id) in str(err.value)


# -- and after all of that -------------------------------------------------------------------------------


def test_the_token_leaked_nowhere(ws):
    assert len(SEEN_TEXT) > 10  # the tests above ran and left their text here
    leaks = [text[:200] for text in SEEN_TEXT if ws.token in text]
    assert not leaks, f"token found in {len(leaks)} event(s)/output(s)"
    for path in ws.state_dir.rglob("*"):
        if path.is_file() and path.name != "connection.json":  # the one place it belongs (mode 0600)
            assert ws.token.encode() not in path.read_bytes(), f"token found in {path}"
    assert (ws.state_dir / "connection.json").stat().st_mode & 0o077 == 0
