"""The local runtime's `dbruntime`: the part of Databricks' Python shell that the databricks-sdk reads.

On a Databricks runtime `from databricks.sdk.runtime import spark, dbutils, display` finds
`dbruntime.UserNamespaceInitializer` and takes `spark`, `dbutils`, `display`, `displayHTML`,
`getArgument`, `sc`, `sql`, `table`, `udf` and `sqlContext` from
`UserNamespaceInitializer.getOrCreate().get_namespace_globals()`: the objects of the notebook's
user namespace. `WorkspaceClient().dbutils` hands out that `dbutils` too when `dbruntime` imports.

A local task process sets the namespace (task_process.py) before any of the task's code runs:
a notebook's own globals, or for a Python file or a wheel's entry point the same objects a
notebook gets. It imports this package as the top-level `dbruntime`, from the folder Databricks'
runtime would have on sys.path, so the SDK's module sees exactly what it sees on Databricks.
"""

from __future__ import annotations

from typing import Any


class UserNamespaceInitializer:
    """One per process: the user namespace the task's code runs with."""

    _instance: UserNamespaceInitializer | None = None

    def __init__(self) -> None:
        self._namespace: dict[str, Any] = {}

    @classmethod
    def getOrCreate(cls) -> UserNamespaceInitializer:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def get_namespace_globals(self) -> dict[str, Any]:
        return self._namespace

    def set_namespace_globals(self, namespace: dict[str, Any]) -> None:
        """The local runtime's own call: the namespace every later get_namespace_globals() returns."""
        self._namespace = namespace
