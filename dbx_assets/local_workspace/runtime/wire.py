"""JSON (de)serialization of the runtime contract types, shared by the server-side
`LocalCluster` and the task process (they live in different processes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .contract import DbtInvocation, TaskInvocation, TaskOutcome


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def invocation_to_dict(inv: TaskInvocation) -> dict:
    return {f.name: _plain(getattr(inv, f.name)) if f.name != "dbt" else None for f in dataclasses.fields(inv)} | {
        "dbt": None
        if inv.dbt is None
        else {f.name: _plain(getattr(inv.dbt, f.name)) for f in dataclasses.fields(inv.dbt)}
    }


def invocation_from_dict(d: dict) -> TaskInvocation:
    dbt = d.get("dbt")
    return TaskInvocation(
        task_run_id=int(d["task_run_id"]),
        kind=d["kind"],
        output_dir=Path(d["output_dir"]),
        notebook_path=d.get("notebook_path"),
        notebook_source=d.get("notebook_source"),
        notebook_language=d.get("notebook_language"),
        widgets=dict(d.get("widgets") or {}),
        python_file=Path(d["python_file"]) if d.get("python_file") else None,
        python_parameters=tuple(d.get("python_parameters") or ()),
        wheel_package=d.get("wheel_package"),
        wheel_entry_point=d.get("wheel_entry_point"),
        dbt=None
        if dbt is None
        else DbtInvocation(
            commands=tuple(dbt["commands"]),
            project_dir=Path(dbt["project_dir"]),
            profiles_dir=Path(dbt["profiles_dir"]) if dbt.get("profiles_dir") else None,
            schema=dbt.get("schema"),
            catalog=dbt.get("catalog"),
            warehouse_id=dbt.get("warehouse_id"),
            workspace_host=dbt.get("workspace_host"),
        ),
        env=dict(d.get("env") or {}),
        pypi_packages=tuple(d.get("pypi_packages") or ()),
        wheel_libraries=dict(d.get("wheel_libraries") or {}),
        timeout_seconds=int(d.get("timeout_seconds") or 0),
        upstream_task_values=dict(d.get("upstream_task_values") or {}),
        source_root=Path(d["source_root"]) if d.get("source_root") else None,
    )


def outcome_to_json(outcome: TaskOutcome) -> str:
    return json.dumps({f.name: _plain(getattr(outcome, f.name)) for f in dataclasses.fields(outcome)})


def outcome_from_json(text: str) -> TaskOutcome:
    d = json.loads(text)
    if d.get("dbt_artifacts_dir"):
        d["dbt_artifacts_dir"] = Path(d["dbt_artifacts_dir"])
    known = {f.name for f in dataclasses.fields(TaskOutcome)}
    return TaskOutcome(**{k: v for k, v in d.items() if k in known})
