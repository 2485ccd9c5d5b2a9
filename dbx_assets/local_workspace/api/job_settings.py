"""Job settings as jobs/create, jobs/reset, jobs/update and runs/submit accept them: every task,
environment and job cluster typed through the SDK's dataclasses, task keys unique, dependencies
and job cluster keys that exist, no cycle, serverless and git_source rules, Databricks' defaults.
"""

from __future__ import annotations

import copy

from databricks.sdk.service import jobs as sdk_jobs

from ..engine.clusters import validate_cluster_spec
from ..engine.errors import invalid
from ..engine.git_sources import validate_git_source
from ..engine.serverless import validate as validate_serverless
from ..http.request_shapes import check_object, normalize
from .job_limits import check_job_limits


def validate_settings(
    settings: dict, task_cls: type = sdk_jobs.Task, *, name_field: str = "name", task_keys: bool = True
) -> dict:
    """Job settings (jobs/create, reset, update; runs/submit as `task_cls=SubmitTask`) checked the way
    Databricks checks them, with its defaults filled in; a problem is a 400 ApiError naming it.
    `name_field` names the name in errors (runs/submit's `run_name`); `task_keys=False` skips the task
    key rules for a task the request did not name (a single-task runs/submit)."""
    settings = copy.deepcopy(settings)
    tasks = settings.get("tasks") or []
    # Typed through the SDK's dataclasses: no wrong type or unknown field reaches the scheduler.
    settings["tasks"] = tasks = [
        normalize(check_object(t, task_cls, f"tasks[{i}]"), task_cls) for i, t in enumerate(tasks)
    ]
    if settings.get("environments"):
        settings["environments"] = [
            normalize(check_object(e, sdk_jobs.JobEnvironment, f"environments[{i}]"), sdk_jobs.JobEnvironment)
            for i, e in enumerate(settings["environments"])
        ]
    if settings.get("job_clusters"):
        settings["job_clusters"] = [
            normalize(check_object(c, sdk_jobs.JobCluster, f"job_clusters[{i}]"), sdk_jobs.JobCluster)
            for i, c in enumerate(settings["job_clusters"])
        ]
    check_job_limits(settings, name_field=name_field, task_keys=task_keys)  # Databricks' documented field limits
    keys = [t.get("task_key") for t in tasks]
    if any(not k for k in keys):
        raise invalid("Every task needs a task_key")
    if len(set(keys)) != len(keys):
        raise invalid(f"Task keys must be unique, got duplicates in {keys}")
    cluster_keys = {c.get("job_cluster_key") for c in settings.get("job_clusters") or []}
    for c in settings.get("job_clusters") or []:
        validate_cluster_spec(c.get("new_cluster") or {}, f"job_clusters[{c.get('job_cluster_key')}].new_cluster")
    for t in tasks:
        for dep in t.get("depends_on") or []:
            if dep.get("task_key") not in keys:
                raise invalid(
                    f"Task {t['task_key']} depends on {dep.get('task_key')!r}, which is not a task of this job"
                )
        if t.get("job_cluster_key") and t["job_cluster_key"] not in cluster_keys:
            raise invalid(
                f"Task {t['task_key']} uses job_cluster_key {t['job_cluster_key']!r}, which is not defined in job_clusters"
            )
        if t.get("new_cluster"):
            validate_cluster_spec(t["new_cluster"], f"tasks[{t['task_key']}].new_cluster")
    _check_acyclic(tasks)
    validate_serverless(settings)
    if settings.get("git_source"):
        problem = validate_git_source(settings["git_source"])
        if problem:
            raise invalid(problem)
    settings.setdefault("max_concurrent_runs", 1)
    settings.setdefault("name", "Untitled")
    settings.setdefault("format", "MULTI_TASK")
    settings.setdefault("timeout_seconds", 0)
    return settings


def _check_acyclic(tasks: list[dict]) -> None:
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    state: dict[str, int] = {}

    def visit(k: str) -> None:
        if state.get(k) == 1:
            raise invalid(f"The task dependency graph has a cycle through {k!r}")
        if state.get(k) == 2:
            return
        state[k] = 1
        for d in deps.get(k, []):
            visit(d)
        state[k] = 2

    for k in deps:
        visit(k)
