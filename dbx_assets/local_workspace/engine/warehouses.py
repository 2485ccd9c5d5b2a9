"""The local SQL warehouse's state: one warehouse that clients find, start and stop as they
would a real one (the SQL Warehouses API, api/warehouses.py, serves it).

The local warehouse runs nothing itself: a dbt task naming it runs dbt's SQL on the task's
cluster through a generated profile (runtime/dbt_task.py). It exists so that what is sent to
a workspace (`dbt_task.warehouse_id`) is the same locally as on Databricks.

State goes STOPPED -> STARTING -> RUNNING after start, RUNNING -> STOPPING -> STOPPED after
stop. A transition is stored as (state, until): reads settle it once `until` has passed, so
no timer threads exist and a restart resumes where the clock says it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .clock import real_now_ms
from .errors import ApiError
from .state import StateStore

LOCAL_WAREHOUSE_ID = "4c0a1d5e7b9f2a63"  # 16 hex characters, like a Databricks warehouse id
LOCAL_WAREHOUSE_NAME = "Local SQL warehouse"
_KEY = "sql_warehouse:"
_SETTLES_TO = {"STARTING": "RUNNING", "STOPPING": "STOPPED"}


class WarehouseNotFound(ApiError):
    def __init__(self, warehouse_id: str):
        # The status and error_code the SDK maps to NotFound; the wording is ours.
        super().__init__(404, "RESOURCE_DOES_NOT_EXIST", f"SQL warehouse {warehouse_id} does not exist.")


class Warehouses:
    def __init__(
        self,
        store: StateStore,
        token: str,
        start_seconds: float = 1.0,
        stop_seconds: float = 0.5,
        host: Callable[[], str] = lambda: "",
    ):
        self.store = store
        self.token = token  # what a dbt task on a warehouse gets as DBT_ACCESS_TOKEN
        self.host = host  # the workspace URL: a generated dbt profile's `host`
        self.start_seconds = start_seconds
        self.stop_seconds = stop_seconds
        self._lock = threading.Lock()

    def ensure_started(self, warehouse_id: str) -> None:
        """What a job does with a dbt task's warehouse (and the API's start): start it unless it
        runs or is starting. Raises WarehouseNotFound for an unknown id."""
        with self._lock:
            state = self._settled(warehouse_id)["state"]
            if state in ("STOPPED", "STOPPING"):
                self._put(warehouse_id, "STARTING", self.start_seconds)

    def stop(self, warehouse_id: str) -> None:
        with self._lock:  # idempotent, as documented: stopping a stopped warehouse is fine
            if self._settled(warehouse_id)["state"] in ("RUNNING", "STARTING"):
                self._put(warehouse_id, "STOPPING", self.stop_seconds)

    def state(self, warehouse_id: str) -> str:
        """The warehouse's state now (STOPPED, STARTING, RUNNING, STOPPING)."""
        with self._lock:
            return self._settled(warehouse_id)["state"]

    def ids(self) -> list[str]:
        return [key[len(_KEY) :] for key in self.store.keys_with_prefix("meta", _KEY)] or [LOCAL_WAREHOUSE_ID]

    def _settled(self, warehouse_id: str) -> dict:
        if warehouse_id != LOCAL_WAREHOUSE_ID:
            raise WarehouseNotFound(warehouse_id)
        doc = self.store.get("meta", _KEY + warehouse_id) or {"state": "STOPPED", "until_ms": 0}
        settled = _SETTLES_TO.get(doc["state"])
        if settled and real_now_ms() >= doc["until_ms"]:
            doc = {"state": settled, "until_ms": 0}
            self.store.put("meta", _KEY + warehouse_id, doc)
        return doc

    def _put(self, warehouse_id: str, state: str, seconds: float) -> None:
        self.store.put("meta", _KEY + warehouse_id, {"state": state, "until_ms": real_now_ms() + int(seconds * 1000)})
