"""What every source of ready-made Databricks job tasks shares (a bundle's jobs, a workspace's
existing jobs): which kind a Jobs API task is, and which tasks it depends on.

A task declares exactly one type block (`notebook_task`, `spark_python_task`, ...); its
`depends_on` names other tasks of the same job. Errors are raised as the caller's error type
(`BundleError`, `JobSnapshotError`), naming `where` the task was declared.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

# Kinds dbx_assets builds from the task's own files (a bundle's), and the Jobs API's other kinds.
SUPPORTED_TASK_TYPES = ("notebook_task", "spark_python_task", "python_wheel_task", "dbt_task", "sql_task")
UNSUPPORTED_TASK_TYPES = (
    "pipeline_task",
    "run_job_task",
    "for_each_task",
    "condition_task",
    "spark_jar_task",
    "spark_submit_task",
    "clean_rooms_notebook_task",
    "dashboard_task",
    "power_bi_task",
    "gen_ai_compute_task",
)
TASK_TYPES = (*SUPPORTED_TASK_TYPES, *UNSUPPORTED_TASK_TYPES)
# A short word per kind, for asset kinds and descriptions.
KIND_LABELS = {
    "notebook_task": "notebook",
    "spark_python_task": "python",
    "python_wheel_task": "wheel",
    "dbt_task": "dbt",
    "sql_task": "sql",
    "pipeline_task": "pipeline",
    "run_job_task": "job",
    "for_each_task": "for_each",
    "condition_task": "condition",
    "spark_jar_task": "jar",
    "spark_submit_task": "spark_submit",
}


def task_type(task: Mapping[str, Any], where: str, error: type[Exception]) -> str:
    """The task's one type block ("notebook_task", ...)."""
    if not task.get("task_key"):
        raise error(f"{where}: a task has no task_key.")
    kinds = [k for k in TASK_TYPES if task.get(k) is not None]
    if len(kinds) != 1:
        raise error(
            f"{where}: task '{task['task_key']}' must declare exactly one task type (found {', '.join(kinds) or 'none'})."
        )
    return kinds[0]


def upstream_tasks(
    task: Mapping[str, Any], task_keys: Collection[str], where: str, error: type[Exception]
) -> list[str]:
    """The task keys of `depends_on`, each a task of the same job."""
    out = []
    for dependency in task.get("depends_on") or []:
        upstream = dependency.get("task_key")
        if upstream not in task_keys:
            raise error(f"{where}: task '{task['task_key']}' depends on '{upstream}', which is not a task of the job.")
        out.append(str(upstream))
    return out


def task_target(task: Mapping[str, Any], kind: str) -> str:
    """What the task runs, in a few words: its notebook, file, entry point, pipeline, job, ..."""
    block = task.get(kind) or {}
    for field in ("notebook_path", "python_file", "entry_point", "pipeline_id", "job_id", "main_class_name"):
        if block.get(field) is not None:
            return str(block[field])
    if kind == "sql_task":
        for field in ("file", "query", "dashboard", "alert"):
            if isinstance(block.get(field), Mapping):
                inner = block[field]
                return str(inner.get("path") or inner.get("query_id") or inner.get("dashboard_id") or field)
    if kind == "dbt_task":
        return " && ".join(str(c) for c in block.get("commands") or [])
    return ""
