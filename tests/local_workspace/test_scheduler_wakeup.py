"""The local scheduler starts a task because its upstream task ended, not because a polling period
came round: with the run loop's backstop set to an hour, a dependent still starts as soon as its
upstream task's handle returns; and a task process's exit wakes its waiter at once, however long
the waiter was prepared to wait. (How fast, measured, is `bench report_latency`'s gap figure.)"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any, cast

from dbx_assets.local_workspace.engine.clusters import Clusters
from dbx_assets.local_workspace.engine.run_documents import RunDocuments
from dbx_assets.local_workspace.engine.scheduler import Scheduler
from dbx_assets.local_workspace.engine.state import StateStore
from dbx_assets.local_workspace.runtime.cluster import _wait_for_exit
from dbx_assets.local_workspace.runtime.contract import ClusterSpec, StoragePaths, TaskOutcome

AN_HOUR = 3600.0


class _GatedTask:
    """A task that ends when the test opens its gate; its wait() ignores the timeout it is given."""

    def __init__(self, gate: threading.Event):
        self.gate = gate

    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        self.gate.wait()
        return TaskOutcome("SUCCESS")

    def cancel(self) -> None:
        self.gate.set()


class _GatedCluster:
    def __init__(self, started: dict[str, threading.Event], gates: dict[str, threading.Event]):
        self.started, self.gates = started, gates

    def start(self, timeout: float = 300) -> None:
        pass

    @property
    def alive(self) -> bool:
        return True

    def run_task(self, invocation: Any) -> _GatedTask:
        self.started[invocation].set()  # the stub invocation is the task key
        return _GatedTask(self.gates[invocation])

    def terminate(self) -> None:
        pass

    def adopt(self, cluster_id: str, spec: ClusterSpec) -> None:
        pass


class _KeyAsInvocation:
    def build(self, run: dict, task: dict, spec: dict) -> str:
        return task["task_key"]


def test_a_dependent_task_starts_when_its_upstream_ends_not_on_a_polling_period(tmp_path):
    keys = ("extract", "load")
    started = {k: threading.Event() for k in keys}
    gates = {k: threading.Event() for k in keys}
    store = StateStore(tmp_path / "state.db")
    paths = StoragePaths(tmp_path).ensure()
    clusters = Clusters(store, paths, lambda cluster_id, spec, paths: _GatedCluster(started, gates))
    scheduler = Scheduler(
        store, clusters, cast(Any, _KeyAsInvocation()), lambda: "http://local", backstop_seconds=AN_HOUR
    )
    runs = RunDocuments(store, lambda: "http://local", scheduler.active_count)
    cluster = {"job_cluster_key": "c", "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 0}}
    run = runs.new_run(
        job_id=None,
        run_name="chain",
        run_type="SUBMIT_RUN",
        tasks=[
            {"task_key": "extract", "job_cluster_key": "c"},
            {"task_key": "load", "job_cluster_key": "c", "depends_on": [{"task_key": "extract"}]},
        ],
        job_clusters=[cluster],
        timeout=0,
        params={},
        job_parameters=[],
        overriding=None,
        max_concurrent=None,
        queue=False,
    )
    try:
        scheduler.start(run, list(keys))
        assert started["extract"].wait(60)
        assert not started["load"].is_set()  # it waits for its upstream task
        gates["extract"].set()  # the upstream task ends: nothing else happens for an hour
        assert started["load"].wait(60), "the dependent task waited for a polling period, not for the task's end"
        gates["load"].set()
        executor = scheduler.executor(run["run_id"])
        if executor is not None:
            executor.thread.join(60)
        done = store.get("run", run["run_id"])
        assert done is not None
        assert done["state"]["result_state"] == "SUCCESS"
        extract, load = (next(t for t in done["tasks"] if t["task_key"] == k) for k in keys)
        assert load["start_time"] >= extract["end_time"] > 0
    finally:
        scheduler.shutdown()
        store.close()


def test_a_task_process_exit_wakes_its_waiter_however_long_it_would_wait():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_for_exit(process, AN_HOUR)  # returns with the exit, not after the hour
        assert process.poll() == 0
    finally:
        process.kill()
        process.wait()
