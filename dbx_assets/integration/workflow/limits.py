"""Databricks' documented Jobs API limits, checked at definitions load.

A workflow that Databricks would refuse (too many tasks, a request too large, a malformed key)
fails when the code location loads, naming the workflow, the limit, the count and the fix,
instead of failing at the first materialization with the workspace's error.

Workflows are not split into several jobs automatically: a selection is one Databricks run on
one shared job cluster, and `only`, repair and reattach all work within one job. The honest fix
is to declare several Workflows, which makes the boundary (and the extra run) visible.

Sources of the numbers (Jobs API 2.2 reference, as in databricks-sdk's docstrings, and the
Databricks docs):
- tasks: "up to 1000 elements in write endpoints" (jobs/create, reset, submit); "Jobs with a
  large number of tasks" (docs, jobs/large-jobs)
- request size: "The maximum allowed size of a request to the Jobs API is 10 MB" (Jobs API docs)
- name: "maximum length is 4096 bytes in UTF-8 encoding"
- tags: "A maximum of 25 tags can be added to the job"
- max_concurrent_runs: "This value cannot exceed 1000"
- task_key, job_cluster_key: 1..100 characters matching ^[\\w\\-\\_]+$
- notebook_task.base_parameters: "The JSON representation of this field cannot exceed 1MB"
- dbt_task.commands (and run-now's dbt_commands, the same list): "A maximum of up to 10 commands"
- job parameter names: "May only contain alphanumeric characters, _, -, and ."
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.base import DeployTarget, Selection, TaskSource

MAX_TASKS_PER_JOB = 1000
MAX_REQUEST_BYTES = 10 * 1000 * 1000  # "10 MB"; decimal, the stricter reading
MAX_JOB_NAME_BYTES = 4096
MAX_JOB_TAGS = 25
MAX_CONCURRENT_RUNS = 1000
MAX_KEY_CHARS = 100
MAX_BASE_PARAMETERS_BYTES = 1000 * 1000  # "1MB"
MAX_DBT_COMMANDS = 10

_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SPLIT = "Split it into several Workflows (each deploys its own job)"


def check_workflow_limits(
    name: str, job_settings: Mapping[str, Any], sources: Sequence[TaskSource], target: DeployTarget
) -> None:
    """Raise WorkflowDefinitionError listing every documented limit the job would exceed.

    `job_settings` is what jobs/create|reset sends; the largest run-now request is the one
    selecting every asset and check (all task keys in `only`, each source's run overrides).
    """
    problems = list(job_problems(job_settings))
    problems += run_now_problems(largest_run_now(job_settings, sources, target))
    if problems:
        listed = "".join(f"\n  - {p}" for p in problems)
        raise WorkflowDefinitionError(f"Workflow '{name}' exceeds Databricks' Jobs API limits:{listed}")


def job_problems(settings: Mapping[str, Any]) -> Iterator[str]:
    """What jobs/create or jobs/reset would reject in these job settings."""
    tasks: list[Mapping[str, Any]] = list(settings.get("tasks") or [])
    if len(tasks) > MAX_TASKS_PER_JOB:
        yield (
            f"{len(tasks):,} tasks; a Databricks job holds at most {MAX_TASKS_PER_JOB:,}. {_SPLIT}, e.g. one per "
            "group of notebooks, each under the cap (a dbt project is one task whatever its number of models)."
        )
    yield from _size_problem("the job settings (jobs/create, jobs/reset)", settings)
    name_bytes = len(str(settings.get("name", "")).encode())
    if name_bytes > MAX_JOB_NAME_BYTES:
        yield f"the job name is {name_bytes:,} bytes; Databricks allows {MAX_JOB_NAME_BYTES:,}. Use a shorter name."
    tags = settings.get("tags") or {}
    if len(tags) > MAX_JOB_TAGS:
        yield f"{len(tags)} job tags; Databricks allows {MAX_JOB_TAGS}. Drop some tags."
    concurrent = settings.get("max_concurrent_runs")
    if concurrent is not None and not 0 <= concurrent <= MAX_CONCURRENT_RUNS:
        yield f"max_concurrent_runs is {concurrent}; Databricks allows 0 to {MAX_CONCURRENT_RUNS}."
    for cluster in settings.get("job_clusters") or []:
        yield from _key_problem("job cluster key", cluster.get("job_cluster_key"))
    for parameter in settings.get("parameters") or []:
        if not _PARAMETER_NAME.fullmatch(str(parameter.get("name", ""))):
            yield (
                f"job parameter name {parameter.get('name')!r} has characters Databricks rejects; use letters, "
                "digits, '_', '-' and '.'."
            )
    for task in tasks:
        yield from _task_problems(task)


def _task_problems(task: Mapping[str, Any]) -> Iterator[str]:
    key = task.get("task_key")
    yield from _key_problem("task key", key)
    base_parameters = (task.get("notebook_task") or {}).get("base_parameters")
    if base_parameters:
        size = _json_bytes(base_parameters)
        if size > MAX_BASE_PARAMETERS_BYTES:
            yield (
                f"the parameters of task '{key}' are {size:,} bytes as JSON; Databricks allows "
                f"{MAX_BASE_PARAMETERS_BYTES:,}. Pass large values through a file or a table instead."
            )
    commands = (task.get("dbt_task") or {}).get("commands") or []
    if len(commands) > MAX_DBT_COMMANDS:
        yield (
            f"dbt task '{key}' has {len(commands)} commands; Databricks allows {MAX_DBT_COMMANDS}. Combine them "
            "(one `dbt build` runs models, tests, seeds and snapshots)."
        )


def largest_run_now(
    job_settings: Mapping[str, Any], sources: Sequence[TaskSource], target: DeployTarget
) -> dict[str, Any]:
    """The run-now request of a selection of everything: the biggest `only` and overrides."""
    everything = Selection(
        assets=frozenset(spec.key for source in sources for spec in source.asset_specs()),
        checks=frozenset(spec.key for source in sources for spec in source.check_specs()),
    )
    request: dict[str, Any] = {
        "job_id": 0,
        "only": [task["task_key"] for task in job_settings.get("tasks") or []],
        "job_parameters": {p["name"]: p.get("default", "") for p in job_settings.get("parameters") or []},
    }
    for source in sources:
        request.update(source.run_overrides(everything, target))
    return request


def run_now_problems(request: Mapping[str, Any]) -> Iterator[str]:
    """What run-now (or a repair with the same overrides) would reject."""
    yield from _size_problem("the run-now request selecting every asset", request)
    commands = request.get("dbt_commands") or []
    if len(commands) > MAX_DBT_COMMANDS:
        yield (
            f"a run sends {len(commands)} dbt commands; Databricks allows {MAX_DBT_COMMANDS}. Split the dbt "
            "project into several sources with fewer commands each."
        )


def _key_problem(what: str, key: Any) -> Iterator[str]:
    text = str(key or "")
    if len(text) > MAX_KEY_CHARS:
        yield f"{what} '{text[:40]}...' is {len(text)} characters; Databricks allows {MAX_KEY_CHARS}. Shorten it."
    elif not _KEY.fullmatch(text):
        yield f"{what} {text!r} must be letters, digits, '_' and '-' only (Databricks' pattern ^[\\w\\-\\_]+$)."


def _size_problem(what: str, body: Mapping[str, Any]) -> Iterator[str]:
    size = _json_bytes(body)
    if size > MAX_REQUEST_BYTES:
        yield (
            f"{what} is {size:,} bytes as JSON; the Jobs API accepts requests up to {MAX_REQUEST_BYTES:,}. "
            f"{_SPLIT}, or move large parameters into files."
        )


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())
