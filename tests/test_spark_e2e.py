"""Real-Spark smoke test of the Dagster layer: one Databricks run on one real local Spark cluster
(one JVM start) where a notebook with a `%sql` cell and `/dbfs` paths succeeds, and terminating
the Dagster step then cancels the run and kills the real task process. Everything else about
workflows is tested without a JVM (tests/test_workflow_e2e.py, tests/test_faults.py)."""

from __future__ import annotations

import _thread
import contextvars
import json
import threading
import time
from pathlib import Path

import dagster as dg
from workflow_support import NOTEBOOKS, key, new_name

from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow


def _task_process_pid(task_run_id: int, timeout: float = 60) -> int:
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
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_sql_notebook_on_real_spark_then_terminate_cancels_the_run(local_workspace, workspace_client):
    name = new_name()
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key=f"{name}/numbers", notebook="spark_sql.py", params={"dir": f"/dbfs/tmp/{name}"}),
                    NotebookAsset(
                        key=f"{name}/slow", notebook="slow.py", deps=[f"{name}/numbers"], params={"seconds": "600"}
                    ),
                ],
                notebooks_dir=NOTEBOOKS,
            )
        ],
    )
    # Nothing configured but the state dir: the embedded workspace path a laptop uses.
    resource = DatabricksResource(
        local_state_dir=str(local_workspace.state_dir), workspace_root=f"/Shared/tests/{name}"
    )
    seen: dict = {}

    def terminate_once_slow_runs() -> None:
        try:
            deadline = time.monotonic() + 400  # a JVM start under load
            while time.monotonic() < deadline and "task" not in seen:
                # The job's name may carry a deployment suffix ("<name> [dev]"): match by prefix.
                jobs_ = [
                    j for j in workspace_client.jobs.list() if ((j.settings and j.settings.name) or "").startswith(name)
                ]
                for job in jobs_:
                    for run in workspace_client.jobs.list_runs(job_id=job.job_id):
                        full = workspace_client.jobs.get_run(run.run_id)
                        for t in full.tasks or []:
                            if t.task_key.endswith("__slow") and t.state.life_cycle_state.value == "RUNNING":
                                seen["run"], seen["task"] = full, t
                time.sleep(0.5)
            if "task" in seen:
                seen["pid"] = _task_process_pid(seen["task"].run_id)
        finally:
            _thread.interrupt_main()  # how Dagster terminates an in-process step

    watcher = threading.Thread(target=terminate_once_slow_runs, daemon=True)
    watcher.start()
    try:
        # In a copy of the context: an interrupt can land while Dagster holds a context variable
        # (its current instance's state storage), which must not outlive this test.
        result = contextvars.copy_context().run(
            dg.materialize, [build_workflow_assets(workflow)], resources={"databricks": resource}, raise_on_error=False
        )
    except KeyboardInterrupt:
        result = None
    watcher.join(timeout=60)
    assert "task" in seen, "the slow task never started"
    run = seen["run"]

    # The %sql notebook ran on Spark, reading what it wrote through /dbfs from dbfs:/.
    numbers = next(t for t in workspace_client.jobs.get_run(run.run_id).tasks if t.task_key.endswith("__numbers"))
    assert numbers.state.result_state.value == "SUCCESS", numbers.state
    output = json.loads(workspace_client.jobs.get_run_output(numbers.run_id).notebook_output.result)
    assert output == {"total": 55, "rows": 10}
    assert (local_workspace.paths.dbfs / "tmp" / name / "numbers.csv").is_file()
    if result is not None:  # Dagster may instead re-raise the interrupt
        assert not result.success
        # `numbers` is materialized only if the watcher polled between its end and the interrupt.
        assert {e.asset_key for e in result.get_asset_materialization_events()} <= {key(name, "numbers")}

    # Terminating the step cancelled the run and killed the real task process.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = workspace_client.jobs.get_run(run.run_id).state
        if state.life_cycle_state.value == "TERMINATED" and _process_gone(seen["pid"]):
            break
        time.sleep(0.5)
    assert state.result_state.value == "CANCELED", state
    assert _process_gone(seen["pid"]), f"task process {seen['pid']} still running after the run was cancelled"
