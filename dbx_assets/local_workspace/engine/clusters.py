"""Clusters: the registry of every cluster (its stored document) and its lifecycle: start,
restart, edit, terminate, recovery after a restart; job clusters for the scheduler. The Clusters
API (api/clusters.py) is HTTP over this.

A cluster here is a local PySpark driver (runtime.cluster.LocalCluster), started on a
background thread so create/start return at once like on Databricks and the SDK's
waiter polls clusters/get until RUNNING.
"""

from __future__ import annotations

import contextlib
import random
import string
import threading
import time
from collections.abc import Callable
from typing import Protocol

from databricks.sdk.service import compute

from ..runtime.contract import ClusterSpec, ClusterStartError, StoragePaths, TaskInvocation, TaskOutcome
from .clock import real_now_ms
from .cluster_events import record_transition
from .cluster_logs import ClusterLogDelivery, check_log_conf
from .errors import ApiError, invalid
from .instance_pools import Claim, InstancePools, warm_compatible
from .state import StateStore

ACTIVE = ("PENDING", "RUNNING", "RESTARTING", "RESIZING")
LOCAL_USER = "local-user@localhost"
# What clusters/edit changes of a cluster's spec.
EDITABLE_FIELDS = (
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
)


def termination_reason(code: str, kind: str, message: str | None = None, parameters: dict | None = None) -> dict:
    """A cluster termination_reason, checked against the SDK's enums so codes cannot drift."""
    params = dict(parameters or {})
    if message:
        params.setdefault("databricks_error_message", message)
    return compute.TerminationReason(
        code=compute.TerminationReasonCode(code), type=compute.TerminationReasonType(kind), parameters=params or None
    ).as_dict()


def describe_termination(cluster_id: str, reason: dict) -> str:
    """The state_message Databricks shows for a cluster that terminated with `reason`."""
    params = reason.get("parameters") or {}
    detail = params.get("databricks_error_message") or ""
    return f"Cluster {cluster_id} terminated. Reason: {reason['code']} ({reason['type']}). {detail}".strip()


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
    def adopt(self, cluster_id: str, spec: ClusterSpec) -> None:
        """A started pool instance becomes cluster `cluster_id` (its spec: what tasks get)."""


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
    # With a pool the instances' node type is the pool's, as Databricks insists.
    for pool_field, node_field in (
        ("instance_pool_id", "node_type_id"),
        ("driver_instance_pool_id", "driver_node_type_id"),
    ):
        if spec.get(pool_field) and spec.get(node_field):
            raise invalid(f"{prefix}The field '{node_field}' cannot be supplied when an instance pool ID is provided.")
    if spec.get("driver_instance_pool_id") and not spec.get("instance_pool_id"):
        raise invalid(f"{prefix}driver_instance_pool_id needs instance_pool_id (the workers' pool) as well.")


