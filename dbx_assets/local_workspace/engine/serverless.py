"""Serverless jobs compute, as Databricks defines it: a task with no cluster runs serverless; the
job declares `environments` (an environment version plus pip dependencies) and a task picks one
with `environment_key`. Serverless tasks take no `libraries` (their environment installs them), and
Python script, wheel and dbt tasks must name an environment (a notebook without one uses its own).

Locally one serverless runtime is started per environment per run (see scheduler.py) and installs
that environment's dependencies like a cluster installs task libraries.
"""

from __future__ import annotations

from typing import Any

from .errors import invalid

CLUSTER_FIELDS = ("job_cluster_key", "new_cluster", "existing_cluster_id")
# Task types whose serverless environment must be named (the SDK's Task.environment_key contract).
NEEDS_ENVIRONMENT = ("spark_python_task", "python_wheel_task", "dbt_task")
# The job-cluster key a run's serverless runtime for an environment is kept under.
SERVERLESS_RUNTIME_PREFIX = "__serverless__"


def is_serverless(task: dict[str, Any]) -> bool:
    return not any(task.get(f) for f in CLUSTER_FIELDS)


def runtime_key(task: dict[str, Any]) -> str:
    """One serverless runtime per environment per run; notebooks without an environment share one."""
    return f"{SERVERLESS_RUNTIME_PREFIX}{task.get('environment_key') or ''}"


def environment_spec(environments: list[dict[str, Any]], task: dict[str, Any]) -> dict[str, Any]:
    key = task.get("environment_key")
    return next((dict(e.get("spec") or {}) for e in environments if e.get("environment_key") == key), {})


def validate(settings: dict[str, Any]) -> None:
    """Reject the serverless settings Databricks rejects, with INVALID_PARAMETER_VALUE."""
    environments = settings.get("environments") or []
    keys: list[str] = []
    for i, env in enumerate(environments):
        key = env.get("environment_key")
        if not key:
            raise invalid(f"environments[{i}].environment_key is required.")
        if key in keys:
            raise invalid(f"Environment key '{key}' is defined more than once in environments.")
        keys.append(key)
        spec = env.get("spec") or {}
        if not (spec.get("environment_version") or spec.get("client") or spec.get("base_environment")):
            raise invalid(f"Environment '{key}': either environment_version or base_environment needs to be provided.")
    for task in settings.get("tasks") or []:
        _validate_task(task, keys)


def _validate_task(task: dict[str, Any], environment_keys: list[str]) -> None:
    name = task.get("task_key")
    env_key = task.get("environment_key")
    if env_key:
        clusters = [f for f in CLUSTER_FIELDS if task.get(f)]
        if clusters:
            raise invalid(
                f"Task {name} sets both environment_key and {clusters[0]}. A task with an environment runs on "
                f"serverless compute; remove {clusters[0]} or environment_key."
            )
        if env_key not in environment_keys:
            raise invalid(
                f"Task {name} references environment_key '{env_key}', which is not defined in the job's environments"
                f" (defined: {', '.join(environment_keys) or 'none'})."
            )
    if not is_serverless(task):
        return
    if task.get("libraries"):
        raise invalid("Libraries field is not supported for serverless task, please specify libraries in environment.")
    kind = next((k for k in NEEDS_ENVIRONMENT if task.get(k)), None)
    if kind and not env_key:
        raise invalid(
            f"Task {name} is a {kind} on serverless compute without an environment_key: set environment_key to one "
            "of the job's environments, or give the task a cluster (job_cluster_key, new_cluster or "
            "existing_cluster_id)."
        )
