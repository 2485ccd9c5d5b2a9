"""A workspace that stops answering while a run goes on there, through Dagster on the no-JVM fake
workspace: the step says so, keeps waiting, reports the tasks that ended meanwhile once contact
returns, and past the outage tolerance fails with one sentence; re-executing it then reattaches to
the run still going instead of starting a second one. Credentials rejected mid-run stay an auth
failure, not an outage.

The outage is the workspace's own fault injection: every runs/get and runs/get-output connection
is dropped before it has any effect (the SDK sees what a dead host looks like), while the run goes
on and the test watches it through runs/list. The step's SDK retry budget is 2 s
(`retry_timeout_seconds`), so each test takes seconds; nothing asserts on how fast anything is.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from databricks.sdk.service import jobs
from fake_runtime import FakeWorkspace, deployed_job_name
from workflow_support import IN_PROCESS, key, make_resource, materialized, step_failure_message

from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

HEADER = "# Databricks notebook source\n"
TESTS_DIR = Path(__file__).parent
RUN_CALLS = r"/jobs/runs/get"  # runs/get and runs/get-output: what watching a run calls


def _notebooks(root: Path, name: str) -> Path:
    """`quick` ends at once; `held` runs while /dbfs/tmp/<name>/hold exists."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "quick.py").write_text(HEADER + "dbutils.notebook.exit('quick')\n")
    (root / "held.py").write_text(
        HEADER + f"import os, time\nwhile os.path.exists('/dbfs/tmp/{name}/hold'):\n    time.sleep(0.1)\n"
        "dbutils.notebook.exit('released')\n"
    )
    return root


def _assets(name: str, notebooks: Path) -> dg.AssetsDefinition:
    tasks = NotebookTasks(
        [
            NotebookAsset(key=f"{name}/quick", notebook="quick.py"),
            NotebookAsset(key=f"{name}/held", notebook="held.py"),
        ],
        notebooks_dir=notebooks,
    )
    return build_workflow_assets(Workflow(name=name, sources=[tasks]))


def _resource(name: str, tolerance: int):
    return make_resource(name, retry_timeout_seconds=2, outage_tolerance_seconds=tolerance)


def build_outage_job(name: str, notebooks: str, tolerance: int) -> dg.JobDefinition:
    """Rebuilt by its arguments wherever Dagster executes it (re-execution needs a reconstructable job)."""
    defs = dg.Definitions(
        assets=[_assets(name, Path(notebooks))],
        resources={"databricks": _resource(name, tolerance)},
        jobs=[dg.define_asset_job("outage_job", selection=dg.AssetSelection.all())],
    )
    return defs.resolve_job_def("outage_job")


def _hold(ws: FakeWorkspace, name: str) -> Path:
    hold = ws.paths.dbfs / "tmp" / name / "hold"
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.touch()
    return hold


def _messages(instance: dg.DagsterInstance, run_id: str | None = None) -> list[str]:
    """What the steps logged; the step writes its in-memory event log meanwhile, so a read can collide."""
    for _ in range(50):
        try:
            run_ids = [run_id] if run_id else [r.run_id for r in instance.get_runs()]
            return [e.user_message for rid in run_ids for e in instance.all_logs(rid) if e.user_message]
        except Exception:
            time.sleep(0.05)
    return []


