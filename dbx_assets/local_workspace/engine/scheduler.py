"""Runs jobs: one executor thread per run (or repair) walks the task DAG, starts job
clusters on first use, hands each task to a cluster as a TaskInvocation (built by
task_invocations.py) and records the outcome in the run document that runs/get serves.

Run documents are stored in the API's own shape (plus a private `_spec`), so what
a client reads is exactly what was persisted and restarts read it back unchanged.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import traceback
from collections.abc import Callable

from ..runtime.contract import ClusterStartError, TaskOutcome
from ..runtime.table_commits import remove_uncommitted_tables
from .clock import real_now_ms
from .clusters import ClusterRuntime, Clusters, TaskHandle
from .retries import latest_attempts, new_attempt, retry_due, retry_interval_seconds
from .run_documents import run_page_url
from .run_state import ACTIVE_RUN_STATES, FAILED_RESULTS, queue_details, set_state
from .serverless import is_serverless, runtime_key
from .state import StateStore
from .task_invocations import TaskInvocations, TaskSetupError

RESTART_MESSAGE = "The local workspace restarted while this run was active"

log = logging.getLogger("dbx_local_workspace")


class RunExecutor:
    """Executes the selected tasks of one run (the original run or one repair of it)."""

    def __init__(self, sched: Scheduler, run: dict, task_keys: list[str], repair_id: int | None):
        self.s = sched
        self.run = run
        self.run_id = run["run_id"]
        self.task_keys = task_keys
        self.repair_id = repair_id
        self.cond = threading.Condition(threading.RLock())
        self.cancel_requested = False
        self.timed_out = False
        self.internal_error: str | None = None
        self.running: dict[str, TaskHandle] = {}
        self.finished: set[str] = set()
        self.started: set[str] = set()
        self.job_clusters: dict[str, tuple[str, ClusterRuntime] | None] = {}
        self.cluster_locks: dict[str, threading.Lock] = {}
        self.own_clusters: list[str] = []
        self.task_clusters: dict[str, str] = {}  # task_key -> its own new_cluster, ended when the task ends
        self.retry_at: dict[str, float] = {}  # task_key -> monotonic time its next attempt may start
        self.thread = threading.Thread(target=self._main, name=f"run-{self.run_id}", daemon=True)

    # -- helpers ------------------------------------------------------------------------------
    def task(self, key: str) -> dict:
        # The latest attempt: a retried task has one entry per attempt, appended in order.
        return [t for t in self.run["tasks"] if t["task_key"] == key][-1]

    def spec_of(self, key: str) -> dict:
        return next(t for t in self.run["_spec"]["tasks"] if t["task_key"] == key)

    def save(self) -> None:
        with self.cond:
            self.s.store.put("run", self.run_id, self.run)
            self.cond.notify_all()

    def request_cancel(self) -> None:
        with self.cond:
            self.cancel_requested = True
            self.cond.notify_all()

    def show_queue_reason(self, code: str, message: str) -> None:
        """runs/get of a queued run says why it waits (status.queue_details); saved when it changes."""
        with self.cond:
            status = self.run["status"]
            if self.run["state"]["life_cycle_state"] != "QUEUED" or status.get("queue_details", {}).get("code") == code:
                return
            status["queue_details"] = queue_details(code, message)
            self.save()

    # -- main loop -------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            if not self.s.wait_for_slot(self):
                return self._finish_canceled_before_start()
            with self.cond:
                self.run["start_time"] = self.run.get("start_time") or real_now_ms()
                if self.run["state"]["life_cycle_state"] in ("QUEUED", "BLOCKED"):
                    self.run["start_time"] = real_now_ms()
                set_state(self.run, "PENDING", message="Waiting for cluster")
                self.save()
            self._drive()
        except Exception:
            self.internal_error = f"Internal error in the local scheduler: {traceback.format_exc(limit=3)}"
        finally:
            try:
                self._finalize()
            finally:
                self.s.release_slot(self)

    def _drive(self) -> None:
        timeout = int(self.run["_spec"].get("timeout_seconds") or 0)
        deadline = time.monotonic() + timeout if timeout > 0 else None
        with self.cond:
            while True:
                if deadline and time.monotonic() > deadline and not self.timed_out:
                    self.timed_out = True
                    self._stop_everything()
                if self.cancel_requested or self.internal_error:
                    self._stop_everything()
                self._start_ready_tasks()
                if all(k in self.finished for k in self.task_keys):
                    return
                self.cond.wait(0.25)

    def _stop_everything(self) -> None:
        for key in self.task_keys:
            if key in self.finished or key in self.started:
                continue
            result = "TIMEDOUT" if self.timed_out else ("CANCELED" if self.cancel_requested else None)
            life = "INTERNAL_ERROR" if (self.internal_error and not result) else "TERMINATED"
            # A failed cluster start fails every waiting task with its reason, as on Databricks.
            message = (
                (self.internal_error or "") if life == "INTERNAL_ERROR" else "Run was stopped before this task started"
            )
            self._end_task(key, life, result or "FAILED", message)
        for rt in list(self.running.values()):
            try:
                rt.cancel()
            except Exception:  # stopping is best effort: one task that cannot be cancelled must not block the rest
                log.exception("run %s: cancelling a task failed", self.run_id)

    def _start_ready_tasks(self) -> None:
        for key in self.task_keys:
            if key in self.started or key in self.finished:
                continue
            deps = [d["task_key"] for d in self.task(key).get("depends_on", [])]
            dep_states = []
            for d in deps:
                dt = self.task(d)
                if d in self.task_keys and d not in self.finished:
                    break
                dep_states.append(dt["state"].get("result_state"))
            else:
                run_it, skip_result = self._run_if(self.spec_of(key).get("run_if", "ALL_SUCCESS"), dep_states)
                if not run_it:
                    msg = (
                        "Upstream task(s) failed"
                        if skip_result.startswith("UPSTREAM")
                        else "The task's run_if condition was not met"
                    )
                    self._end_task(key, "TERMINATED", skip_result, msg)
                    continue
                self.started.add(key)
                threading.Thread(
                    target=self._task_thread, args=(key,), name=f"task-{self.run_id}-{key}", daemon=True
                ).start()

    @staticmethod
    def _run_if(rule: str, results: list[str | None]) -> tuple[bool, str]:
        if not results:
            return True, ""
        ok = [r == "SUCCESS" for r in results]
        failed = [r in FAILED_RESULTS for r in results]
        canceled = any(r in ("CANCELED", "UPSTREAM_CANCELED") for r in results)
        upstream = "UPSTREAM_CANCELED" if canceled else "UPSTREAM_FAILED"
        if rule == "ALL_DONE":
            return True, ""
        if rule == "NONE_FAILED":
            return (not any(failed)), upstream
        if rule == "AT_LEAST_ONE_SUCCESS":
            return any(ok), upstream
        if rule == "ALL_FAILED":
            return all(failed), "EXCLUDED"
        if rule == "AT_LEAST_ONE_FAILED":
            return any(failed), "EXCLUDED"
        # ALL_SUCCESS (default); an excluded upstream does not block it
        if all(r in ("SUCCESS", "EXCLUDED") for r in results):
            return True, ""
        return False, upstream if any(failed) else "EXCLUDED"

    def _end_task(
        self,
        key: str,
        life: str,
        result: str,
        message: str,
        outcome: TaskOutcome | None = None,
        retryable: bool = False,
    ) -> None:
        with self.cond:
            t = self.task(key)
            end = real_now_ms()
            set_state(t, life, result, message, result in ("CANCELED", "TIMEDOUT"))
            t["end_time"] = end
            if t.get("start_time"):
                ran_from = t["start_time"] + t.get("setup_duration", 0)
                t["execution_duration"] = max(0, end - ran_from) if t["state"].get("result_state") else 0
            else:
                t["start_time"] = end
            t.setdefault("setup_duration", 0)
            t.setdefault("execution_duration", 0)
            t["cleanup_duration"] = 0
            record = self.s.store.get("task_run", t["run_id"]) or {}
            record.update(parent_run_id=self.run_id, task_key=key)
            if outcome is not None:
                record["outcome"] = {
                    "notebook_result": outcome.notebook_result,
                    "notebook_result_truncated": outcome.notebook_result_truncated,
                    "error": outcome.error,
                    "error_trace": outcome.error_trace,
                    "logs": outcome.logs,
                    "logs_truncated": outcome.logs_truncated,
                    "dbt_artifacts_dir": str(outcome.dbt_artifacts_dir) if outcome.dbt_artifacts_dir else None,
                    "task_values": dict(outcome.task_values or {}),
                }
                # Kept with the run for later tasks (taskValues.get, {{tasks.<key>.values.<name>}}); latest attempt wins.
                self.run.setdefault("_task_values", {})[key] = dict(outcome.task_values or {})
            elif message and result not in ("SUCCESS",):
                record.setdefault("outcome", {"error": message})
            self.s.store.put("task_run", t["run_id"], record)
            self.running.pop(key, None)
            if retryable and self._schedule_retry(key, t, result):
                self.save()  # the failed attempt and its WAITING_FOR_RETRY successor, in one write
                return
            self.finished.add(key)
            self.save()

    def _schedule_retry(self, key: str, attempt: dict, result: str) -> bool:
        """Append the task's next attempt if its retry policy allows one (under self.cond)."""
        if self.cancel_requested or self.timed_out or self.internal_error:
            return False
        spec = self.spec_of(key)
        if not retry_due(spec, attempt, result):
            return False
        task_run_id = self.s.store.next_id("run", 100000)
        view = new_attempt(attempt, task_run_id, run_page_url(self.s.host(), self.run.get("job_id"), task_run_id))
        self.run["tasks"].append(view)
        self.s.store.put("task_run", task_run_id, {"parent_run_id": self.run_id, "task_key": key})
        for entry in self.run.get("repair_history", []):
            if (entry.get("id") == self.repair_id) if self.repair_id else entry["type"] == "ORIGINAL":
                entry.setdefault("task_run_ids", []).append(task_run_id)
        self.retry_at[key] = time.monotonic() + retry_interval_seconds(spec)
        log.info(
            "task %s of run %s: attempt %s %s, retrying as task run %s",
            key,
            self.run_id,
            attempt.get("attempt_number", 0),
            result,
            task_run_id,
        )
        return True

    def _wait_for_retry(self, key: str) -> bool:
        """Wait out the retry interval; False (the waiting attempt ended) if the run stops meanwhile."""
        with self.cond:
            if key not in self.retry_at:
                return False
            due = self.retry_at.pop(key)
            while True:
                if self.cancel_requested or self.timed_out or self.internal_error:
                    result = "TIMEDOUT" if self.timed_out else "CANCELED" if self.cancel_requested else "FAILED"
                    self._end_task(key, "TERMINATED", result, "Run was stopped before this task's retry started")
                    return False
                left = due - time.monotonic()
                if left <= 0:
                    return True
                self.cond.wait(min(left, 0.25))

    # -- one task --------------------------------------------------------------------------------
    def _task_thread(self, key: str) -> None:
        """Run one task; whatever goes wrong ends it INTERNAL_ERROR (never a run stuck PENDING)."""
        try:
            self._run_task(key)
            while self._wait_for_retry(key):  # each retry is a new attempt (and a new cluster for new_cluster tasks)
                self._end_task_cluster(key)
                self._run_task(key)
        except BaseException as e:
            log.error("task %s of run %s failed in the scheduler: %s", key, self.run_id, traceback.format_exc())
            self._fail_task(
                key, f"Internal error in the local scheduler while running task {key}: {type(e).__name__}: {e}"
            )
        finally:
            self._end_task_cluster(key)

    def _end_task_cluster(self, key: str) -> None:
        cluster_id = self.task_clusters.pop(key, None)
        if cluster_id is not None:
            try:
                self.s.clusters.end_job_cluster(cluster_id)
            except Exception:
                log.error("could not end cluster %s of task %s: %s", cluster_id, key, traceback.format_exc())

    def _fail_task(self, key: str, message: str) -> None:
        with self.cond:
            if key in self.finished:
                return
            try:
                self._end_task(key, "INTERNAL_ERROR", "FAILED", message)
            except Exception:  # even recording failed: still let the run finish
                log.error("could not record the failure of task %s: %s", key, traceback.format_exc())
                self.finished.add(key)
                self.running.pop(key, None)
                self.cond.notify_all()

    def _run_task(self, key: str) -> None:
        t = self.task(key)
        spec = self.spec_of(key)
        with self.cond:
            t["start_time"] = real_now_ms()
            set_state(t, "PENDING", message="Waiting for cluster")
            self.save()
        try:
            cluster_id, cluster = self._cluster_for(key, spec)
            if spec.get("new_cluster"):
                self.task_clusters[key] = cluster_id
        except ClusterStartError as e:
            with self.cond:  # tasks sharing the failed cluster report the first failure once, not nested
                self.internal_error = self.internal_error or f"Cluster failed to start: {e}"
                self._end_task(key, "INTERNAL_ERROR", "FAILED", self.internal_error)
            return
        except ValueError as e:  # existing cluster not usable
            self._end_task(key, "INTERNAL_ERROR", "FAILED", str(e))
            return
        except Exception as e:
            self._end_task(key, "INTERNAL_ERROR", "FAILED", f"Could not get a cluster for task {key}: {e}")
            return
        try:
            invocation = self.s.invocations.build(self.run, t, spec)
        except TaskSetupError as e:
            self._end_task(key, "INTERNAL_ERROR", "FAILED", str(e))
            return
        with self.cond:
            if self.cancel_requested or self.timed_out or self.internal_error:
                result = "TIMEDOUT" if self.timed_out else "CANCELED" if self.cancel_requested else "FAILED"
                self._end_task(key, "TERMINATED", result, "Run was stopped before this task started")
                return
            t["cluster_instance"] = {
                "cluster_id": cluster_id,
                "spark_context_id": str(self.s.clusters.doc(cluster_id).get("spark_context_id", "")),
            }
            t["setup_duration"] = real_now_ms() - t["start_time"]
            set_state(t, "RUNNING")
            if self.run["state"]["life_cycle_state"] == "PENDING":
                set_state(self.run, "RUNNING")
                self.run["setup_duration"] = real_now_ms() - self.run["start_time"]
            self.save()
            try:
                running = cluster.run_task(invocation)
            except Exception as e:
                self._end_task(key, "INTERNAL_ERROR", "FAILED", f"The cluster could not run task {key}: {e}")
                return
            self.running[key] = running
        timeout = int(spec.get("timeout_seconds") or 0)
        deadline = time.monotonic() + timeout if timeout > 0 else None
        task_timed_out = False
        outcome = None
        while outcome is None:
            outcome = running.wait(timeout=0.5)
            if outcome is None and deadline and time.monotonic() > deadline and not task_timed_out:
                task_timed_out = True
                running.cancel()
        if task_timed_out or (self.timed_out and outcome.result_state == "CANCELED"):
            outcome.result_state = "TIMEDOUT"
            outcome.state_message = outcome.state_message or f"Task {key} timed out"
        message = outcome.state_message or (
            "" if outcome.result_state == "SUCCESS" else (outcome.error or f"Task {key} {outcome.result_state.lower()}")
        )
        if outcome.result_state == "CANCELED" and not message:
            message = "Run cancelled."
        self._end_task(key, "TERMINATED", outcome.result_state, message, outcome, retryable=True)

    def _cluster_for(self, key: str, spec: dict) -> tuple[str, ClusterRuntime]:
        if spec.get("existing_cluster_id"):
            cid = spec["existing_cluster_id"]
            return cid, self.s.clusters.running(cid, lambda: self.cancel_requested or self.timed_out)
        if spec.get("new_cluster"):
            name = f"job-{self.run.get('job_id', 'submit')}-run-{self.run_id}-{key}"
            cid, rt = self.s.clusters.start_job_cluster(spec["new_cluster"], self.run_id, name)
            return cid, rt
        serverless = is_serverless(spec)
        ck = runtime_key(spec) if serverless else spec["job_cluster_key"]
        with self.cond:
            lock = self.cluster_locks.setdefault(ck, threading.Lock())
        with lock:  # the first task needing the cluster starts it; the others wait and share it
            if ck in self.job_clusters:
                existing = self.job_clusters[ck]
                if existing is None:
                    raise ClusterStartError(self.internal_error or f"Job cluster {ck} failed to start")
                return existing
            cluster_def = next(
                (c["new_cluster"] for c in self.run["_spec"].get("job_clusters", []) if c["job_cluster_key"] == ck),
                None,
            )
            if cluster_def is None:
                if not serverless:
                    raise ValueError(f"Task {key} uses job_cluster_key {ck!r}, which is not defined in job_clusters")
                cluster_def = {"spark_version": "serverless", "num_workers": 0}
            where = f"serverless-{spec.get('environment_key') or 'notebook'}" if serverless else ck
            name = f"job-{self.run.get('job_id', 'submit')}-run-{self.run_id}-{where}"
            try:
                entry = self.s.clusters.start_job_cluster(cluster_def, self.run_id, name)
            except ClusterStartError as e:
                with self.cond:  # before the tasks waiting on this lock see the failure: they report its reason
                    self.internal_error = self.internal_error or f"Cluster failed to start: {e}"
                self.job_clusters[ck] = None
                raise
            self.job_clusters[ck] = entry
            self.own_clusters.append(entry[0])
            return entry

    # -- the end --------------------------------------------------------------------------------
    def _finish_canceled_before_start(self) -> None:
        with self.cond:
            for key in self.task_keys:
                if key not in self.finished:
                    self._end_task(key, "TERMINATED", "CANCELED", "Run was cancelled while queued")

    def _finalize(self) -> None:
        with self.cond:
            if any(k not in self.finished for k in self.task_keys):
                self._stop_everything()
        while True:  # wait for task threads that are still reporting
            with self.cond:
                if all(k in self.finished for k in self.task_keys):
                    break
                self.cond.wait(0.25)
        with self.cond:
            if self.run["state"]["life_cycle_state"] not in ("QUEUED",):
                set_state(self.run, "TERMINATING")
                self.save()
        for cid in self.own_clusters:
            try:
                self.s.clusters.end_job_cluster(cid)
            except Exception:  # the run must still reach a terminal state
                log.exception("run %s: ending job cluster %s failed", self.run_id, cid)
        with self.cond:
            life, result, message = self._run_result()
            set_state(self.run, life, result, message, user_cancelled=result in ("CANCELED", "TIMEDOUT"))
            end = real_now_ms()
            self.run["end_time"] = end
            start = self.run.get("start_time") or end
            self.run["run_duration"] = end - start
            self.run["execution_duration"] = max(0, end - start - self.run.get("setup_duration", 0))
            self.run["cleanup_duration"] = 0
            self.run.setdefault("setup_duration", 0)
            entry = next(
                (
                    h
                    for h in self.run["repair_history"]
                    if (h.get("id") == self.repair_id if self.repair_id else h["type"] == "ORIGINAL")
                ),
                None,
            )
            if entry is not None:
                entry.update(
                    end_time=end, state=copy.deepcopy(self.run["state"]), status=copy.deepcopy(self.run["status"])
                )
            self.save()

    def _run_result(self) -> tuple[str, str, str]:
        if self.internal_error:
            return "INTERNAL_ERROR", "FAILED", self.internal_error
        if self.timed_out:
            return "TERMINATED", "TIMEDOUT", "Run timed out"
        if self.cancel_requested:
            return "TERMINATED", "CANCELED", "Run cancelled."
        tasks = latest_attempts(self.run["tasks"])  # an attempt that a retry made good does not count
        bad = [t["task_key"] for t in tasks if t["state"].get("result_state") in FAILED_RESULTS]
        if not bad:
            return "TERMINATED", "SUCCESS", ""
        upstreams = {d["task_key"] for t in tasks for d in t.get("depends_on", [])}
        leaves = [t for t in tasks if t["task_key"] not in upstreams]
        if all(t["state"].get("result_state") in ("SUCCESS", "EXCLUDED") for t in leaves):
            return "TERMINATED", "SUCCESS_WITH_FAILURES", f"{len(bad)} of {len(tasks)} tasks failed: {', '.join(bad)}"
        return "TERMINATED", "FAILED", f"{len(bad)} of {len(tasks)} tasks failed: {', '.join(bad)}"


