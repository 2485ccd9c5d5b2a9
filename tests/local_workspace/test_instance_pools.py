"""Instance pools over HTTP through the SDK's `w.instance_pools`, on a workspace of this module's own
whose clusters are the no-JVM fake runtime: the API's fields, stats and errors; a cluster naming a
pool takes an idle instance (started ahead, never started for it) and says so; the pool refills; at
max_capacity a cluster waits PENDING until an instance is released."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from databricks.sdk.errors import InvalidParameterValue, NotFound
from databricks.sdk.service import compute
from fake_runtime import FakeCluster, FakeWorkspace

SPARK_VERSION = "15.4.x-scala2.12"
WAIT = timedelta(minutes=1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = FakeWorkspace(tmp_path_factory.mktemp("pools"))
    try:
        yield workspace
    finally:
        workspace.close()


def _until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _stats(w, pool_id: str) -> compute.InstancePoolStats:
    stats = w.instance_pools.get(pool_id).stats
    assert stats is not None
    return stats


def _idle(w, pool_id: str, count: int) -> None:
    _until(f"{count} idle instance(s) in {pool_id}", lambda: _stats(w, pool_id).idle_count == count)


def test_create_get_list_edit_delete_with_databricks_fields_and_errors(ws):
    w = ws.client
    pool_id = w.instance_pools.create(
        instance_pool_name="crud",
        node_type_id="local",
        min_idle_instances=1,
        max_capacity=3,
        idle_instance_autotermination_minutes=15,
        preloaded_spark_versions=[SPARK_VERSION],
        custom_tags={"team": "data"},
    ).instance_pool_id
    assert pool_id
    _idle(w, pool_id, 1)
    got = w.instance_pools.get(pool_id)
    assert (got.instance_pool_name, got.min_idle_instances, got.max_capacity) == ("crud", 1, 3)
    assert got.state == compute.InstancePoolState.ACTIVE and got.preloaded_spark_versions == [SPARK_VERSION]
    assert got.default_tags and got.default_tags["InstancePoolId"] == pool_id and got.custom_tags == {"team": "data"}
    assert got.stats == compute.InstancePoolStats(
        idle_count=1, pending_idle_count=0, used_count=0, pending_used_count=0
    )
    assert pool_id in {p.instance_pool_id for p in w.instance_pools.list()}

    with pytest.raises(InvalidParameterValue, match="already used"):
        w.instance_pools.create(instance_pool_name="crud", node_type_id="local")
    with pytest.raises(InvalidParameterValue, match="must not exceed max_capacity"):
        w.instance_pools.create(
            instance_pool_name="too-small", node_type_id="local", min_idle_instances=2, max_capacity=1
        )
    with pytest.raises(InvalidParameterValue, match="Node type 'i3.xlarge' is not supported"):
        w.instance_pools.create(instance_pool_name="aws", node_type_id="i3.xlarge")
    with pytest.raises(InvalidParameterValue, match="cannot be changed"):
        w.instance_pools.edit(pool_id, "crud", "other")

    w.instance_pools.edit(pool_id, "crud-renamed", "local", min_idle_instances=2, max_capacity=4)
    _idle(w, pool_id, 2)  # the edit's new minimum is kept idle
    edited = w.instance_pools.get(pool_id)
    assert (edited.instance_pool_name, edited.max_capacity) == ("crud-renamed", 4)
    assert edited.default_tags and edited.default_tags["InstancePoolName"] == "crud-renamed"

    w.instance_pools.delete(pool_id)
    with pytest.raises(NotFound, match=f"Can't find an instance pool with id: {pool_id}"):
        w.instance_pools.get(pool_id)
    assert pool_id not in {p.instance_pool_id for p in w.instance_pools.list()}


def test_a_cluster_on_a_pool_takes_an_idle_instance_says_so_and_the_pool_refills(ws):
    w = ws.client
    pool_id = w.instance_pools.create(instance_pool_name="warm", node_type_id="local", min_idle_instances=1)
    assert pool_id.instance_pool_id
    pool = pool_id.instance_pool_id
    _idle(w, pool, 1)
    cluster = w.clusters.create(
        cluster_name="pooled", spark_version=SPARK_VERSION, num_workers=0, instance_pool_id=pool
    ).result(timeout=WAIT)
    assert cluster.cluster_id and cluster.state == compute.State.RUNNING
    assert cluster.instance_pool_id == pool
    instance = cluster.driver.instance_id if cluster.driver else None
    assert instance and instance.startswith(pool)
    # The driver was started ahead, as the pool's instance, never for this cluster.
    assert instance in FakeCluster.started and cluster.cluster_id not in FakeCluster.started
    running = next(e for e in w.clusters.events(cluster.cluster_id) if e.type == compute.EventType.RUNNING)
    assert running.details and running.details.instance_id == instance
    assert "idle instance" in (running.details.driver_state_message or "")

    _until("the pool refilled", lambda: _stats(w, pool) == compute.InstancePoolStats(1, 0, 0, 1))
    w.clusters.delete_and_wait(cluster.cluster_id, timeout=WAIT)
    assert _stats(w, pool).used_count == 0  # the instance went with the cluster

    # A spark_conf is fixed when a JVM starts: that cluster's driver starts cold on the pool's capacity.
    conf = w.clusters.create(
        cluster_name="own-conf",
        spark_version=SPARK_VERSION,
        num_workers=0,
        instance_pool_id=pool,
        spark_conf={"spark.sql.shuffle.partitions": "8"},
    ).result(timeout=WAIT)
    assert conf.cluster_id in FakeCluster.started
    running = next(e for e in w.clusters.events(conf.cluster_id) if e.type == compute.EventType.RUNNING)
    assert running.details and "spark_conf" in (running.details.driver_state_message or "")
    assert _stats(w, pool).idle_count == 1  # the idle instance stays for a cluster that can use it
    w.clusters.delete_and_wait(conf.cluster_id, timeout=WAIT)
    w.instance_pools.delete(pool)


def test_at_max_capacity_a_cluster_waits_pending_until_an_instance_is_released(ws):
    w = ws.client
    pool = w.instance_pools.create(
        instance_pool_name="one", node_type_id="local", min_idle_instances=1, max_capacity=1
    ).instance_pool_id
    assert pool
    _idle(w, pool, 1)
    first = w.clusters.create(cluster_name="first", spark_version=SPARK_VERSION, num_workers=0, instance_pool_id=pool)
    first_id = first.result(timeout=WAIT).cluster_id
    assert first_id
    second_id = w.clusters.create(
        cluster_name="second", spark_version=SPARK_VERSION, num_workers=0, instance_pool_id=pool
    ).cluster_id
    assert second_id
    waiting = _until(
        "the second cluster says it waits for the pool",
        lambda: (c := w.clusters.get(second_id)).state_message and "max_capacity" in c.state_message and c,
    )
    assert waiting.state == compute.State.PENDING and "max_capacity of 1" in (waiting.state_message or "")
    w.clusters.delete_and_wait(first_id, timeout=WAIT)
    second = w.clusters.wait_get_cluster_running(second_id, timeout=WAIT)
    assert second.driver and second.driver.instance_id and second.driver.instance_id.startswith(pool)
    w.clusters.delete_and_wait(second_id, timeout=WAIT)
    w.instance_pools.delete(pool)


def test_a_cluster_naming_a_missing_pool_or_a_node_type_with_a_pool_is_refused(ws):
    w = ws.client
    with pytest.raises(NotFound, match="Can't find an instance pool with id: nope"):
        w.clusters.create(cluster_name="x", spark_version=SPARK_VERSION, num_workers=0, instance_pool_id="nope")
    pool = w.instance_pools.create(instance_pool_name="typed", node_type_id="local").instance_pool_id
    with pytest.raises(InvalidParameterValue, match="'node_type_id' cannot be supplied when an instance pool ID"):
        w.clusters.create(
            cluster_name="x", spark_version=SPARK_VERSION, num_workers=0, instance_pool_id=pool, node_type_id="local"
        )
    assert pool
    w.instance_pools.delete(pool)
