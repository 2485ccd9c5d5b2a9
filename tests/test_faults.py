"""Fault injection end to end on the fake runtime: the local workspace answers 429s/5xx, drops
connections, loses responses, fails cluster starts and times runs out, while Dagster
materializes through the real SDK over HTTP.

Every test asserts on the WORKSPACE's own record (runs, clusters, request counts) through the
SDK, not only on what Dagster says, and each stands alone (none reads what another left).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import NotebookTask, SubmitTask
from fake_runtime import FAULTS, deployed_job_name
from workflow_support import (
    ALL_ASSETS,
    IN_PROCESS,
    flag_dbfs_path,
    key,
    make_assets,
    materialize,
    materialized,
    new_name,
    reconstructable_test_job,
    step_failure_message,
)

from dbx_assets.integration.jobs.runner import WorkflowRunner

# -- configuring faults ----------------------------------------------------------------------------------


def test_cli_flags_and_faults_json_configure_the_server_and_admin_is_never_faulted(tmp_path):
    """The `serve` process itself (no cluster is started, so no JVM)."""
    (tmp_path / "faults.json").write_text(json.dumps({"latency_ms": 5, "rate_limit": 0.5}))
    server = subprocess.Popen(
        [sys.executable, "-m", "dbx_assets.local_workspace", "serve", "--state-dir", str(tmp_path),
         "--fault-rate-limit", "1", "--fault-seed", "7", "--fault-endpoint", "clusters/list$"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "connection.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        conn = json.loads((tmp_path / "connection.json").read_text())
        client = WorkspaceClient(config=Config(host=conn["host"], token=conn["token"], retry_timeout_seconds=2))
        seen = client.api_client.do("GET", FAULTS)  # rate_limit 1 everywhere it applies: not here
        assert isinstance(seen, dict)
        assert seen["seed"] == 7
        assert seen["config"]["rate_limit"] == 1.0 and seen["config"]["latency_ms"] == 5  # flag over file, file kept
        assert client.clusters.list_node_types().node_types  # not matched by --fault-endpoint
        with pytest.raises(TimeoutError):
            list(client.clusters.list())  # every call 429'd until the SDK's retry budget is spent
        seen = client.api_client.do("GET", FAULTS)
        assert isinstance(seen, dict)
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


def test_full_graph_under_429s_and_5xx_is_one_run_on_one_cluster(dbx_env):
    ws, name = dbx_env, new_name()
    clusters_before = ws.cluster_ids()
    # A fixed seed: with ~35 calls a random one leaves 5% 5xx unexercised one time in five.
    with ws.faults(rate_limit=0.2, server_error=0.05, seed=3) as faults:
        result = materialize(name)
    seen = faults.seen
    replay = f"(replay with seed {faults.config['seed']})"
    assert result.success, replay
    assert materialized(result) == {key(name, a) for a in ALL_ASSETS}
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


def test_lost_run_now_response_does_not_start_a_second_run(dbx_env):
    """run-now takes effect but its answer is lost (connection dropped AFTER the run started);
    the SDK retries with the same idempotency token, so the workspace still has one run."""
    ws, name = dbx_env, new_name()
    with ws.faults(drop_after=1.0, endpoints=[r"/jobs/run-now$"], limit=1) as faults:
        result = materialize(name, selection=[key(name, "source")])
    seen = faults.seen
    assert result.success
    run_now = [e for e in seen["requests"] if e.endswith("/jobs/run-now")]
    assert len(run_now) == 1 and seen["requests"][run_now[0]] == 2, seen["requests"]  # lost, then answered
    assert seen["injected"] == {"drop_after": {run_now[0]: 1}}
    assert len(ws.job_runs(name)) == 1


def test_dropped_connections_before_effect_are_retried_without_side_effects(dbx_env):
    """Connections closed before the server acted: each call is retried by the SDK and acts once."""
    ws, name = dbx_env, new_name()
    with ws.faults(drop=1.0, endpoints=[r"/jobs/(create|run-now)$"], limit=2) as faults:
        result = materialize(name, selection=[key(name, "source")])
    seen = faults.seen
    assert result.success
    assert sum(seen["injected"]["drop"].values()) == 2, seen
    assert len(list(ws.client.jobs.list(name=deployed_job_name(name)))) == 1
    assert len(ws.job_runs(name)) == 1


def test_cluster_start_failure_fails_every_asset_then_reexecution_succeeds(dbx_env, tmp_path):
    ws, name = dbx_env, new_name()
    job = reconstructable_test_job(name)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with (
            ws.faults(cluster_start_fail=1.0),
            dg.execute_job(job, instance=instance, run_config=IN_PROCESS, raise_on_error=False) as first,
        ):
            assert not first.success
            assert materialized(first) == set()
            message = step_failure_message(first)
            first_run_id = first.run_id
        assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in message, message
        lines = {line.split(":", 1)[0].lstrip("- "): line for line in message.splitlines() if line.startswith("- ")}
        assert set(lines) == {f"{name}/{a}" for a in ALL_ASSETS}, message
        for line in lines.values():  # every asset of the selection fails WITH the reason
            assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in line, message
        assert "Traceback" not in message
        (failed_run,) = ws.job_runs(name)
        failed_run = ws.client.jobs.get_run(failed_run.run_id)
        assert failed_run.state.life_cycle_state.value == "INTERNAL_ERROR"
        assert "CLOUD_PROVIDER_LAUNCH_FAILURE" in failed_run.state.state_message
        failed_clusters = [
            c for c in ws.client.clusters.list()
            if c.termination_reason and c.termination_reason.code
            and c.termination_reason.code.value == "CLOUD_PROVIDER_LAUNCH_FAILURE"
            and (c.custom_tags or {}).get("JobRunId") == str(failed_run.run_id)
        ]  # fmt: skip
        assert len(failed_clusters) == 1 and failed_clusters[0].state.value == "TERMINATED"

        options = dg.ReexecutionOptions.from_failure(first_run_id, instance)
        with dg.execute_job(job, instance=instance, run_config=IN_PROCESS, reexecution_options=options,
                            raise_on_error=False) as second:  # fmt: skip
            assert second.success
            assert materialized(second) == {key(name, a) for a in ALL_ASSETS}
    runs = [ws.client.jobs.get_run(r.run_id) for r in ws.job_runs(name)]
    # The failed run never started a task, so there is nothing to repair: a new run does it all.
    assert sorted(r.state.result_state.value for r in runs) == ["FAILED", "SUCCESS"]


def test_cluster_spec_without_spark_version_is_rejected_by_the_workspace(dbx_env):
    ws = dbx_env
    with pytest.raises(InvalidParameterValue) as err:
        ws.client.jobs.submit(run_name="bad spec", tasks=[SubmitTask(
            task_key="t", notebook_task=NotebookTask(notebook_path="/Shared/nothing"),
            new_cluster=ClusterSpec(num_workers=0))])  # fmt: skip
    assert "spark_version" in str(err.value) and "t" in str(err.value)
    assert not [r for r in ws.client.jobs.list_runs() if r.run_name == "bad spec"]


def test_run_timeout_reaches_the_asset_failure_and_unknown_repair_key_is_named(dbx_env):
    ws, name = dbx_env, new_name()
    assets = make_assets(name, slow_seconds=300, timeout_seconds=3)  # a job-level timeout the workspace enforces
    result = materialize(name, selection=[key(name, "slow")], assets=assets)
    assert not result.success
    message = step_failure_message(result)
    assert "TIMEDOUT" in message and f"{name}/slow" in message, message
    (run,) = ws.job_runs(name)
    run = ws.client.jobs.get_run(run.run_id)
    assert run.state.result_state.value == "TIMEDOUT"

    with pytest.raises(InvalidParameterValue) as err:
        WorkflowRunner(ws.client).repair(run.run_id, ["no_such_task"])
    assert "no_such_task" in str(err.value) and str(run.run_id) in str(err.value)


# -- the token -------------------------------------------------------------------------------------------


def test_the_token_leaks_nowhere(dbx_env, capfd, caplog):
    """A materialization that fails one asset under 429s, 5xx and lost responses, then one that
    succeeds: the token is in none of their events, their logs, the server log or the state files."""
    ws, name = dbx_env, new_name()
    caplog.set_level(logging.DEBUG)  # the SDK's debug logging too (request headers are where a token would be)
    ws.client.dbfs.upload(flag_dbfs_path(name), io.BytesIO(b"fail"), overwrite=True)
    with ws.faults(rate_limit=0.1, server_error=0.05, drop_after=0.1, seed=5):
        failed = materialize(name)
        ws.client.dbfs.delete(flag_dbfs_path(name))
        again = materialize(name, selection=[key(name, "flaky"), key(name, "sink")])
    assert not failed.success and again.success  # both paths ran: a failure message and successes
    seen = [repr(e) for result in (failed, again) for e in result.all_events]
    out, err = capfd.readouterr()
    seen += [out, err, caplog.text]
    assert any("Databricks run" in text for text in seen)  # the logs were captured
    leaks = [text[:200] for text in seen if ws.token in text]
    assert not leaks, f"token found in {len(leaks)} event(s)/log(s)"
    assert (ws.state_dir / "server.log").stat().st_size > 0
    for path in ws.state_dir.rglob("*"):
        if path.is_file() and path.name != "connection.json":  # the one place it belongs (mode 0600)
            assert ws.token.encode() not in path.read_bytes(), f"token found in {path}"
