"""Compute seconds and a DBU estimate per task, from the job's cluster specs and the task runs'
own start and end times (workspace timestamps compared only with each other).

A cluster's DBU rate is (driver + workers) × the node type's DBU per hour, from a rate table
(`DEFAULT_DBU_RATES`, overridden per node type by `Workflow(dbu_rates=...)`); autoscaling
clusters are estimated at `max_workers` (an upper bound). No rate for a node type, Photon (its
DBU multiplier differs by SKU), serverless or an existing cluster: no estimate, and a note
saying why — never a made-up number.

Sharing a cluster: a task is charged for its time on the cluster, from its start (waiting for
the cluster and its libraries included) to its end, each moment divided equally among the task
runs of the step that were on that cluster at that moment. The runner's view of the run after each
poll (`observe`) says which tasks are still running when one ends; all of them started before it
ended, so each share is final when its task is reported, and the shares add up to the cluster's
busy time in the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbx_assets.integration.jobs.model import WorkflowSpec
from dbx_assets.integration.workflow.definition import Workflow

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from databricks.sdk.service.jobs import RunTask

    from dbx_assets.integration.jobs.runner import TaskFinished

# DBU per node-hour of a few common node types (Databricks' instance-type pricing pages; the
# same on every SKU — the SKU sets the price per DBU, which this never uses).
DEFAULT_DBU_RATES: Mapping[str, float] = {
    "i3.xlarge": 1.0,
    "i3.2xlarge": 2.0,
    "i3.4xlarge": 4.0,
    "Standard_DS3_v2": 0.75,
    "Standard_DS4_v2": 1.5,
    "Standard_DS5_v2": 3.0,
}

COMPUTE_SECONDS = "databricks_compute_s"
DBU_ESTIMATE = "databricks_dbu_estimate"
DBU_BASIS = "databricks_dbu_basis"
DBU_NOTE = "databricks_dbu_note"


@dataclass(frozen=True)
class ClusterRate:
    """DBU per hour of one cluster spec, or why there is none."""

    dbu_per_hour: float | None
    basis: str  # how the rate was made up, or why there is none

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None, rates: Mapping[str, float]) -> ClusterRate:
        if spec is None:
            return cls(None, "not a job cluster of this workflow (serverless or an existing cluster): not modelled")
        if str(spec.get("runtime_engine", "")).upper() == "PHOTON" or "photon" in str(spec.get("spark_version", "")):
            return cls(None, "Photon clusters are not modelled (their DBU multiplier depends on the SKU)")
        worker_type = spec.get("node_type_id")
        driver_type = spec.get("driver_node_type_id") or worker_type
        autoscale = spec.get("autoscale") or {}
        workers = int(autoscale.get("max_workers", 0)) if autoscale else int(spec.get("num_workers") or 0)
        unknown = sorted({t for t in (driver_type, worker_type) if t and t not in rates})
        if not worker_type or unknown:
            missing = ", ".join(unknown) or "no node_type_id"
            return cls(None, f"no DBU rate for {missing}: add it to the workflow's dbu_rates")
        assert isinstance(worker_type, str) and isinstance(driver_type, str)
        dbu = rates[driver_type] + workers * rates[worker_type]
        scale = f"up to {workers}" if autoscale else str(workers)
        return cls(dbu, f"1 driver {driver_type} + {scale} workers {worker_type} = {dbu:g} DBU/h")


@dataclass(frozen=True)
class TaskCost:
    task_key: str
    cluster_id: str | None
    seconds: float  # charged seconds of the cluster's time
    dbu: float | None
    basis: str

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {COMPUTE_SECONDS: round(self.seconds, 3)}
        if self.dbu is None:
            meta[DBU_NOTE] = f"no DBU estimate: {self.basis}"
        else:
            meta[DBU_ESTIMATE] = round(self.dbu, 9)
            meta[DBU_BASIS] = f"{self.basis}, × {self.seconds:.1f} s charged to this task (estimate, not a bill)"
        return meta


@dataclass
class CostLedger:
    """One step's charges. `observe` records the task runs seen (running or ended) on each poll;
    `charge` is called as each task ends."""

    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DBU_RATES))
    # task run id -> (cluster, start ms, end ms or None while it runs)
    _spans: dict[int, tuple[str, int, int | None]] = field(default_factory=dict)
    costs: list[TaskCost] = field(default_factory=list)

    def observe(self, task_run_id: int, cluster: str, start_ms: int | None, end_ms: int | None) -> None:
        if start_ms:  # not started yet: not on the cluster
            self._spans[task_run_id] = (cluster, start_ms, end_ms or None)

    def charge(
        self,
        task_key: str,
        task_run_id: int,
        cluster_id: str | None,
        spec: Mapping[str, Any] | None,
        start_ms: int | None,
        end_ms: int | None,
        fallback_seconds: float | None = None,
    ) -> TaskCost:
        rate = ClusterRate.of(spec, self.rates)
        if start_ms is not None and end_ms is not None and end_ms > start_ms:
            self._spans[task_run_id] = (cluster_id or f"task:{task_run_id}", start_ms, end_ms)
            seconds = self._share_ms(task_run_id) / 1000.0
        else:  # no timestamps: the task's own seconds, unshared
            seconds = fallback_seconds or 0.0
        dbu = rate.dbu_per_hour * seconds / 3600.0 if rate.dbu_per_hour is not None else None
        cost = TaskCost(task_key, cluster_id, seconds, dbu, rate.basis)
        self.costs.append(cost)
        return cost

    def _share_ms(self, task_run_id: int) -> float:
        """The task's span, each moment divided by the number of task runs on its cluster then. Tasks
        still running count from their start on: every task overlapping this one has started by now."""
        cluster, start, end = self._spans[task_run_id]
        assert end is not None
        spans = [(s, e if e is not None else _FOREVER) for c, s, e in self._spans.values() if c == cluster]
        cuts = sorted({start, end, *(t for span in spans for t in span if start < t < end)})
        share = 0.0
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            running = sum(1 for s, e in spans if s <= lo < e)  # >= 1: this task itself
            share += (hi - lo) / running
        return share

    def summary(self, run_id: int) -> str:
        seconds = sum(c.seconds for c in self.costs)
        known = [c.dbu for c in self.costs if c.dbu is not None]
        clusters = len({c.cluster_id for c in self.costs if c.cluster_id})
        dbu = f"≈ {sum(known):.4f} DBU" if known else "no DBU estimate"
        unknown = len(self.costs) - len(known)
        caveat = f" ({unknown} task(s) without an estimate)" if known and unknown else ""
        return (
            f"Databricks run {run_id}: {seconds:.1f} compute seconds over {len(self.costs)} task(s) on "
            f"{clusters} cluster(s), {dbu}{caveat}. Estimate from node types and task times: no prices, "
            "discounts, idle or shutdown time."
        )


_FOREVER = 2**63


class StepCosts:
    """The ledger of one step of `workflow`: which cluster spec each task ran on, from the job spec."""

    def __init__(self, workflow: Workflow, spec: WorkflowSpec, pool_node_types: Mapping[str, str] | None = None):
        self._workflow = workflow
        self._spec = spec  # the job the step runs
        self._pool_node_types = dict(pool_node_types or {})  # instance pool id -> its node type
        self.ledger = CostLedger(rates={**DEFAULT_DBU_RATES, **workflow.dbu_rates})

    def observe(self, tasks: Sequence[RunTask], final: bool = False) -> None:
        """The runner's view of the watched tasks after each runs/get (its `on_poll`)."""
        for task in tasks:
            if task.run_id is not None:
                cluster = task.cluster_instance.cluster_id if task.cluster_instance else None
                self.ledger.observe(task.run_id, cluster or f"task:{task.run_id}", task.start_time, task.end_time)

    def charge(self, finished: TaskFinished) -> dict[str, Any]:
        """Cost metadata for a finished task (nothing for a task that never ran)."""
        run = finished.output.metadata if finished.output else None
        if run is None and finished.execution_seconds is None:
            return {}
        cost = self.ledger.charge(
            finished.task_key,
            finished.task_run_id,
            finished.cluster_id,
            self._cluster_spec(finished.task_key),
            run.start_time if run else None,
            run.end_time if run else None,
            fallback_seconds=(finished.setup_seconds or 0.0) + (finished.execution_seconds or 0.0),
        )
        return cost.metadata()

    def summary(self, run_id: int) -> str:
        return self.ledger.summary(run_id)

    def _cluster_spec(self, task_key: str) -> Mapping[str, Any] | None:
        if self._workflow.compute == "all_purpose":  # the one cluster is made from the default spec
            return self._with_pool_node_types(self._spec.job_clusters.get(self._workflow.default_job_cluster))
        try:
            task = self._spec.task(task_key)
        except KeyError:
            return None
        if task.environment_key is not None:  # serverless: no cluster of ours
            return None
        return self._with_pool_node_types(self._spec.job_clusters.get(task.job_cluster_key))

    def _with_pool_node_types(self, spec: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """A cluster on an instance pool runs on the pool's node type (the driver on its driver pool's)."""
        if spec is None or not spec.get("instance_pool_id"):
            return spec
        worker = self._pool_node_types.get(spec["instance_pool_id"])
        driver = self._pool_node_types.get(spec.get("driver_instance_pool_id") or spec["instance_pool_id"])
        return {**spec, "node_type_id": worker, "driver_node_type_id": driver}
