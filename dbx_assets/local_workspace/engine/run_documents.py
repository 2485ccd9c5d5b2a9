"""Run documents: a new run of a job (or a runs/submit) as the engine stores it and runs/get serves
it — the API's own JSON shape plus the private `_spec` the scheduler runs from (the tasks, job
clusters, timeout, parameters, queueing, git_source and environments it was started with) — and
each task's entry in it (its task run: own run id, page, state). A run over its job's
max_concurrent_runs is SKIPPED, or QUEUED with queue_details when the job queues.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from .clock import real_now_ms
from .clusters import LOCAL_USER
from .run_state import queue_details, repair_item, set_state
from .state import StateStore

# The fields of a task's settings its task run shows in runs/get.
TASK_FIELDS = (
    "notebook_task",
    "spark_python_task",
    "python_wheel_task",
    "dbt_task",
    "job_cluster_key",
    "new_cluster",
    "existing_cluster_id",
    "libraries",
    "timeout_seconds",
    "run_if",
    "description",
    "environment_key",
    "max_retries",
    "min_retry_interval_millis",
    "retry_on_timeout",
    "email_notifications",
)


def run_page_url(host: str, job_id: int | None, run_id: int) -> str:
    """The run page (pages/run.py), a real path like Databricks' /jobs/<job>/runs/<run>; a task run has its own."""
    return f"{host}/jobs/{job_id if job_id is not None else 'submit'}/runs/{run_id}"


class RunDocuments:
    def __init__(self, store: StateStore, host: Callable[[], str], active_count: Callable[[int], int]):
        self.store = store
        self.host = host
        self.active_count = active_count  # active runs of a job (the scheduler's)

    def new_run(
        self,
        *,
        job_id,
        run_name,
        run_type,
        tasks,
        job_clusters,
        timeout,
        params,
        job_parameters,
        overriding,
        max_concurrent,
        queue,
        git_source=None,
        environments=(),
        performance_target=None,
    ) -> dict:
        run_id = self.store.next_id("run", 100000)
        kept = {t["task_key"] for t in tasks}
        spec_tasks = []
        for t in tasks:
            t = copy.deepcopy(t)
            t["depends_on"] = [d for d in t.get("depends_on") or [] if d["task_key"] in kept]  # `only` drops the rest
            spec_tasks.append(t)
        used_keys = {t.get("job_cluster_key") for t in spec_tasks}
        run = {
            "job_id": job_id,
            "run_id": run_id,
            "number_in_job": run_id,
            "original_attempt_run_id": run_id,
            "run_name": run_name,
            "run_type": run_type,
            "creator_user_name": LOCAL_USER,
            "format": "MULTI_TASK",
            "trigger": "ONE_TIME",
            "start_time": real_now_ms(),
            "setup_duration": 0,
            "execution_duration": 0,
            "cleanup_duration": 0,
            "run_page_url": self.page_url(job_id, run_id),
            "job_clusters": [c for c in job_clusters if c["job_cluster_key"] in used_keys],
            "job_parameters": job_parameters,
            "tasks": [],
            "repair_history": [repair_item("ORIGINAL", real_now_ms(), [])],
            "_spec": {
                "tasks": spec_tasks,
                "job_clusters": job_clusters,
                "timeout_seconds": timeout,
                "params": params,
                "max_concurrent_runs": max_concurrent,
                "queue": queue,
                "git_source": git_source,
                "environments": list(environments),  # what each serverless runtime installs
            },
        }
        if performance_target:  # serverless runs report the performance target they ran with
            run["effective_performance_target"] = performance_target
        if git_source:  # runs/get shows it; the scheduler adds git_snapshot.used_commit when it checks out
            run["git_source"] = copy.deepcopy(git_source)
        if job_id is None:
            run.pop("job_id")
        if overriding:
            run["overriding_parameters"] = overriding
        for t in spec_tasks:
            run["tasks"].append(self.task_view(run, t))
        run["repair_history"][0]["task_run_ids"] = [t["run_id"] for t in run["tasks"]]
        set_state(run, "QUEUED" if queue else "PENDING")
        if job_id is not None and max_concurrent and self.active_count(job_id) >= max_concurrent and not queue:
            msg = f"Skipping this run because the limit of {max_concurrent} maximum concurrent runs has been reached."
            set_state(run, "SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED", msg)
            run["end_time"] = real_now_ms()
            for t in run["tasks"]:
                set_state(t, "SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED", msg)
            run["_skipped"] = True
        elif job_id is not None and max_concurrent and self.active_count(job_id) >= max_concurrent:
            run["status"]["queue_details"] = queue_details(  # the per-job limit (ACTIVE_RUNS_LIMIT is the workspace's)
                "MAX_CONCURRENT_RUNS_REACHED",
                f"The run was queued due to reaching the per-job limit of {max_concurrent} concurrent job runs "
                "(max_concurrent_runs).",
            )
        return run

    def task_view(self, run: dict, spec: dict) -> dict:
        task_run_id = self.store.next_id("run", 100000)
        view = {k: copy.deepcopy(spec[k]) for k in TASK_FIELDS if k in spec}
        view.update(
            task_key=spec["task_key"],
            run_id=task_run_id,
            depends_on=spec.get("depends_on", []),
            run_if=spec.get("run_if", "ALL_SUCCESS"),
            attempt_number=0,
            start_time=0,
            setup_duration=0,
            execution_duration=0,
            cleanup_duration=0,
            end_time=0,
            run_page_url=self.page_url(run.get("job_id"), task_run_id),
        )
        set_state(view, "BLOCKED" if spec.get("depends_on") else "PENDING")
        self.store.put("task_run", task_run_id, {"parent_run_id": run["run_id"], "task_key": spec["task_key"]})
        return view

    def page_url(self, job_id, run_id) -> str:
        return run_page_url(self.host(), job_id, run_id)
