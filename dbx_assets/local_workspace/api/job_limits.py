"""The field limits Databricks documents for job settings, refused with 400 INVALID_PARAMETER_VALUE
by jobs/create, jobs/reset, jobs/update and runs/submit ("This method might return ... 400
INVALID_PARAMETER_VALUE: Supplied value for a parameter was invalid").

From the Jobs API 2.2 reference (docs.databricks.com/api/workspace/jobs/create), also in the SDK's
docstrings:
- name: "<= 4096 characters ... The maximum length is 4096 bytes in UTF-8 encoding" (run_name too)
- description: "<= 27700 characters"
- tasks: "It supports up to 1000 elements in write endpoints"
- task_key, job_cluster_key, a task's environment_key: "[ 1 .. 100 ] characters ^[\\w\\-\\_]+$"
- a task's description: "<= 1000 characters"
- job_clusters: "<= 100 items"; environments: "<= 10 items"
- tags: "A maximum of 25 tags can be added to the job"
- max_concurrent_runs: "This value cannot exceed 1000"
- parameters[].name: "^[\\w\\-.]+$ ... May only contain alphanumeric characters, _, -, and ."
- webhook_notifications: "A maximum of 3 destinations can be specified" per property
- git_source: git_url <= 300, git_branch and git_tag <= 255, git_commit <= 64 characters
- notebook_task.base_parameters: "The JSON representation of this field cannot exceed 1MB"
- dbt_task.commands: "A maximum of up to 10 commands can be provided"
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..engine.errors import invalid

MAX_NAME_BYTES = 4096
MAX_DESCRIPTION_CHARS = 27700
MAX_TASKS = 1000
MAX_KEY_CHARS = 100
MAX_TASK_DESCRIPTION_CHARS = 1000
MAX_JOB_CLUSTERS = 100
MAX_ENVIRONMENTS = 10
MAX_TAGS = 25
MAX_CONCURRENT_RUNS = 1000
MAX_WEBHOOK_DESTINATIONS = 3
MAX_BASE_PARAMETERS_BYTES = 1024 * 1024
MAX_DBT_COMMANDS = 10
GIT_FIELD_CHARS = {"git_url": 300, "git_branch": 255, "git_tag": 255, "git_commit": 64}

# Databricks validates with Java regular expressions, where \w is [a-zA-Z_0-9].
_KEY = re.compile(r"[\w\-]+", re.ASCII)
_PARAMETER_NAME = re.compile(r"[\w\-.]+", re.ASCII)


def check_job_limits(settings: Mapping[str, Any], *, name_field: str = "name", task_keys: bool = True) -> None:
    """Raise INVALID_PARAMETER_VALUE naming the first documented limit `settings` exceed.
    `task_keys=False` skips the task key rules (a single-task runs/submit names its task itself)."""
    problem = next(_problems(settings, name_field, task_keys), None)
    if problem is not None:
        raise invalid(problem)


def _problems(s: Mapping[str, Any], name_field: str, task_keys: bool) -> Iterator[str]:
    name = s.get("name")
    if isinstance(name, str) and len(name.encode()) > MAX_NAME_BYTES:
        yield (
            f"The {name_field} is {len(name.encode())} bytes in UTF-8; the maximum length is {MAX_NAME_BYTES} bytes."
        )
    description = s.get("description")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION_CHARS:
        yield (
            f"The job description is {len(description)} characters; "
            f"the maximum length is {MAX_DESCRIPTION_CHARS} characters."
        )
    yield from _count("tasks", s.get("tasks"), MAX_TASKS)
    yield from _count("job_clusters", s.get("job_clusters"), MAX_JOB_CLUSTERS)
    yield from _count("environments", s.get("environments"), MAX_ENVIRONMENTS)
    tags = s.get("tags") or {}
    if len(tags) > MAX_TAGS:
        yield f"The job has {len(tags)} tags; a maximum of {MAX_TAGS} tags can be added to a job."
    concurrent = s.get("max_concurrent_runs")
    if isinstance(concurrent, int) and not 0 <= concurrent <= MAX_CONCURRENT_RUNS:
        yield f"max_concurrent_runs is {concurrent}; it must be between 0 and {MAX_CONCURRENT_RUNS}."
    for parameter in s.get("parameters") or []:
        parameter_name = str(parameter.get("name", ""))
        if not _PARAMETER_NAME.fullmatch(parameter_name):
            yield (
                f"Invalid job parameter name {parameter_name[:120]!r}: it may only contain alphanumeric "
                "characters, '_', '-' and '.'."
            )
    for cluster in s.get("job_clusters") or []:
        yield from _key("job_clusters", "job_cluster_key", cluster.get("job_cluster_key"))
    yield from _webhooks("webhook_notifications", s.get("webhook_notifications"))
    for field, limit in GIT_FIELD_CHARS.items():
        value = (s.get("git_source") or {}).get(field)
        if isinstance(value, str) and len(value) > limit:
            yield f"git_source.{field} is {len(value)} characters; the maximum is {limit}."
    for task in s.get("tasks") or []:
        yield from _task_problems(task, task_keys)


def _task_problems(task: Mapping[str, Any], task_keys: bool) -> Iterator[str]:
    key = task.get("task_key")
    if task_keys:
        yield from _key("tasks", "task_key", key)
    where = f"Task {str(key)[:MAX_KEY_CHARS]!r}"
    description = task.get("description")
    if isinstance(description, str) and len(description) > MAX_TASK_DESCRIPTION_CHARS:
        yield (
            f"{where}: its description is {len(description)} characters; the maximum is {MAX_TASK_DESCRIPTION_CHARS}."
        )
    for field in ("job_cluster_key", "environment_key"):
        if task.get(field) is not None:
            yield from _key(f"{where}:", field, task[field])
    base_parameters = (task.get("notebook_task") or {}).get("base_parameters")
    if base_parameters:
        size = len(json.dumps(base_parameters).encode())
        if size > MAX_BASE_PARAMETERS_BYTES:
            yield (
                f"{where}: notebook_task.base_parameters is {size} bytes as JSON; "
                f"the maximum is {MAX_BASE_PARAMETERS_BYTES} bytes."
            )
    commands = (task.get("dbt_task") or {}).get("commands") or []
    if len(commands) > MAX_DBT_COMMANDS:
        yield f"{where}: dbt_task has {len(commands)} commands; a maximum of {MAX_DBT_COMMANDS} can be provided."
    yield from _webhooks(f"{where}: webhook_notifications", task.get("webhook_notifications"))


def _count(field: str, items: Any, limit: int) -> Iterator[str]:
    if isinstance(items, list) and len(items) > limit:
        yield f"{field} has {len(items)} elements; the maximum is {limit}."


def _key(where: str, field: str, value: Any) -> Iterator[str]:
    if not isinstance(value, str):
        return  # presence is checked with the job's structure
    if not 1 <= len(value) <= MAX_KEY_CHARS:
        yield f"{where} {field} is {len(value)} characters; it must be 1 to {MAX_KEY_CHARS} characters."
    elif not _KEY.fullmatch(value):
        yield (
            f"{where} {field} {value!r} is invalid: it may only contain alphanumeric characters, "
            "'_' and '-' (^[\\w\\-\\_]+$)."
        )


def _webhooks(where: str, notifications: Any) -> Iterator[str]:
    for event, destinations in (notifications or {}).items():
        if isinstance(destinations, list) and len(destinations) > MAX_WEBHOOK_DESTINATIONS:
            yield (
                f"{where}.{event} has {len(destinations)} destinations; "
                f"a maximum of {MAX_WEBHOOK_DESTINATIONS} can be specified."
            )
