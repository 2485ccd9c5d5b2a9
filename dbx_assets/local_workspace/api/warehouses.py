"""SQL Warehouses API subset: list, get, start, stop of one local warehouse.

The local warehouse runs nothing itself: a dbt task naming it runs dbt's SQL on the task's
cluster through a generated profile (runtime/dbt_task.py). It exists so that what is sent to
a workspace (`dbt_task.warehouse_id`) is the same locally as on Databricks, and so clients can
find, start and stop it as they would a real one.

State goes STOPPED -> STARTING -> RUNNING after start, RUNNING -> STOPPING -> STOPPED after
stop. A transition is stored as (state, until): reads settle it once `until` has passed, so
no timer threads exist and a restart resumes where the clock says it is. Responses are built
from the SDK's dataclasses so their shape is the SDK's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from databricks.sdk.service import sql

from ..engine.clusters import LOCAL_USER
from ..engine.errors import ApiError
from ..engine.state import StateStore
from ..http.server import Dispatcher, Request

LOCAL_WAREHOUSE_ID = "4c0a1d5e7b9f2a63"  # 16 hex characters, like a Databricks warehouse id
LOCAL_WAREHOUSE_NAME = "Local SQL warehouse"
_KEY = "sql_warehouse:"
_SETTLES_TO = {"STARTING": "RUNNING", "STOPPING": "STOPPED"}


class WarehouseNotFound(ApiError):
    def __init__(self, warehouse_id: str):
        # The status and error_code the SDK maps to NotFound; the wording is ours.
        super().__init__(404, "RESOURCE_DOES_NOT_EXIST", f"SQL warehouse {warehouse_id} does not exist.")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Warehouses:
    def __init__(
        self,
        store: StateStore,
        host: Callable[[], str],
        token: str,
        start_seconds: float = 1.0,
        stop_seconds: float = 0.5,
    ):
        self.store = store
        self.host = host
        self.token = token
        self.start_seconds = start_seconds
        self.stop_seconds = stop_seconds
        self._lock = threading.Lock()

    def register(self, d: Dispatcher) -> None:
        base = "/api/2.0/sql/warehouses"
        d.route("GET", base, self._list)
        d.route("GET", base + r"/(?P<id>[^/]+)", lambda req: self.get(req.path_params["id"]).as_dict())
        d.route("POST", base + r"/(?P<id>[^/]+)/start", lambda req: self._start(req.path_params["id"]))
        d.route("POST", base + r"/(?P<id>[^/]+)/stop", lambda req: self._stop(req.path_params["id"]))

    # -- used by the scheduler -------------------------------------------------------------------
    def ensure_started(self, warehouse_id: str) -> sql.GetWarehouseResponse:
        """What a job does with a dbt task's warehouse: start it unless it runs or is starting.
        Raises WarehouseNotFound for an unknown id."""
        with self._lock:
            state = self._settled(warehouse_id)["state"]
            if state in ("STOPPED", "STOPPING"):
                self._put(warehouse_id, "STARTING", self.start_seconds)
        return self.get(warehouse_id)

    # -- API -------------------------------------------------------------------------------------
    def get(self, warehouse_id: str) -> sql.GetWarehouseResponse:
        with self._lock:
            doc = self._settled(warehouse_id)
        return self._response(warehouse_id, sql.State(doc["state"]))

    def _list(self, req: Request) -> dict:
        ids = [key[len(_KEY) :] for key in self.store.keys_with_prefix("meta", _KEY)] or [LOCAL_WAREHOUSE_ID]
        infos = [sql.EndpointInfo.from_dict(self.get(i).as_dict()) for i in sorted(ids)]
        return sql.ListWarehousesResponse(warehouses=infos).as_dict()

    def _start(self, warehouse_id: str) -> dict:
        self.ensure_started(warehouse_id)
        return {}

    def _stop(self, warehouse_id: str) -> dict:
        with self._lock:  # idempotent, as documented: stopping a stopped warehouse is fine
            if self._settled(warehouse_id)["state"] in ("RUNNING", "STARTING"):
                self._put(warehouse_id, "STOPPING", self.stop_seconds)
        return {}

    # -- state -----------------------------------------------------------------------------------
    def _settled(self, warehouse_id: str) -> dict:
        if warehouse_id != LOCAL_WAREHOUSE_ID:
            raise WarehouseNotFound(warehouse_id)
        doc = self.store.get("meta", _KEY + warehouse_id) or {"state": "STOPPED", "until_ms": 0}
        settled = _SETTLES_TO.get(doc["state"])
        if settled and _now_ms() >= doc["until_ms"]:
            doc = {"state": settled, "until_ms": 0}
            self.store.put("meta", _KEY + warehouse_id, doc)
        return doc

    def _put(self, warehouse_id: str, state: str, seconds: float) -> None:
        self.store.put("meta", _KEY + warehouse_id, {"state": state, "until_ms": _now_ms() + int(seconds * 1000)})

    def _response(self, warehouse_id: str, state: sql.State) -> sql.GetWarehouseResponse:
        host = self.host()
        scheme, _, hostport = host.partition("://")
        hostname, _, port = hostport.partition(":")
        path = f"/sql/1.0/warehouses/{warehouse_id}"
        up = state in (sql.State.RUNNING, sql.State.STARTING)
        return sql.GetWarehouseResponse(
            id=warehouse_id,
            name=LOCAL_WAREHOUSE_NAME,
            state=state,
            cluster_size="2X-Small",
            min_num_clusters=1,
            max_num_clusters=1,
            num_clusters=1 if state == sql.State.RUNNING else 0,
            num_active_sessions=0,
            auto_stop_mins=0,  # never stops by itself locally
            creator_name=LOCAL_USER,
            enable_photon=False,
            enable_serverless_compute=False,
            warehouse_type=sql.GetWarehouseResponseWarehouseType.PRO,
            spot_instance_policy=sql.SpotInstancePolicy.COST_OPTIMIZED,
            channel=sql.Channel(name=sql.ChannelName.CHANNEL_NAME_CURRENT),
            tags=sql.EndpointTags(custom_tags=[]),
            health=sql.EndpointHealth(status=sql.Status.HEALTHY) if up else None,
            odbc_params=sql.OdbcParams(hostname=hostname, path=path, port=int(port or 443), protocol=scheme),
            jdbc_url=f"jdbc:spark://{hostname}:{port or 443}/default;transportMode=http;ssl={int(scheme == 'https')};"
            f"AuthMech=3;httpPath={path};",
        )
