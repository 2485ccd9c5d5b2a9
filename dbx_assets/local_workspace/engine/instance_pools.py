"""Instance pools: the registry of every pool (its stored document) and its idle instances. The
Instance Pools API (api/instance_pools.py) is HTTP over this; clusters (engine/clusters.py) take
their driver from a pool when their spec names one.

An instance here is a local driver process started ahead: its JVM up with Spark's classes loaded
and warmed, exactly as a cold cluster's driver starts when its spec sets no spark_conf and no
spark_env_vars (the pool's instances are made by the same cluster factory, from that empty spec).
An instance is used by one cluster, then discarded with it; the pool starts another to keep
`min_idle_instances` idle, never holding more than `max_capacity` instances (idle + pending + used).

A cluster whose spec sets spark_conf or spark_env_vars cannot use an idle driver (those are fixed
when a JVM starts): it still takes its place in the pool's capacity, and its driver starts cold
with its own conf, as it would on a pool instance on Databricks (which starts Spark at cluster
start); its events say so. A cluster asking for an instance while the pool is at max_capacity
waits, PENDING, until one is released.
"""

from __future__ import annotations

import contextlib
import logging
import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service import compute

from ..runtime.contract import ClusterSpec, StoragePaths
from .errors import ApiError, invalid
from .state import StateStore

log = logging.getLogger("dbx_local_workspace")
LOCAL_USER = "local-user@localhost"
MAX_PENDING_ERRORS = 10
MAX_AUTOTERMINATION_MINUTES = 10000
DEFAULT_AUTOTERMINATION_MINUTES = 60  # "if not set, ... terminated after a default timeout"
# Fields instance-pools/edit changes; node_type_id must stay what it was.
EDITABLE_FIELDS = ("instance_pool_name", "min_idle_instances", "max_capacity", "idle_instance_autotermination_minutes")


def pool_not_found(pool_id: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Can't find an instance pool with id: {pool_id}.")


def warm_compatible(spec: ClusterSpec) -> bool:
    """Whether a cluster of `spec` can run on an idle (already started) driver: only if its driver
    would have started with the same conf, i.e. it sets no spark_conf and no spark_env_vars."""
    return not spec.spark_conf and not spec.spark_env_vars


def new_pool_id() -> str:
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=8))
    return time.strftime("%m%d-%H%M%S-", time.gmtime()) + "local-pool-" + suffix


@dataclass
class _Pool:
    """What lives only in this process for one pool: its instances."""

    idle: list[tuple[str, Any]] = field(default_factory=list)  # (instance id, started runtime)
    pending_idle: int = 0  # instances starting to become idle
    used: dict[str, str] = field(default_factory=dict)  # cluster id -> instance id (or "cold")
    errors: list[dict] = field(default_factory=list)  # pending_instance_errors, newest last
    starting: dict[str, Any] = field(default_factory=dict)  # instance id -> runtime whose driver is starting


@dataclass(frozen=True)
class Claim:
    """What a cluster got from a pool: an idle instance (runtime set) or a place to start one cold."""

    pool_id: str
    instance_id: str
    runtime: Any  # a started ClusterRuntime, None: start a driver cold
    waited_seconds: float


