"""Clusters: the Clusters 2.0/2.1 API plus the registry the scheduler uses for job clusters.

A cluster here is a local PySpark driver (runtime.cluster.LocalCluster), started on a
background thread so create/start return at once like on Databricks and the SDK's
waiter polls clusters/get until RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import random
import string
import threading
import time
from collections.abc import Callable
from typing import Protocol

from databricks.sdk.service import compute

from ..http.faults import describe_termination
from ..http.http_types import Request, Router
from ..http.request_shapes import check_body
from ..runtime.contract import ClusterSpec, ClusterStartError, StoragePaths, TaskInvocation, TaskOutcome
from .clock import Clock
from .cluster_events import record_transition
from .cluster_logs import ClusterLogDelivery, check_log_conf
from .errors import invalid, invalid_state, require
from .state import StateStore

ACTIVE = ("PENDING", "RUNNING", "RESTARTING", "RESIZING")
_API = compute.ClustersAPI
# The one runtime we serve (a local PySpark); DBR 15.4 LTS ships Apache Spark 3.5.0.
SPARK_VERSION_KEY = "15.4.x-scala2.12"
SPARK_VERSION_NAME = "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"
NODE_TYPE_ID = "local"


def termination_reason(code: str, kind: str, message: str | None = None, parameters: dict | None = None) -> dict:
    """A cluster termination_reason, checked against the SDK's enums so codes cannot drift."""
    params = dict(parameters or {})
    if message:
        params.setdefault("databricks_error_message", message)
    return compute.TerminationReason(
        code=compute.TerminationReasonCode(code), type=compute.TerminationReasonType(kind), parameters=params or None
    ).as_dict()


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


class TaskHandle(Protocol):
    """One task running on a cluster."""

    def wait(self, timeout: float | None = None) -> TaskOutcome | None: ...
    def cancel(self) -> None: ...


class ClusterRuntime(Protocol):
    def start(self, timeout: float = 300) -> None: ...
    @property
    def alive(self) -> bool: ...
    def run_task(self, invocation: TaskInvocation) -> TaskHandle: ...
    def terminate(self) -> None: ...


ClusterFactory = Callable[[str, ClusterSpec, StoragePaths], ClusterRuntime]


def default_cluster_factory(cluster_id: str, spec: ClusterSpec, paths: StoragePaths) -> ClusterRuntime:
    # Imported lazily: the server must start fast and never import Spark itself.
    from ..runtime.cluster import LocalCluster

    return LocalCluster(cluster_id, spec, paths)


def new_cluster_id() -> str:
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    return time.strftime("%m%d-%H%M%S-", time.gmtime()) + suffix


def validate_cluster_spec(spec: dict, where: str = "") -> None:
    prefix = f"{where}: " if where else ""
    if not spec.get("spark_version"):
        raise invalid(f"{prefix}Missing required field: spark_version")
    if spec.get("num_workers") is None and not spec.get("autoscale"):
        raise invalid(f"{prefix}Missing required field: num_workers (or autoscale)")
    check_log_conf(spec.get("cluster_log_conf"), where)


