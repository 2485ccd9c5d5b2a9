"""SQL Warehouses API subset: list, get, start, stop of the one local warehouse (its state is
engine/warehouses.py). Responses are built from the SDK's dataclasses so their shape is the SDK's.
"""

from __future__ import annotations

from collections.abc import Callable

from databricks.sdk.service import sql

from ..engine.clusters import LOCAL_USER
from ..engine.warehouses import LOCAL_WAREHOUSE_NAME, Warehouses
from ..http.server import Dispatcher, Request


class WarehousesApi:
    def __init__(self, warehouses: Warehouses, host: Callable[[], str]):
        self.warehouses = warehouses
        self.host = host

    def register(self, d: Dispatcher) -> None:
        base = "/api/2.0/sql/warehouses"
        d.route("GET", base, self._list)
        d.route("GET", base + r"/(?P<id>[^/]+)", lambda req: self.get(req.path_params["id"]).as_dict())
        d.route("POST", base + r"/(?P<id>[^/]+)/start", lambda req: self._start(req.path_params["id"]))
        d.route("POST", base + r"/(?P<id>[^/]+)/stop", lambda req: self._stop(req.path_params["id"]))

    def get(self, warehouse_id: str) -> sql.GetWarehouseResponse:
        return self._response(warehouse_id, sql.State(self.warehouses.state(warehouse_id)))

    def _list(self, req: Request) -> dict:
        infos = [sql.EndpointInfo.from_dict(self.get(i).as_dict()) for i in sorted(self.warehouses.ids())]
        return sql.ListWarehousesResponse(warehouses=infos).as_dict()

    def _start(self, warehouse_id: str) -> dict:
        self.warehouses.ensure_started(warehouse_id)
        return {}

    def _stop(self, warehouse_id: str) -> dict:
        self.warehouses.stop(warehouse_id)
        return {}

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
