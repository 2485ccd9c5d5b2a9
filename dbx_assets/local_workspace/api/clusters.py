"""Clusters 2.0/2.1 API: create, get, list, start, restart, edit, delete of all-purpose clusters,
events of any cluster, plus spark-versions and list-node-types. HTTP over the cluster registry
(engine/clusters.py); job clusters are the scheduler's and cannot be managed here, as on Databricks.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable

from databricks.sdk.service import compute

from ..engine.clock import Clock
from ..engine.clusters import Clusters, driver_pool_id, termination_reason, validate_cluster_spec
from ..engine.errors import invalid, invalid_state, require
from ..http.http_types import Request, Router
from ..http.request_shapes import check_body

_API = compute.ClustersAPI
# The one runtime we serve (a local PySpark); DBR 15.4 LTS ships Apache Spark 3.5.0.
SPARK_VERSION_KEY = "15.4.x-scala2.12"
SPARK_VERSION_NAME = "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"
NODE_TYPE_ID = "local"


def node_types() -> dict:
    """clusters/list-node-types: one node type, this machine (what every local cluster runs on)."""
    cores = float(os.cpu_count() or 1)
    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        memory_mb = 4096
    node = compute.NodeType(
        node_type_id=NODE_TYPE_ID,
        instance_type_id=NODE_TYPE_ID,
        description="This machine (local PySpark driver)",
        category="General Purpose",
        memory_mb=int(memory_mb),
        num_cores=cores,
        num_gpus=0,
        is_deprecated=False,
        is_hidden=False,
        is_io_cache_enabled=False,
        support_cluster_tags=True,
        support_ebs_volumes=False,
        support_port_forwarding=False,
        photon_driver_capable=False,
        photon_worker_capable=False,
        is_graviton=False,
        display_order=0,
        node_instance_type=compute.NodeInstanceType(
            instance_type_id=NODE_TYPE_ID,
            local_disks=1,
            local_disk_size_gb=_local_disk_gb(),
            local_nvme_disks=0,
            local_nvme_disk_size_gb=0,
        ),
    )
    return compute.ListNodeTypesResponse(node_types=[node]).as_dict()


def _local_disk_gb() -> int:
    try:
        st = os.statvfs(os.getcwd())
        return max(1, st.f_blocks * st.f_frsize // 1024**3)
    except OSError:
        return 1


def spark_versions() -> dict:
    return compute.GetSparkVersionsResponse(
        versions=[compute.SparkVersion(key=SPARK_VERSION_KEY, name=SPARK_VERSION_NAME)]
    ).as_dict()


class ClustersApi:
    def __init__(self, clusters: Clusters):
        self.clusters = clusters
        self.clock = Clock()  # the dispatcher's, from register()

    def public(self, doc: dict) -> dict:
        """A stored cluster as clusters/get serves it: through compute.ClusterDetails, workspace clock."""
        return self.clock.shift(compute.ClusterDetails.from_dict(doc).as_dict())

    def register(self, d: Router) -> None:
        self.clock = d.clock
        for version in ("2.0", "2.1"):
            base = f"/api/{version}/clusters"
            d.route("POST", base + "/create", self.api_create)
            d.route("GET", base + "/get", self.api_get)
            d.route("GET", base + "/list", self.api_list)
            d.route("POST", base + "/start", self.api_start)
            d.route("POST", base + "/restart", self.api_restart)
            d.route("POST", base + "/edit", self.api_edit)
            d.route("POST", base + "/delete", self.api_delete)
            d.route("POST", base + "/permanent-delete", self.api_permanent_delete)
            d.route("POST", base + "/events", self.api_events)
            d.route("GET", base + "/spark-versions", lambda req: spark_versions())
            d.route("GET", base + "/list-node-types", lambda req: node_types())

    def api_create(self, req: Request) -> dict:
        spec = check_body(req.json(), _API.create)
        validate_cluster_spec(spec)
        for pool_id in {spec.get("instance_pool_id"), driver_pool_id(spec)} - {None}:
            self.clusters.pools.doc(str(pool_id))  # an unknown pool is refused here, not at start
        return {"cluster_id": self.clusters.create(spec)["cluster_id"]}

    def api_get(self, req: Request) -> dict:
        return self.public(self.clusters.doc(require(req.params(), "cluster_id")))

    def api_list(self, req: Request) -> dict:
        docs = self.clusters.docs()
        return {"clusters": [self.public(d) for d in docs]} if docs else {}

    def _all_purpose(self, req: Request, api_method: Callable) -> dict:
        doc = self.clusters.doc(require(check_body(req.json(), api_method), "cluster_id"))
        if doc.get("cluster_source") == "JOB":
            raise invalid(
                f"Cluster {doc['cluster_id']} is a job cluster; it cannot be managed through the Clusters API."
            )
        return doc

    def api_start(self, req: Request) -> dict:
        doc = self._all_purpose(req, _API.start)
        if doc["state"] != "TERMINATED":
            raise invalid_state(
                f"Cluster {doc['cluster_id']} is in unexpected state {doc['state']}; only a TERMINATED cluster can be started."
            )
        self.clusters.start(doc)
        return {}

    def api_restart(self, req: Request) -> dict:
        doc = self._all_purpose(req, _API.restart)
        if doc["state"] != "RUNNING":
            raise invalid_state(
                f"Cluster {doc['cluster_id']} is in unexpected state {doc['state']}; only a RUNNING cluster can be restarted."
            )
        self.clusters.restart(doc, "Restarting local Spark driver")
        return {}

    def api_edit(self, req: Request) -> dict:
        doc = self._all_purpose(req, _API.edit)
        spec = req.json()
        validate_cluster_spec(spec)
        if doc["state"] not in ("RUNNING", "TERMINATED"):
            raise invalid_state(
                f"Cluster {doc['cluster_id']} is in unexpected state {doc['state']}; edit it when RUNNING or TERMINATED."
            )
        self.clusters.edit(doc, spec)
        return {}

    def api_delete(self, req: Request) -> dict:
        doc = self.clusters.doc(require(check_body(req.json(), _API.delete), "cluster_id"))
        self.clusters.terminate(doc["cluster_id"], "Terminated by user", termination_reason("USER_REQUEST", "SUCCESS"))
        return {}

    def api_permanent_delete(self, req: Request) -> dict:
        doc = self.clusters.doc(require(check_body(req.json(), _API.permanent_delete), "cluster_id"))
        self.clusters.permanent_delete(doc["cluster_id"])
        return {}

    def api_events(self, req: Request) -> dict:
        """clusters/events: the cluster's events, newest first unless `order` is ASC, filtered by
        `start_time`/`end_time` (inclusive, epoch ms) and `event_types`, one page at a time: by
        `offset`/`limit` (default 50, at most 500) answering `next_page` (the next request, its
        window pinned by `end_time`) and `total_count`, or by `page_size`/`page_token` answering
        `next_page_token`/`prev_page_token` ("" when there are none) and `total_count` 0."""
        body = check_body(req.json(), _API.events)
        doc = self.clusters.doc(require(body, "cluster_id"))
        token_mode = "page_token" in body or "page_size" in body
        if body.get("page_token"):
            body = {**_decode_page_token(body["page_token"]), "cluster_id": doc["cluster_id"], **_page_size(body)}
        order = body.get("order") or "DESC"
        offset = int(body.get("offset") or 0)
        if token_mode:
            size = int(body.get("page_size") or 0)
            size = 50 if size <= 0 else min(size, 500)  # "outside the range, the server enforces 0 or 500"
        else:
            size = int(body.get("limit") or 50)
            if not 1 <= size <= 500:
                raise invalid(f"limit must be between 1 and 500, got {size}")
        if offset < 0:
            raise invalid(f"offset must not be negative, got {offset}")
        if offset and order == "DESC" and body.get("end_time") is None and not token_mode:
            raise invalid("end_time is required when an offset is specified and the events are in descending order")
        # The window, in the workspace's clock as the client sees it; pinned for the following pages.
        end = body.get("end_time")
        end = int(end) if end is not None else self.clock.now_ms()
        start = body.get("start_time")
        types = set(body.get("event_types") or [])
        matching = [
            ev
            for ev in self._events(doc)
            if (start is None or ev["timestamp"] >= int(start)) and ev["timestamp"] <= end
            if not types or ev.get("type") in types
        ]
        if order == "DESC":
            matching.reverse()
        page = matching[offset : offset + size]
        query = {
            "cluster_id": doc["cluster_id"],
            "order": order,
            "end_time": end,
            **({"start_time": int(start)} if start is not None else {}),
            **({"event_types": sorted(types)} if types else {}),
        }
        more = offset + size < len(matching)
        out: dict = {"events": page}
        if token_mode:
            out["next_page_token"] = _page_token({**query, "offset": offset + size}) if more else ""
            out["prev_page_token"] = _page_token({**query, "offset": max(0, offset - size)}) if offset else ""
            out["total_count"] = 0  # "Returns 0 when request uses page_token"
        else:
            if more:
                out["next_page"] = {**query, "offset": offset + size, "limit": size}
            out["total_count"] = len(matching)
        return compute.GetEventsResponse.from_dict(out).as_dict()

    def _events(self, doc: dict) -> list[dict]:
        """The cluster's recorded events, oldest first, as ClusterEvent (page notes dropped), workspace clock."""
        events = []
        for ev in doc.get("_events") or []:
            public = compute.ClusterEvent.from_dict(ev).as_dict()
            if "type" not in public:  # a type Databricks does not have (an older state dir's TERMINATED)
                continue
            public["timestamp"] = self.clock.report(public.get("timestamp"))
            events.append(public)
        events.sort(key=lambda ev: ev.get("timestamp") or 0)  # stable: same-ms events keep their order
        return events


def _page_size(body: dict) -> dict:
    return {"page_size": body["page_size"]} if "page_size" in body else {}


def _page_token(query: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(query, separators=(",", ":")).encode()).decode()


def _decode_page_token(token: str) -> dict:
    try:
        query = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(query, dict):
            raise ValueError(token)
    except (ValueError, binascii.Error):
        raise invalid(f"Invalid page_token: {token[:100]!r}") from None
    return {k: query[k] for k in ("order", "end_time", "start_time", "event_types", "offset") if k in query}
