"""Instance Pools 2.0 API: create, get, list, edit, delete. HTTP over the pool registry
(engine/instance_pools.py); a pool's instances are local drivers started ahead."""

from __future__ import annotations

from databricks.sdk.service import compute

from ..engine.errors import require
from ..engine.instance_pools import InstancePools
from ..http.http_types import Request, Router
from ..http.request_shapes import check_body
from .clusters import NODE_TYPE_ID, SPARK_VERSION_KEY

_API = compute.InstancePoolsAPI


class InstancePoolsApi:
    def __init__(self, pools: InstancePools):
        self.pools = pools

    def register(self, d: Router) -> None:
        base = "/api/2.0/instance-pools"
        d.route("POST", base + "/create", self.api_create)
        d.route("GET", base + "/get", self.api_get)
        d.route("GET", base + "/list", self.api_list)
        d.route("POST", base + "/edit", self.api_edit)
        d.route("POST", base + "/delete", self.api_delete)

    def api_create(self, req: Request) -> dict:
        spec = check_body(req.json(), _API.create)
        require(spec, "instance_pool_name")
        require(spec, "node_type_id")
        doc = self.pools.create(spec, NODE_TYPE_ID, (SPARK_VERSION_KEY,))
        return {"instance_pool_id": doc["instance_pool_id"]}

    def api_get(self, req: Request) -> dict:
        return self.pools.public(self.pools.doc(require(req.params(), "instance_pool_id")))

    def api_list(self, req: Request) -> dict:
        pools = [compute.InstancePoolAndStats.from_dict(self.pools.public(d)).as_dict() for d in self.pools.docs()]
        return {"instance_pools": pools} if pools else {}

    def api_edit(self, req: Request) -> dict:
        spec = check_body(req.json(), _API.edit)
        pool_id = require(spec, "instance_pool_id")
        require(spec, "instance_pool_name")
        require(spec, "node_type_id")
        self.pools.edit(pool_id, spec)
        return {}

    def api_delete(self, req: Request) -> dict:
        self.pools.delete(require(check_body(req.json(), _API.delete), "instance_pool_id"))
        return {}