def cluster_spec(spec: dict, pypi_packages: tuple[str, ...] = ()) -> ClusterSpec:
    workers = spec.get("num_workers")
    if workers is None:
        workers = (spec.get("autoscale") or {}).get("max_workers", 0)
    return ClusterSpec(
        spark_conf={str(k): str(v) for k, v in (spec.get("spark_conf") or {}).items()},
        spark_env_vars={str(k): str(v) for k, v in (spec.get("spark_env_vars") or {}).items()},
        pypi_packages=pypi_packages,
        num_workers=int(workers or 0),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


class Clusters:
    def __init__(self, store: StateStore, paths: StoragePaths, factory: ClusterFactory):
        self.store = store
        self.paths = paths
        self.factory = factory
        self._live: dict[str, ClusterRuntime] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # Fault injection: returns a termination_reason to fail a start with, or None.
        self.start_failure: Callable[[str], dict | None] = lambda cluster_id: None
        self.clock = Clock()  # the dispatcher's, from register()
        self.log_delivery = ClusterLogDelivery(paths)  # clusters with a cluster_log_conf

    # -- registry -------------------------------------------------------------------------
    def doc(self, cluster_id: str) -> dict:
        doc = self.store.get("cluster", cluster_id)
        if doc is None:
            # Databricks answers 400 INVALID_PARAMETER_VALUE (not 404); for clusters/get the SDK
            # maps exactly this message to ResourceDoesNotExist (databricks/sdk/errors/overrides.py).
            raise invalid(f"Cluster {cluster_id} does not exist")
        return doc

    def public(self, doc: dict) -> dict:
        """A stored cluster as clusters/get serves it: through compute.ClusterDetails, workspace clock."""
        return self.clock.shift(compute.ClusterDetails.from_dict(doc).as_dict())

    def _save(self, doc: dict) -> None:
        with self._changed:
            record_transition(doc, self.store.get("cluster", doc["cluster_id"]))  # the cluster page's event history
            self.store.put("cluster", doc["cluster_id"], doc)
            self._changed.notify_all()

    def recover_after_restart(self) -> None:
        """Drivers died with the previous server process: mark their clusters TERMINATED."""
        for _, doc in self.store.all("cluster"):
            if doc.get("state") in ACTIVE or doc.get("state") == "TERMINATING":
                self._mark_terminated(
                    doc,
                    "The local workspace restarted; the cluster's driver is gone.",
                    termination_reason("DRIVER_UNREACHABLE", "CLOUD_FAILURE"),
                )

    def _mark_terminated(self, doc: dict, message: str, reason: dict) -> None:
        reason = termination_reason(reason["code"], reason["type"], parameters=reason.get("parameters"))
        doc.update(state="TERMINATED", state_message=message, terminated_time=now_ms(), termination_reason=reason)
        doc.pop("spark_context_id", None)
        self._save(doc)

    def _new_doc(self, spec: dict, source: str) -> dict:
        cluster_id = new_cluster_id()
        doc = {k: v for k, v in spec.items() if k not in ("cluster_id", "state", "state_message", "termination_reason")}
        doc.update(
            cluster_id=cluster_id,
            cluster_name=spec.get("cluster_name") or (f"job-cluster-{cluster_id}" if source == "JOB" else cluster_id),
            cluster_source=source,
            creator_user_name=LOCAL_USER,
            state="PENDING",
            state_message="Starting local Spark driver",
            start_time=now_ms(),
            autotermination_minutes=spec.get("autotermination_minutes", 0 if source == "JOB" else 120),
            driver={"host_private_ip": "127.0.0.1", "node_id": cluster_id},
            default_tags={"Vendor": "Databricks", "Creator": LOCAL_USER, "ClusterId": cluster_id},
        )
        return doc

    def _boot(self, doc: dict) -> ClusterRuntime:
        """Start the driver (blocking). On failure the cluster ends TERMINATED and ClusterStartError propagates."""
        cluster_id = doc["cluster_id"]
        injected = self.start_failure(cluster_id)
        if injected is not None:  # fail before any driver starts, as a cloud launch failure would
            message = describe_termination(cluster_id, injected)
            self._mark_terminated(self.doc(cluster_id), message, injected)
            raise ClusterStartError(message)
        runtime = self.factory(cluster_id, cluster_spec(doc), self.paths)
        with self._lock:
            self._live[cluster_id] = runtime
        try:
            runtime = self.log_delivery.attach(cluster_id, doc.get("cluster_log_conf"), runtime)
            with self._lock:
                self._live[cluster_id] = runtime
            runtime.start()
        except Exception as e:
            with self._lock:
                self._live.pop(cluster_id, None)
            self.log_delivery.finish(cluster_id)  # what the driver said before it failed
            message = str(e) or type(e).__name__
            self._mark_terminated(
                self.doc(cluster_id),
                message,
                termination_reason("SPARK_STARTUP_FAILURE", "CLIENT_ERROR", message),
            )
            raise ClusterStartError(message) from e
        doc = self.doc(cluster_id)
        if doc["state"] != "PENDING" and doc["state"] != "RESTARTING":  # deleted while starting
            runtime.terminate()
            raise ClusterStartError(f"Cluster {cluster_id} was terminated while starting")
        doc.update(
            state="RUNNING",
            state_message="",
            spark_context_id=random.randint(10**17, 10**18),
            last_state_loss_time=now_ms(),
        )
        self._save(doc)
        return runtime

    def _boot_in_background(self, doc: dict) -> None:
        def run():
            with contextlib.suppress(ClusterStartError):  # recorded on the cluster doc
                self._boot(doc)

        threading.Thread(target=run, name=f"cluster-start-{doc['cluster_id']}", daemon=True).start()

    def terminate(self, cluster_id: str, message: str, reason: dict) -> None:
        with self._lock:
            runtime = self._live.pop(cluster_id, None)
        doc = self.doc(cluster_id)
        if doc["state"] == "TERMINATED":
            return
        doc.update(state="TERMINATING", state_message=message)
        self._save(doc)
        if runtime is not None:
            runtime.terminate()
        self._mark_terminated(self._logs_delivered(cluster_id), message, reason)

    def _logs_delivered(self, cluster_id: str) -> dict:
        """Deliver a terminating cluster's remaining logs (if it has a cluster_log_conf); its doc after that."""
        doc = self.doc(cluster_id)
        if doc.get("cluster_log_conf"):
            self.log_delivery.finish(cluster_id)
            doc["cluster_log_status"] = {"last_attempted": now_ms()}
        return doc

    def terminate_all(self) -> None:
        with self._lock:
            ids = list(self._live)
        for cid in ids:
            with contextlib.suppress(Exception):
                self.terminate(cid, "The local workspace shut down", termination_reason("USER_REQUEST", "SUCCESS"))

    # -- used by the scheduler ------------------------------------------------------------------
    def start_job_cluster(self, spec: dict, run_id: int, name: str) -> tuple[str, ClusterRuntime]:
        doc = self._new_doc(dict(spec, cluster_name=name), "JOB")
        doc["custom_tags"] = dict(spec.get("custom_tags") or {}, RunName=name, JobRunId=str(run_id))
        self._save(doc)
        return doc["cluster_id"], self._boot(doc)

    def end_job_cluster(self, cluster_id: str) -> None:
        self.terminate(cluster_id, "Job run finished", termination_reason("JOB_FINISHED", "SUCCESS"))

    def running(self, cluster_id: str, should_stop: Callable[[], bool]) -> ClusterRuntime:
        """The runtime of an all-purpose cluster, waiting while it starts; raises ValueError if unusable."""
        with self._changed:
            while True:
                doc = self.store.get("cluster", cluster_id)
                if doc is None:
                    raise ValueError(f"Cluster {cluster_id} does not exist; create it or use a job cluster.")
                if doc["state"] == "RUNNING" and cluster_id in self._live:
                    return self._live[cluster_id]
                if doc["state"] not in ("PENDING", "RESTARTING"):
                    raise ValueError(
                        f"Cluster {cluster_id} is {doc['state']}, not RUNNING; start it with clusters/start first."
                    )
                if should_stop():
                    raise ValueError(f"Stopped while waiting for cluster {cluster_id} to start")
                self._changed.wait(0.5)

    # -- HTTP -------------------------------------------------------------------------------------
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
        doc = self._new_doc(spec, "API")
        self._save(doc)
        self._boot_in_background(doc)
        return {"cluster_id": doc["cluster_id"]}

    def api_get(self, req: Request) -> dict:
        return self.public(self.doc(require(req.params(), "cluster_id")))

    def api_list(self, req: Request) -> dict:
        docs = sorted((d for _, d in self.store.all("cluster")), key=lambda d: -d.get("start_time", 0))
        return {"clusters": [self.public(d) for d in docs]} if docs else {}

    def _all_purpose(self, req: Request, api_method: Callable) -> dict:
        doc = self.doc(require(check_body(req.json(), api_method), "cluster_id"))
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
        doc.update(state="PENDING", state_message="Starting local Spark driver", start_time=now_ms())
        doc.pop("termination_reason", None)
        doc.pop("terminated_time", None)
        self._save(doc)
        self._boot_in_background(doc)
        return {}

    def api_restart(self, req: Request) -> dict:
        doc = self._all_purpose(req, _API.restart)
        if doc["state"] != "RUNNING":
            raise invalid_state(
                f"Cluster {doc['cluster_id']} is in unexpected state {doc['state']}; only a RUNNING cluster can be restarted."
            )
        with self._lock:
            runtime = self._live.pop(doc["cluster_id"], None)
        doc.update(state="RESTARTING", state_message="Restarting local Spark driver")
        self._save(doc)
        if runtime is not None:
            runtime.terminate()
        self._boot_in_background(doc)
        return {}

    def api_edit(self, req: Request) -> dict:
        doc = self._all_purpose(req, _API.edit)
        spec = req.json()
        validate_cluster_spec(spec)
        if doc["state"] not in ("RUNNING", "TERMINATED"):
            raise invalid_state(
                f"Cluster {doc['cluster_id']} is in unexpected state {doc['state']}; edit it when RUNNING or TERMINATED."
            )
        for k in (
            "spark_version",
            "num_workers",
            "autoscale",
            "spark_conf",
            "spark_env_vars",
            "cluster_name",
            "node_type_id",
            "custom_tags",
            "autotermination_minutes",
            "cluster_log_conf",
        ):
            if k in spec:
                doc[k] = spec[k]
        self._save(doc)
        if doc["state"] == "RUNNING":  # Databricks restarts a running cluster to apply an edit
            with self._lock:
                runtime = self._live.pop(doc["cluster_id"], None)
            doc.update(state="RESTARTING", state_message="Applying edit")
            self._save(doc)
            if runtime is not None:
                runtime.terminate()
            self._boot_in_background(doc)
        return {}

    def api_delete(self, req: Request) -> dict:
        doc = self.doc(require(check_body(req.json(), _API.delete), "cluster_id"))
        self.terminate(doc["cluster_id"], "Terminated by user", termination_reason("USER_REQUEST", "SUCCESS"))
        return {}

    def api_permanent_delete(self, req: Request) -> dict:
        doc = self.doc(require(check_body(req.json(), _API.permanent_delete), "cluster_id"))
        self.terminate(doc["cluster_id"], "Permanently deleted", termination_reason("USER_REQUEST", "SUCCESS"))
        self.store.delete("cluster", doc["cluster_id"])
        return {}


LOCAL_USER = "local-user@localhost"