def _wait(what: str, condition: Callable[[], object], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(ws: FakeWorkspace, name: str) -> list[jobs.BaseRun]:
    """The job's runs with their tasks, through runs/list (which the injected outage leaves alone)."""
    found = list(ws.client.jobs.list(name=deployed_job_name(name)))
    return [r for j in found for r in ws.client.jobs.list_runs(job_id=j.job_id, expand_tasks=True)]


def _task_state(ws: FakeWorkspace, name: str, task: str) -> str | None:
    for run in _runs(ws, name):
        for t in run.tasks or []:
            if t.task_key == f"{name}__{task}" and t.state and t.state.life_cycle_state:
                return t.state.life_cycle_state.value
    return None


def _run_over(ws: FakeWorkspace, name: str) -> bool:
    runs = _runs(ws, name)
    return bool(runs) and all(r.state and r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED for r in runs)


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = target()
        except BaseException as err:  # surfaced by the test's asserts
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_the_step_waits_out_an_outage_and_reports_what_ended_meanwhile(dbx_env, tmp_path):
    ws, name = dbx_env, "o" + uuid.uuid4().hex[:8]
    assets, hold = _assets(name, _notebooks(tmp_path, name)), _hold(ws, name)
    instance = dg.DagsterInstance.ephemeral()
    thread, out = _in_thread(
        lambda: dg.materialize(
            [assets], resources={"databricks": _resource(name, 600)}, instance=instance, raise_on_error=False
        )
    )
    try:
        _wait("held to run", lambda: _task_state(ws, name, "held") == "RUNNING")
        with ws.faults(drop=1.0, endpoints=[RUN_CALLS]):
            _wait(
                "the step to say the workspace is unreachable",
                lambda: any("unreachable since" in m for m in _messages(instance)),
            )
            hold.unlink()  # held ends while the step cannot see it
            _wait("the run to end in the workspace", lambda: _run_over(ws, name))
            assert thread.is_alive()  # still waiting, not failed
    finally:
        hold.unlink(missing_ok=True)
        thread.join(timeout=120)
    result = out["result"]
    assert result.success
    assert materialized(result) == {key(name, "quick"), key(name, "held")}
    messages = _messages(instance, result.run_id)
    (lost,) = [m for m in messages if "unreachable since" in m]
    run_id = _runs(ws, name)[0].run_id
    assert lost.startswith(f"Databricks workspace {ws.host} unreachable since ")
    assert f"(RemoteDisconnected); run {run_id} keeps running there — still waiting (giving up after 10 min)" in lost
    (back,) = [m for m in messages if "reachable again" in m]
    assert f"watching run {run_id} again: " in back and f"{name}__held" in back and "the run ended SUCCESS" in back
    assert ws.token not in "\n".join(messages)


def test_past_the_tolerance_one_sentence_and_re_execution_reattaches_to_the_run_still_going(dbx_env, tmp_path):
    ws, name = dbx_env, "o" + uuid.uuid4().hex[:8]
    notebooks, hold = _notebooks(tmp_path / "nb", name), _hold(ws, name)
    job = dg.build_reconstructable_job(
        "test_outage_watch",
        "build_outage_job",
        reconstructable_args=(name, str(notebooks), 3),  # type: ignore[arg-type]  # Dagster types it as a 1-tuple
        reconstructor_working_directory=str(TESTS_DIR),
    )
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        try:
            thread, out = _in_thread(
                lambda: dg.execute_job(job, instance=instance, run_config=IN_PROCESS, raise_on_error=False)
            )
            _wait("held to run", lambda: _task_state(ws, name, "held") == "RUNNING")
            with ws.faults(drop=1.0, endpoints=[RUN_CALLS]):
                thread.join(timeout=120)
            with out["result"] as first:
                assert not first.success
                message = step_failure_message(first)
                first_run_id = first.run_id
            (databricks_run,) = _runs(ws, name)
            assert databricks_run.state and databricks_run.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
            assert f"Lost contact with Databricks workspace {ws.host} for " in message, message
            assert "(since " in message and "RemoteDisconnected" in message and "outage tolerance of 3 s" in message
            assert f"Databricks run {databricks_run.run_id} ({databricks_run.run_page_url})" in message
            assert "re-execute this step: it reattaches to that run" in message
            assert "Traceback" not in message and len(message.strip().splitlines()) <= 3, message
            assert ws.token not in message

            options = dg.ReexecutionOptions.from_failure(first_run_id, instance)
            thread, out = _in_thread(
                lambda: dg.execute_job(
                    job, instance=instance, run_config=IN_PROCESS, reexecution_options=options, raise_on_error=False
                )
            )
            _wait(
                "the re-execution to reattach",
                lambda: any("Reattached to Databricks run" in m for m in _messages(instance)),
            )
            hold.unlink()
            thread.join(timeout=120)
        finally:
            hold.unlink(missing_ok=True)
        with out["result"] as second:
            assert second.success
            assert key(name, "held") in materialized(second)
            reattached = [m for m in _messages(instance, second.run_id) if "Reattached" in m]
            assert reattached == [
                f"Reattached to Databricks run {databricks_run.run_id}, started for an earlier attempt of this step "
                "and still going"
            ]
    assert [r.run_id for r in _runs(ws, name)] == [databricks_run.run_id]  # one Databricks run, not two


def test_credentials_rejected_mid_run_are_an_auth_failure_not_an_outage(dbx_env, tmp_path):
    ws, name = dbx_env, "o" + uuid.uuid4().hex[:8]
    assets, hold = _assets(name, _notebooks(tmp_path, name)), _hold(ws, name)
    dispatcher = ws.ws.dispatcher
    token = dispatcher._token
    thread, out = _in_thread(
        lambda: dg.materialize([assets], resources={"databricks": _resource(name, 600)}, raise_on_error=False)
    )
    try:
        _wait("held to run", lambda: _task_state(ws, name, "held") == "RUNNING")
        dispatcher._token = "rotated-" + uuid.uuid4().hex  # the token was revoked while the run goes
        thread.join(timeout=120)
    finally:
        dispatcher._token = token
        hold.unlink(missing_ok=True)
    result = out["result"]
    assert not result.success
    message = step_failure_message(result)
    assert f"Databricks workspace {ws.host} rejected the credentials" in message, message
    assert "unreachable" not in message and "Traceback" not in message