def driver_pool_id(spec: dict) -> str | None:
    """The pool a cluster's driver comes from (a local cluster is its driver)."""
    return spec.get("driver_instance_pool_id") or spec.get("instance_pool_id") or None


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
        self.log_delivery = ClusterLogDelivery(paths)  # clusters with a cluster_log_conf
        self.pools = InstancePools(store, paths, factory)  # drivers started ahead, for clusters naming a pool

    # -- registry -------------------------------------------------------------------------
    def doc(self, cluster_id: str) -> dict:
        doc = self.store.get("cluster", cluster_id)
        if doc is None:
            # Databricks answers 400 INVALID_PARAMETER_VALUE (not 404); for clusters/get the SDK
            # maps exactly this message to ResourceDoesNotExist (databricks/sdk/errors/overrides.py).
            raise invalid(f"Cluster {cluster_id} does not exist")
        return doc

    def docs(self) -> list[dict]:
        """Every stored cluster, the most recently started first (clusters/list's order)."""
        return sorted((d for _, d in self.store.all("cluster")), key=lambda d: -d.get("start_time", 0))

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
        doc.update(state="TERMINATED", state_message=message, terminated_time=real_now_ms(), termination_reason=reason)
        doc.pop("spark_context_id", None)
        self._save(doc)
        self._release_pool_instance(doc)

    def _release_pool_instance(self, doc: dict) -> None:
        pool_id = driver_pool_id(doc)
        if pool_id:
            self.pools.release(pool_id, doc["cluster_id"])

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
            start_time=real_now_ms(),
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
        spec = cluster_spec(doc)
        claim = self._claim_pool_instance(doc, spec)
        if claim is not None and claim.runtime is not None:
            runtime = claim.runtime  # an idle instance: its driver is up already
            runtime.adopt(cluster_id, spec)
        else:
            runtime = self.factory(cluster_id, spec, self.paths)
        with self._lock:
            self._live[cluster_id] = runtime
        try:
            runtime = self.log_delivery.attach(cluster_id, doc.get("cluster_log_conf"), runtime)
            with self._lock:
                self._live[cluster_id] = runtime
            if claim is None or claim.runtime is None:
                runtime.start()
            if claim is not None and claim.runtime is None:
                self.pools.started_cold(claim.pool_id, cluster_id, claim.instance_id)
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
            last_state_loss_time=real_now_ms(),
        )
        if claim is not None:
            doc["driver"] = dict(doc.get("driver") or {}, instance_id=claim.instance_id)
            doc["_driver_source"] = (  # the RUNNING event's driver_state_message
                f"Driver from instance pool {claim.pool_id}: idle instance {claim.instance_id}, started ahead"
                if claim.runtime is not None
                else f"Driver started on instance pool {claim.pool_id}'s capacity: "
                + ("no idle instance" if warm_compatible(spec) else "spark_conf/spark_env_vars fixed at JVM start")
            )
        else:
            doc.pop("_driver_source", None)
        self._save(doc)
        return runtime

    def _claim_pool_instance(self, doc: dict, spec: ClusterSpec) -> Claim | None:
        """An instance from the pool the cluster names (None: it names none); waits at max_capacity."""
        pool_id = driver_pool_id(doc)
        if not pool_id:
            return None
        cluster_id = doc["cluster_id"]

        def waiting(message: str) -> None:
            current = self.doc(cluster_id)
            if current["state"] in ("PENDING", "RESTARTING"):
                current["state_message"] = message
                self._save(current)

        def stopped() -> bool:
            current = self.store.get("cluster", cluster_id)
            return current is None or current["state"] not in ("PENDING", "RESTARTING")

        try:
            claim = self.pools.claim(pool_id, cluster_id, spec, waiting, stopped)
        except ApiError:
            message = f"Instance pool {pool_id} does not exist; create it or name an existing pool."
            self._mark_terminated(
                self.doc(cluster_id), message, termination_reason("INSTANCE_POOL_NOT_FOUND", "CLIENT_ERROR", message)
            )
            raise ClusterStartError(message) from None
        if claim is None:
            raise ClusterStartError(f"Cluster {cluster_id} was terminated while waiting for pool {pool_id}")
        return claim

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
        # The reason shows from TERMINATING on (clusters/get, and the TERMINATING event's details).
        reason = termination_reason(reason["code"], reason["type"], parameters=reason.get("parameters"))
        doc.update(state="TERMINATING", state_message=message, termination_reason=reason)
        self._save(doc)
        if runtime is not None:
            runtime.terminate()
        self._mark_terminated(self._logs_delivered(cluster_id), message, reason)

    def _logs_delivered(self, cluster_id: str) -> dict:
        """Deliver a terminating cluster's remaining logs (if it has a cluster_log_conf); its doc after that."""
        doc = self.doc(cluster_id)
        if doc.get("cluster_log_conf"):
            self.log_delivery.finish(cluster_id)
            doc["cluster_log_status"] = {"last_attempted": real_now_ms()}
        return doc

    # -- all-purpose clusters (the Clusters API) ------------------------------------------------
    def create(self, spec: dict) -> dict:
        """A new all-purpose cluster, starting in the background; its document."""
        doc = self._new_doc(spec, "API")
        self._save(doc)
        self._boot_in_background(doc)
        return doc

    def start(self, doc: dict) -> None:
        """Start a TERMINATED cluster again, in the background."""
        doc.update(state="PENDING", state_message="Starting local Spark driver", start_time=real_now_ms())
        doc.pop("termination_reason", None)
        doc.pop("terminated_time", None)
        self._save(doc)
        self._boot_in_background(doc)

    def restart(self, doc: dict, message: str) -> None:
        """Stop the cluster's driver and start a new one, in the background (state RESTARTING)."""
        with self._lock:
            runtime = self._live.pop(doc["cluster_id"], None)
        doc.update(state="RESTARTING", state_message=message)
        self._save(doc)
        if runtime is not None:
            runtime.terminate()
        self._release_pool_instance(doc)  # a pool's instance is used once: the restart takes another
        self._boot_in_background(doc)

    def edit(self, doc: dict, spec: dict) -> None:
        """Apply an edit; a running cluster restarts to apply it, as on Databricks."""
        for k in EDITABLE_FIELDS:
            if k in spec:
                doc[k] = spec[k]
        self._save(doc)
        if doc["state"] == "RUNNING":
            self.restart(doc, "Applying edit")

    def permanent_delete(self, cluster_id: str) -> None:
        self.terminate(cluster_id, "Permanently deleted", termination_reason("USER_REQUEST", "SUCCESS"))
        self.store.delete("cluster", cluster_id)

    def terminate_all(self) -> None:
        self.pools.shutdown()
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
