"""Compute seconds and DBU estimates: the rate of a cluster spec, how a shared cluster's time is
split among its tasks (each moment equally among the tasks running on it), and the
metadata and run total a step reports (no-JVM runtime, real local workspace over HTTP)."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from workflow_support import NOTEBOOKS, make_resource, materialization_metadata

from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.cost import (
    COMPUTE_SECONDS,
    DBU_BASIS,
    DBU_ESTIMATE,
    DBU_NOTE,
    DEFAULT_DBU_RATES,
    ClusterRate,
    CostLedger,
)
from dbx_assets.integration.workflow.definition import Workflow

SPARK = "15.4.x-scala2.12"


def test_rate_counts_the_driver_and_every_worker():
    rate = ClusterRate.of({"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 3}, DEFAULT_DBU_RATES)
    assert rate.dbu_per_hour == 4.0 and "1 driver i3.xlarge + 3 workers" in rate.basis
    mixed = ClusterRate.of(
        {"spark_version": SPARK, "node_type_id": "i3.xlarge", "driver_node_type_id": "i3.2xlarge", "num_workers": 2},
        DEFAULT_DBU_RATES,
    )
    assert mixed.dbu_per_hour == 2.0 + 2 * 1.0
    single_node = ClusterRate.of(
        {"spark_version": SPARK, "node_type_id": "Standard_DS3_v2", "num_workers": 0}, {**DEFAULT_DBU_RATES}
    )
    assert single_node.dbu_per_hour == 0.75


def test_autoscale_is_estimated_at_its_maximum():
    spec = {"spark_version": SPARK, "node_type_id": "i3.xlarge", "autoscale": {"min_workers": 1, "max_workers": 4}}
    rate = ClusterRate.of(spec, DEFAULT_DBU_RATES)
    assert rate.dbu_per_hour == 5.0 and "up to 4 workers" in rate.basis


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"spark_version": SPARK, "node_type_id": "r7gd.16xlarge", "num_workers": 1}, "no DBU rate for r7gd.16xlarge"),
        ({"spark_version": SPARK, "node_type_id": "i3.xlarge", "driver_node_type_id": "x9", "num_workers": 1}, "x9"),
        ({"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 1, "runtime_engine": "PHOTON"}, "Photon"),
        (None, "serverless"),
    ],
)
def test_no_rate_means_no_number_and_a_reason(spec, why):
    rate = ClusterRate.of(spec, DEFAULT_DBU_RATES)
    assert rate.dbu_per_hour is None and why in rate.basis


def test_a_shared_clusters_time_is_split_equally_among_the_tasks_running_on_it():
    spec = {"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 1}  # 2 DBU/h
    ledger = CostLedger()
    # Cluster X: a 0-10 s, b 4-16 s, c 20-23 s; cluster Y: d 0-30 s. Charged as each ends, knowing
    # from the last poll which tasks were still running then (b when a ends, d throughout).
    ledger.observe(2, "X", 4_000, None)
    ledger.observe(4, "Y", 1, None)
    a = ledger.charge("a", 1, "X", spec, 0, 10_000)  # 0-4 alone, 4-10 with b
    b = ledger.charge("b", 2, "X", spec, 4_000, 16_000)  # 4-10 with a, 10-16 alone
    c = ledger.charge("c", 3, "X", spec, 20_000, 23_000)
    d = ledger.charge("d", 4, "Y", spec, 1, 30_001)  # a cluster of its own
    assert (a.seconds, b.seconds, c.seconds, d.seconds) == (7.0, 9.0, 3.0, 30.0)
    assert a.seconds + b.seconds + c.seconds == 19.0  # cluster X's busy time: 0-16 and 20-23
    assert b.dbu == pytest.approx(2.0 * 9 / 3600)
    assert "Databricks run 7: 49.0 compute seconds over 4 task(s) on 2 cluster(s)" in ledger.summary(7)
    assert f"≈ {2.0 * 49 / 3600:.4f} DBU" in ledger.summary(7)


def test_three_parallel_tasks_share_a_cluster_start():
    ledger = CostLedger()
    spec = {"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 1}
    for run_id in (1, 2, 3):  # all three wait 6 s for the cluster, then run 1, 2 and 3 s
        ledger.observe(run_id, "X", 1_000, None)
    shares = [ledger.charge(f"t{i}", i, "X", spec, 1_000, 7_000 + i * 1_000).seconds for i in (1, 2, 3)]
    assert shares == pytest.approx([6 / 3 + 1 / 3, 6 / 3 + 1 / 3 + 1 / 2, 6 / 3 + 1 / 3 + 1 / 2 + 1])
    assert sum(shares) == pytest.approx(9.0)
    # Without timestamps a task pays its own seconds, unshared.
    assert ledger.charge("untimed", 9, "X", spec, None, None, fallback_seconds=4.5).seconds == 4.5


def test_metadata_says_estimate_or_why_not():
    ledger = CostLedger()
    known = ledger.charge(
        "a", 1, "X", {"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 1}, 0, 1_800_000
    )
    assert known.metadata()[DBU_ESTIMATE] == 1.0 and known.metadata()[COMPUTE_SECONDS] == 1800.0
    unknown = ledger.charge("b", 2, "Y", {"spark_version": SPARK, "node_type_id": "q1", "num_workers": 1}, 0, 1_000)
    assert DBU_ESTIMATE not in unknown.metadata() and "no DBU rate for q1" in unknown.metadata()[DBU_NOTE]
    assert "1 task(s) without an estimate" in ledger.summary(1)


def test_each_materialization_carries_its_cost_and_the_step_logs_the_total(dbx_env):
    name = "t" + uuid.uuid4().hex[:10]
    clusters = {
        "known": {"spark_version": SPARK, "node_type_id": "i3.xlarge", "num_workers": 1},
        "custom": {"spark_version": SPARK, "node_type_id": "m9.custom", "num_workers": 2},
        "unknown": {"spark_version": SPARK, "node_type_id": "z9.unknown", "num_workers": 1},
    }
    notebooks = NotebookTasks(
        [
            NotebookAsset(key=f"{name}/{k}", notebook="slow.py", params={"seconds": "1"}, job_cluster=k)
            for k in clusters
        ],
        notebooks_dir=NOTEBOOKS,
    )
    workflow = Workflow(
        name=name, sources=[notebooks], job_clusters=clusters, default_job_cluster="known", dbu_rates={"m9.custom": 0.5}
    )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [build_workflow_assets(workflow)],
        resources={"databricks": make_resource(name)},
        instance=instance,
        raise_on_error=False,
    )
    assert result.success
    known = materialization_metadata(result, dg.AssetKey([name, "known"]))
    custom = materialization_metadata(result, dg.AssetKey([name, "custom"]))
    unknown = materialization_metadata(result, dg.AssetKey([name, "unknown"]))
    for meta in (known, custom, unknown):  # one cluster each: a task pays for all of its time on it
        assert meta[COMPUTE_SECONDS] >= 1.0
    assert known[DBU_ESTIMATE] == pytest.approx(2.0 * known[COMPUTE_SECONDS] / 3600, rel=1e-3)
    assert custom[DBU_ESTIMATE] == pytest.approx(1.5 * custom[COMPUTE_SECONDS] / 3600, rel=1e-3)
    assert "1 driver m9.custom + 2 workers m9.custom = 1.5 DBU/h" in custom[DBU_BASIS]
    assert DBU_ESTIMATE not in unknown and "no DBU rate for z9.unknown" in unknown[DBU_NOTE]
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    total = [m for m in logs if "compute seconds over 3 task(s) on 3 cluster(s)" in m]
    assert total, logs
    expected = known[DBU_ESTIMATE] + custom[DBU_ESTIMATE]
    assert f"≈ {expected:.4f} DBU (1 task(s) without an estimate)" in total[0]
