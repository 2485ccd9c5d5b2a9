"""`dbutils.jobs.taskValues`: values a notebook task sets for the tasks after it in the same run.

As Databricks documents it: keys are strings, values anything JSON can express, at most 48 KiB
as JSON. A task's values are written to its output dir as they are set (the task process puts
them in its outcome; the server keeps them with the run and hands the finished tasks' values
to later tasks, for `get` and for `{{tasks.<task>.values.<key>}}` references).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TASK_VALUES_FILE = "task_values.json"
VALUE_LIMIT_BYTES = 48 * 1024


class TaskValues:
    """`dbutils.jobs.taskValues`; `in_job=False` is a notebook run outside a job (debugValue applies)."""

    def __init__(self, upstream: dict[str, dict[str, Any]], store: Path | None, *, in_job: bool = True):
        self._upstream = upstream
        self._store = store
        self._in_job = in_job
        self.values: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"Task value keys must be strings, got {type(key).__name__}")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"The value of task value '{key}' cannot be expressed as JSON: {exc}") from None
        size = len(text.encode("utf-8"))
        if size > VALUE_LIMIT_BYTES:
            raise ValueError(
                f"The value of task value '{key}' is {size} bytes as JSON; "
                f"the size of a task value cannot exceed 48 KiB ({VALUE_LIMIT_BYTES} bytes)."
            )
        self.values[key] = json.loads(text)  # what a reader gets back: the JSON round trip
        self._save()

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:
        if not self._in_job:  # run interactively: Databricks returns debugValue, or raises TypeError
            if debugValue is None:
                raise TypeError(
                    "Must pass debugValue when calling get outside of a job context. debugValue cannot be None."
                )
            return debugValue
        if taskKey not in self._upstream:  # Databricks: a task it cannot find raises, default or not
            raise ValueError(
                f"Could not find task '{taskKey}': no task of this run with that key has finished before this one."
            )
        values = self._upstream[taskKey]
        if key in values:
            return values[key]
        if default is not None:
            return default
        raise ValueError(f"Task '{taskKey}' did not set a task value with key '{key}'.")

    def _save(self) -> None:
        if self._store is None:
            return
        tmp = self._store.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values))
        os.replace(tmp, self._store)


class JobsUtils:
    """`dbutils.jobs`."""

    def __init__(self, task_values: TaskValues):
        self.taskValues = task_values


def read_task_values(output_dir: Path) -> dict[str, Any]:
    """The values a task set (its output dir's record); {} when it set none."""
    try:
        data = json.loads((output_dir / TASK_VALUES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def reference_text(value: Any) -> str:
    """A task value as a `{{tasks.<task>.values.<key>}}` reference puts it into a parameter string."""
    return value if isinstance(value, str) else json.dumps(value)