class Scheduler:
    def __init__(
        self,
        store: StateStore,
        clusters: Clusters,
        invocations: TaskInvocations,
        host: Callable[[], str],
        max_active_runs: int = 8,
    ):
        self.store = store
        self.clusters = clusters
        self.invocations = invocations  # what a cluster runs for each task
        self.host = host
        self.max_active_runs = max_active_runs
        self._executors: dict[int, RunExecutor] = {}
        self._lock = threading.Condition(threading.RLock())
        self._active: list[RunExecutor] = []
        self._waiting: list[RunExecutor] = []

    # -- admission: per-job max_concurrent_runs with queueing, plus a workspace-wide cap -------
    def wait_for_slot(self, ex: RunExecutor) -> bool:
        with self._lock:
            self._waiting.append(ex)
            try:
                while True:
                    if ex.cancel_requested:
                        return False
                    reason = None if ex.repair_id is not None else self._queue_reason(ex)
                    if reason is None:
                        self._active.append(ex)
                        return True
                    ex.show_queue_reason(*reason)
                    self._lock.wait(0.5)
            finally:
                self._waiting.remove(ex)

    def _queue_reason(self, ex: RunExecutor) -> tuple[str, str] | None:
        """Why the run cannot start yet, as Databricks' queue_details (code, message); None: it can."""
        if len(self._active) >= self.max_active_runs:
            return "ACTIVE_RUNS_LIMIT_REACHED", (
                f"The run was queued due to reaching the workspace limit of {self.max_active_runs} active runs."
            )
        job_id = ex.run.get("job_id")
        limit = ex.run["_spec"].get("max_concurrent_runs")
        per_job = f"The run was queued due to reaching the per-job limit of {limit} concurrent job runs (max_concurrent_runs)."
        if self._waiting[0] is not ex and any(
            w.run.get("job_id") == job_id for w in self._waiting[: self._waiting.index(ex)]
        ):
            return "MAX_CONCURRENT_RUNS_REACHED", per_job  # FIFO within a job's queue
        if job_id is None or not limit:
            return None
        if sum(1 for a in self._active if a.run.get("job_id") == job_id) < limit:
            return None
        return "MAX_CONCURRENT_RUNS_REACHED", per_job

    def release_slot(self, ex: RunExecutor) -> None:
        with self._lock:
            if ex in self._active:
                self._active.remove(ex)
            self._executors.pop(ex.run_id, None)
            self._lock.notify_all()

    def active_count(self, job_id: int) -> int:
        with self._lock:
            return sum(1 for e in self._executors.values() if e.run.get("job_id") == job_id)

    # -- entry points ---------------------------------------------------------------------------
    def start(self, run: dict, task_keys: list[str], repair_id: int | None = None) -> None:
        ex = RunExecutor(self, run, task_keys, repair_id)
        with self._lock:
            self._executors[run["run_id"]] = ex
        ex.save()
        ex.thread.start()

    def executor(self, run_id: int) -> RunExecutor | None:
        with self._lock:
            return self._executors.get(run_id)

    def cancel(self, run_id: int) -> None:
        ex = self.executor(run_id)
        if ex is not None:
            ex.request_cancel()
            with self._lock:
                self._lock.notify_all()

    def shutdown(self) -> None:
        with self._lock:
            executors = list(self._executors.values())
        for ex in executors:
            ex.request_cancel()
        self.clusters.terminate_all()

    def recover_after_restart(self) -> None:
        cut_since: list[int] = []  # when the writes the previous server's death cut short began
        for _, run in self.store.all("run"):
            if run["state"]["life_cycle_state"] in ACTIVE_RUN_STATES:
                end = real_now_ms()
                for t in run["tasks"]:
                    if t["state"]["life_cycle_state"] in ACTIVE_RUN_STATES:
                        cut_since.append(t.get("start_time") or run.get("start_time") or end)
                        set_state(t, "INTERNAL_ERROR", "FAILED", RESTART_MESSAGE)
                        t["end_time"] = end
                set_state(run, "INTERNAL_ERROR", "FAILED", RESTART_MESSAGE)
                run["end_time"] = end
                for h in run.get("repair_history", []):
                    if not h.get("end_time"):
                        h.update(end_time=end, state=run["state"], status=run["status"])
                self.store.put("run", run["run_id"], run)
        # No cluster runs yet: tables those writes left half-written go, committed ones stay.
        remove_uncommitted_tables(self.clusters.paths.warehouse, interrupted_since_ms=min(cut_since, default=None))
