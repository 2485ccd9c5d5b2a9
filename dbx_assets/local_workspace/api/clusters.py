"""Clusters 2.0/2.1 API: create, get, list, start, restart, edit, delete of all-purpose clusters,
plus spark-versions and list-node-types. HTTP over the cluster registry (engine/clusters.py);
job clusters are the scheduler's and cannot be managed here, as on Databricks.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from databricks.sdk.service import compute

from ..engine.clock import Clock
from ..engine.clusters import Clusters, termination_reason, validate_cluster_spec
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
            d.route("GET", base + "/spark-versions", lambda req: spark_versions())
            d.route("GET", base + "/list-node-types", lambda req: node_types())

    def api_create(self, req: Request) -> dict:
        spec = check_body(req.json(), _API.create)
        validate_cluster_spec(spec)
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