class InstancePools:
    def __init__(self, store: StateStore, paths: StoragePaths, factory: Callable):
        self.store = store
        self.paths = paths
        self.factory = factory  # engine.clusters.ClusterFactory: the same drivers a cold cluster gets
        self._pools: dict[str, _Pool] = {}
        self._changed = threading.Condition(threading.RLock())
        self._closed = False
        self._trim_timers: dict[str, threading.Timer] = {}

    # -- registry ---------------------------------------------------------------------------------
    def doc(self, pool_id: str) -> dict:
        doc = self.store.get("instance_pool", pool_id)
        if doc is None:
            raise pool_not_found(pool_id)
        return doc

    def docs(self) -> list[dict]:
        return sorted((d for _, d in self.store.all("instance_pool")), key=lambda d: d["instance_pool_name"])

    def public(self, doc: dict) -> dict:
        """A pool as instance-pools/get serves it: its stored fields plus live stats and status."""
        with self._changed:
            live = self._pools.get(doc["instance_pool_id"], _Pool())
            used = sum(1 for v in live.used.values() if v != "pending")
            pending_used = len(live.used) - used
            stats = {
                "idle_count": len(live.idle),
                "pending_idle_count": live.pending_idle,
                "used_count": used,
                "pending_used_count": pending_used,
            }
            status = {"pending_instance_errors": list(live.errors)} if live.errors else {}
        return compute.GetInstancePool.from_dict({**doc, "stats": stats, "status": status}).as_dict()

    def _check(self, spec: dict, pool_id: str | None = None) -> None:
        name = spec.get("instance_pool_name") or ""
        if not 1 <= len(name) <= 100:
            raise invalid("instance_pool_name must be between 1 and 100 characters.")
        for _, other in self.store.all("instance_pool"):
            if other["instance_pool_name"] == name and other["instance_pool_id"] != pool_id:
                raise invalid(
                    f"Instance pool name '{name}' is already used by pool {other['instance_pool_id']}; "
                    "pool names must be unique."
                )
        min_idle = spec.get("min_idle_instances") or 0
        max_capacity = spec.get("max_capacity")
        if min_idle < 0:
            raise invalid(f"min_idle_instances must not be negative, got {min_idle}.")
        if max_capacity is not None and max_capacity < 1:
            raise invalid(f"max_capacity must be at least 1, got {max_capacity}.")
        if max_capacity is not None and min_idle > max_capacity:
            raise invalid(f"min_idle_instances ({min_idle}) must not exceed max_capacity ({max_capacity}).")
        minutes = spec.get("idle_instance_autotermination_minutes")
        if minutes is not None and not 0 <= minutes <= MAX_AUTOTERMINATION_MINUTES:
            raise invalid(
                f"idle_instance_autotermination_minutes must be between 0 and {MAX_AUTOTERMINATION_MINUTES}, got {minutes}."
            )

    # -- the API's operations ----------------------------------------------------------------------
    def create(self, spec: dict, node_type_id: str, spark_versions: tuple[str, ...]) -> dict:
        self._check(spec)
        if spec.get("node_type_id") != node_type_id:
            raise invalid(
                f"Node type {spec.get('node_type_id')!r} is not supported; this workspace has {node_type_id!r}."
            )
        preloaded = list(spec.get("preloaded_spark_versions") or [])
        if len(preloaded) > 1:
            raise invalid("preloaded_spark_versions may hold at most one Spark version.")
        for version in preloaded:
            if version not in spark_versions:
                raise invalid(f"Spark version {version!r} is not available; use one of {', '.join(spark_versions)}.")
        pool_id = new_pool_id()
        doc = compute.GetInstancePool.from_dict(spec).as_dict()
        doc.update(
            instance_pool_id=pool_id,
            state="ACTIVE",
            min_idle_instances=spec.get("min_idle_instances") or 0,
            idle_instance_autotermination_minutes=spec.get(
                "idle_instance_autotermination_minutes", DEFAULT_AUTOTERMINATION_MINUTES
            ),
            default_tags={
                "Vendor": "Databricks",
                "InstancePoolCreator": LOCAL_USER,
                "InstancePoolName": spec["instance_pool_name"],
                "InstancePoolId": pool_id,
            },
        )
        for live_field in ("stats", "status"):
            doc.pop(live_field, None)
        self.store.put("instance_pool", pool_id, doc)
        self.refill(pool_id)
        return doc

    def edit(self, pool_id: str, spec: dict) -> None:
        doc = self.doc(pool_id)
        if spec.get("node_type_id") and spec["node_type_id"] != doc.get("node_type_id"):
            raise invalid(
                f"node_type_id of instance pool {pool_id} cannot be changed (it is {doc.get('node_type_id')!r})."
            )
        merged = {**doc, **{k: spec[k] for k in EDITABLE_FIELDS if k in spec}}
        if "max_capacity" not in spec:
            merged.pop("max_capacity", None)  # edit sets the whole pool: an omitted cap is no cap
        self._check(merged, pool_id)
        merged["default_tags"] = {**doc.get("default_tags", {}), "InstancePoolName": merged["instance_pool_name"]}
        if "custom_tags" in spec:
            merged["custom_tags"] = spec["custom_tags"]
        self.store.put("instance_pool", pool_id, merged)
        self.refill(pool_id)
        self._schedule_trim(pool_id, merged)

    def delete(self, pool_id: str) -> None:
        """Delete the pool; its idle instances are terminated in the background (clusters using
        one keep it until they terminate)."""
        self.doc(pool_id)
        self.store.delete("instance_pool", pool_id)
        with self._changed:
            live = self._pools.pop(pool_id, None)
            self._changed.notify_all()
        if live is not None:
            self._terminate_later([rt for _, rt in live.idle] + list(live.starting.values()))

    # -- instances ---------------------------------------------------------------------------------
    def _live(self, pool_id: str) -> _Pool:
        return self._pools.setdefault(pool_id, _Pool())

    def refill(self, pool_id: str) -> None:
        """Start instances until min_idle_instances are idle or starting (within max_capacity)."""
        doc = self.store.get("instance_pool", pool_id)
        if doc is None or doc.get("state") != "ACTIVE":
            return
        with self._changed:
            if self._closed:
                return
            live = self._live(pool_id)
            cap = doc.get("max_capacity")
            wanted = int(doc.get("min_idle_instances") or 0) - len(live.idle) - live.pending_idle
            room = wanted if cap is None else min(wanted, cap - len(live.idle) - live.pending_idle - len(live.used))
            for _ in range(max(0, room)):
                live.pending_idle += 1
                instance_id = f"{pool_id}-i-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
                threading.Thread(
                    target=self._start_instance, args=(pool_id, instance_id), name=f"pool-{instance_id}", daemon=True
                ).start()

    def _start_instance(self, pool_id: str, instance_id: str) -> None:
        runtime = self.factory(instance_id, ClusterSpec(), self.paths)
        with self._changed:
            if self._closed:
                return
            live = self._pools.get(pool_id)
            if live is not None:
                live.starting[instance_id] = runtime  # shutdown stops it even mid-start
        error = None
        try:
            runtime.start()
        except Exception as e:  # recorded as the pool's pending_instance_errors, as Databricks does
            error = str(e) or type(e).__name__
            log.warning("instance pool %s: instance %s failed to start: %s", pool_id, instance_id, error)
        with self._changed:
            live = self._pools.get(pool_id)
            if live is not None:
                live.pending_idle -= 1
                live.starting.pop(instance_id, None)
            if error is not None:
                if live is not None:
                    live.errors = [*live.errors, {"instance_id": instance_id, "message": error}][-MAX_PENDING_ERRORS:]
                    self._changed.notify_all()
                return
            if live is None or self._closed:  # deleted (or shut down) while it started
                orphan = True
            else:
                orphan = False
                live.idle.append((instance_id, runtime))
                live.errors = []
                self._changed.notify_all()
        if orphan:
            runtime.terminate()

    def claim(
        self,
        pool_id: str,
        cluster_id: str,
        spec: ClusterSpec,
        waiting: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> Claim | None:
        """An instance of the pool for cluster `cluster_id`: an idle one if the cluster can use it,
        else a place in the pool's capacity to start its driver cold. Waits while the pool is at
        max_capacity (telling `waiting` why, once); None if `should_stop` turns true meanwhile.
        Raises ApiError (pool_not_found) if there is no such pool."""
        started = time.monotonic()
        told = False
        with self._changed:
            while True:
                doc = self.store.get("instance_pool", pool_id)
                if doc is None:
                    raise pool_not_found(pool_id)
                live = self._live(pool_id)
                if warm_compatible(spec) and live.idle:
                    instance_id, runtime = live.idle.pop(0)
                    live.used[cluster_id] = instance_id
                    break
                cap = doc.get("max_capacity")
                if cap is None or len(live.idle) + live.pending_idle + len(live.used) < cap:
                    if not (warm_compatible(spec) and live.pending_idle):  # else: faster to wait for that one
                        instance_id, runtime = f"{pool_id}-c-{cluster_id}", None
                        live.used[cluster_id] = "pending"
                        break
                elif not warm_compatible(spec) and live.idle:
                    # Idle drivers fill the pool but cannot serve this conf: one makes room for a cold start.
                    self._terminate_later([live.idle.pop(0)[1]])
                    instance_id, runtime = f"{pool_id}-c-{cluster_id}", None
                    live.used[cluster_id] = "pending"
                    break
                if should_stop():
                    return None
                if not told and cap is not None and len(live.used) >= cap:
                    waiting(
                        f"Waiting for an instance from pool {doc['instance_pool_name']} ({pool_id}): "
                        f"it is at its max_capacity of {cap}."
                    )
                    told = True
                self._changed.wait(0.5)
        self.refill(pool_id)
        return Claim(pool_id, instance_id, runtime, time.monotonic() - started)

    def started_cold(self, pool_id: str, cluster_id: str, instance_id: str) -> None:
        """A cluster's cold driver on the pool's capacity is up: it now counts as used."""
        with self._changed:
            live = self._pools.get(pool_id)
            if live is not None and live.used.get(cluster_id) == "pending":
                live.used[cluster_id] = instance_id

    def release(self, pool_id: str, cluster_id: str) -> None:
        """The cluster terminated: its instance is discarded (its driver went with it) and the pool
        refills; a cluster waiting at max_capacity may go on."""
        with self._changed:
            live = self._pools.get(pool_id)
            if live is None or live.used.pop(cluster_id, None) is None:
                return
            self._changed.notify_all()
        self.refill(pool_id)

    def _schedule_trim(self, pool_id: str, doc: dict) -> None:
        """Idle instances beyond min_idle_instances (after an edit lowered it) terminate after
        idle_instance_autotermination_minutes."""
        minutes = doc.get("idle_instance_autotermination_minutes", DEFAULT_AUTOTERMINATION_MINUTES)
        old = self._trim_timers.pop(pool_id, None)
        if old is not None:
            old.cancel()
        timer = threading.Timer(minutes * 60, self._trim, args=(pool_id,))
        timer.daemon = True
        self._trim_timers[pool_id] = timer
        timer.start()

    def _trim(self, pool_id: str) -> None:
        doc = self.store.get("instance_pool", pool_id)
        with self._changed:
            live = self._pools.get(pool_id)
            if doc is None or live is None:
                return
            extra = len(live.idle) - int(doc.get("min_idle_instances") or 0)
            surplus = live.idle[:extra] if extra > 0 else []
            live.idle = live.idle[len(surplus) :]
            self._changed.notify_all()
        self._terminate_later([rt for _, rt in surplus])

    @staticmethod
    def _terminate_later(runtimes: list) -> None:
        def run() -> None:
            for rt in runtimes:
                with contextlib.suppress(Exception):
                    rt.terminate()

        if runtimes:
            threading.Thread(target=run, name="pool-terminate", daemon=True).start()

    # -- the workspace's life ----------------------------------------------------------------------
    def recover_after_restart(self) -> None:
        """Idle instances died with the previous server process: start the pools' idle instances again."""
        for pool_id, _ in self.store.all("instance_pool"):
            self.refill(pool_id)

    def shutdown(self) -> None:
        with self._changed:
            self._closed = True
            runtimes = [rt for live in self._pools.values() for _, rt in live.idle]
            runtimes += [rt for live in self._pools.values() for rt in live.starting.values()]
            for live in self._pools.values():
                live.idle, live.starting = [], {}
            timers, self._trim_timers = list(self._trim_timers.values()), {}
        for timer in timers:
            timer.cancel()
        for rt in runtimes:
            with contextlib.suppress(Exception):
                rt.terminate()
