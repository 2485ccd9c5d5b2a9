"""Running one Dagster step of a workflow: deploy, start (or reattach, or repair) one Databricks
run for the selected tasks, report each task's assets as it ends, cancel on terminate.

Knows tasks only through their sources (`TaskSource`): it never branches on the kind of task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import dagster as dg
from databricks.sdk.errors import PermissionDenied, Unauthenticated
from databricks.sdk.service.jobs import Run, RunTask

from dbx_assets.integration.jobs.cluster_logs import ClusterLogTailer
from dbx_assets.integration.jobs.deploy import WorkflowDeployer
from dbx_assets.integration.jobs.model import (
    DAGSTER_RUN_PARAMETER,
    PARTITION_END_PARAMETER,
    PARTITION_KEY_PARAMETER,
    PARTITION_START_PARAMETER,
    WorkflowSpec,
)
from dbx_assets.integration.jobs.outage import OutagePolicy, WorkspaceUnreachable
from dbx_assets.integration.jobs.runner import (
    TERMINAL_LIFE_CYCLE,
    RunHandle,
    TaskFinished,
    WorkflowRunner,
    idempotency_token,
    required,
)
from dbx_assets.integration.pipes.session import PipesChannels
from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError
from dbx_assets.integration.sources.base import Selection, SourceTask, TaskReport, TaskSource
from dbx_assets.integration.tables import TableMetadataReader, with_table_metadata
from dbx_assets.integration.workflow.cost import StepCosts
from dbx_assets.integration.workflow.definition import Workflow

EXECUTION_SECONDS = "execution_duration_s"


def partition_parameters(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The job parameters describing the step's partition(s); empty when unpartitioned."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return {}
    key_range = context.partition_key_range
    single = key_range.start == key_range.end
    return {
        PARTITION_KEY_PARAMETER: key_range.start if single else "",
        PARTITION_START_PARAMETER: key_range.start,
        PARTITION_END_PARAMETER: key_range.end,
    }


class WorkflowExecution:
    """One step's worth of work for `workflow` on the workspace of `databricks`."""

    def __init__(self, workflow: Workflow, context: dg.AssetExecutionContext, databricks: DatabricksResource):
        self.workflow = workflow
        self.context = context
        self.databricks = databricks
        with databricks.explained_connection_errors():
            self.client = databricks.get_client()
            # What the step watches the run through: a short SDK retry budget, so an outage surfaces
            # within a minute and is ridden out by the runner (up to the resource's outage tolerance).
            self.watch_client = databricks.get_watch_client()
            self.target = databricks.deploy_target(needs_sql_warehouse=workflow.needs_sql_warehouse)
        # Between polls of the run the step reads the Pipes channels of tasks that may be running.
        self.runner = WorkflowRunner(
            self.client,
            watch_client=self.watch_client,
            outage=OutagePolicy(tolerance_seconds=databricks.outage_tolerance_seconds),
            log=context.log,
            sleep=lambda seconds: self.pipes.wait(seconds),
            reconnect=self._revive_embedded_workspace,
        )
        self.selection = Selection(
            assets=frozenset(context.selected_asset_keys),
            checks=frozenset(context.selected_asset_check_keys),
            parameters={**partition_parameters(context), **self._parameter_values()},
        )
        self.selected: list[tuple[TaskSource, SourceTask]] = workflow.selected_tasks(self.selection, self.target)
        self.task_keys = [task.task_key for _, task in self.selected]
        self._source_of = {task.task_key: source for source, task in self.selected}
        # Named tables' columns and row counts, read after each task
        self.tables = TableMetadataReader(
            self.watch_client, lambda: self.target.sql_warehouse_id or self.databricks.sql_warehouse_id()
        )
        self.pipes = PipesChannels(
            context,
            self.client,
            [task for _, task in self.selected],
            self.selection,
            read_client=self.watch_client,
        )
        # Driver logs of job clusters with a cluster_log_conf, into the step's stdout/stderr
        self.cluster_logs = ClusterLogTailer.for_job_clusters(
            self.watch_client,
            workflow.job_clusters,
            existing_cluster_key=workflow.default_job_cluster if workflow.compute == "all_purpose" else None,
            warn=context.log.warning,
        )
        # The job this step deploys and runs; it also says where each task ran and on which cluster spec,
        # for its share of the cluster and its DBU estimate.
        self.spec: WorkflowSpec = workflow.spec(self.target)
        self.costs = StepCosts(workflow, self.spec)

    # Whether run-now sends the launch id job parameter (every job we deploy declares it).
    sends_launch_parameter = True

    def run(self) -> Iterator[Any]:
        if self.workflow.compute == "all_purpose":
            yield from self._run_on_all_purpose_cluster(self.spec, self._deployer())
            return
        with self.databricks.explained_connection_errors():
            handle = self._start(self._job_id())
        yield from self._watch_and_report(handle)

    def _deployer(self) -> WorkflowDeployer:
        return WorkflowDeployer(self.client, self.target.workspace_root, log=self.context.log)

    def _job_id(self) -> int:
        """The job the selection runs: the workflow's, deployed first if its spec changed."""
        return self._deployer().deploy(self.spec, self.workflow.files()).job_id

    # -- start, reattach or repair ----------------------------------------------------------------
    def _parameter_values(self) -> dict[str, str]:
        """The workflow's own job parameters for this run: the step's config, else (for `catalog`,
        `schema`, `deployment`) the deploy target's, which notebook widgets get too; others keep the
        job's default. A job parameter reaches every task, overriding a task parameter of its name."""
        configured = self.context.op_config or {}
        target = self.target.task_parameters
        values = {name: str(configured[name]) for name in self.workflow.parameters if name in configured}
        values.update(
            {name: target[name] for name in self.workflow.parameters if name in target and name not in values}
        )
        return values

    def _job_parameters(self) -> dict[str, str]:
        return {**self.selection.parameters, DAGSTER_RUN_PARAMETER: self.context.run.run_id}

    def _overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        for source in {id(s): s for s, _ in self.selected}.values():
            overrides.update(source.run_overrides(self.selection, self.target))
        return overrides

    def _token(self, *extra: str) -> str:
        # The op's name identifies the step: a workflow is one (non-dynamic) op per Dagster run.
        return idempotency_token(self.context.run.run_id, self.context.op_def.name, *extra)

    def _start(self, job_id: int) -> RunHandle:
        previous = self._previous_databricks_run(job_id)
        if previous is not None and not _over(previous) and self._covers_selection(previous):
            # A Databricks run does not stop when an earlier attempt stopped watching it (e.g. the
            # workspace was unreachable for longer than the outage tolerance): watch it, do not start a second.
            run_id = required(previous.run_id, "a run_id")
            self.context.log.info(
                f"Reattached to Databricks run {run_id}, started for an earlier attempt of this step and still going"
            )
            self.pipes.prepare(self.task_keys, run_id=run_id)
            return RunHandle(
                job_id, run_id, previous.run_page_url or "", reattached=True, task_keys=tuple(self.task_keys)
            )
        if previous is not None and _repairable(previous):
            previous_id = required(previous.run_id, "a run_id")
            done = self.runner.succeeded_tasks(previous_id)
            rerun = [k for k in self.task_keys if k not in done]
            if rerun:
                if len(rerun) < len(self.task_keys):
                    self.context.log.info(
                        f"Not rerunning {', '.join(k for k in self.task_keys if k in done)}: they succeeded in "
                        f"Databricks run {previous_id}, which is being repaired."
                    )
                self.task_keys = rerun
                self.pipes.prepare(rerun, run_id=previous_id)  # the repaired run keeps its channel folder
                return self.runner.repair(previous_id, rerun, overrides=self._overrides())
        self.pipes.prepare(self.task_keys, dagster_run_id=self.context.run.run_id)
        handle = self.runner.run_now(
            job_id,
            self.task_keys,
            job_parameters=self._job_parameters(),
            token=self._token(str(job_id)),
            overrides=self._overrides(),
            launch_parameter=self.sends_launch_parameter,
        )
        if handle.reattached and self.context.retry_number > 0:
            run = self.runner.get_run(handle.run_id)
            if run.state and run.state.result_state and run.state.result_state.value != "SUCCESS":
                return self.runner.repair(handle.run_id, self.task_keys, overrides=self._overrides())
        return handle

    def _previous_databricks_run(self, job_id: int) -> Run | None:
        """On re-execution of a failed Dagster run: the Databricks run one of its ancestors started
        for this job (found by the dagster_run_id job parameter, so nothing depends on Dagster's own
        storage or on clocks), as runs/get shows it now."""
        ancestors: list[str] = []
        run = self.context.run
        while run is not None and run.parent_run_id:
            ancestors.append(run.parent_run_id)
            run = self.context.instance.get_run_by_id(run.parent_run_id)
        if not ancestors:
            return None
        found = self.runner.find_run(job_id, DAGSTER_RUN_PARAMETER, ancestors)
        if found is None or found.run_id is None:
            return None
        return self.runner.get_run(found.run_id)

    def _covers_selection(self, run: Run) -> bool:
        return set(self.task_keys) <= {t.task_key for t in run.tasks or []}

    # -- all-purpose compute ------------------------------------------------------------------------
    def _run_on_all_purpose_cluster(self, spec: WorkflowSpec, deployer: WorkflowDeployer) -> Iterator[Any]:
        """Create an all-purpose cluster, run the selection on it as one submitted run, and
        delete the cluster whatever happens (the create → run → terminate flow of seed 001)."""
        if self.pipes.enabled:  # runs/submit has no job parameters to carry the Dagster run id
            raise dg.Failure(
                f"Workflow '{self.workflow.name}' runs pipes-enabled notebooks, which need job parameters that "
                "runs/submit does not have: use compute='job_cluster' (the default) or set pipes=False."
            )
        with self.databricks.explained_connection_errors():
            deployer.sync_files(self.workflow.files())
        cluster_id = self.runner.create_cluster(
            spec.job_clusters[self.workflow.default_job_cluster],
            name=f"{self.workflow.name}-{self.context.run.run_id[:8]}",
        )
        try:
            handle = self.runner.submit(
                f"{self.workflow.name} ({self.context.run.run_id[:8]})",
                [self._submit_task(spec, source, task, cluster_id) for source, task in self.selected],
                token=self._token("all_purpose"),
            )
            yield from self._watch_and_report(handle)
        finally:
            self.runner.delete_cluster(cluster_id)
            self.cluster_logs.poll((), final=True)  # what the cluster delivered when it terminated

    def _submit_task(self, spec: WorkflowSpec, source: TaskSource, task: SourceTask, cluster_id: str) -> dict[str, Any]:
        """A job task as a runs/submit task on the cluster; only dependencies inside the selection."""
        settings = spec.task(task.task_key).job_settings(compute={"existing_cluster_id": cluster_id})
        settings.update(source.submit_settings(task, self.selection, self.target))
        settings["depends_on"] = [d for d in settings.get("depends_on", []) if d["task_key"] in self.task_keys]
        return settings

    # -- reporting ----------------------------------------------------------------------------------
    def _watch_and_report(self, handle: RunHandle) -> Iterator[Any]:
        what = f"repair {handle.repair_id}" if handle.repair_id else "tasks"
        self.context.log.info(
            f"Databricks run {handle.run_id} ({what}: {', '.join(self.task_keys)}): {handle.run_page_url}"
        )
        failures: dict[dg.AssetKey, str] = {}
        try:
            for finished in self.runner.watch(handle, usual_seconds=self._usual_task_seconds(), on_poll=self._on_poll):
                source = self._source_of.get(finished.task_key)
                if source is None:
                    continue
                metadata = {**self._metadata(finished, handle), "databricks_compute": self._compute(finished)}
                metadata.update(self.costs.charge(finished))
                # Reading the task's Pipes channel and its table rides out an outage like the polls do.
                report = self.runner.tolerant(partial(self._report, finished, source, metadata))
                yield from self.runner.tolerant(
                    partial(with_table_metadata, report.events, self.tables, self.context.log.warning)
                )
                for key, why in report.failures.items():
                    self.context.log.error(f"Asset {key.to_user_string()} failed in task {finished.task_key}: {why}")
                    failures[key] = f"{why} ({handle.run_page_url})"
        except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
            self.runner.cancel(handle)
            raise
        except WorkspaceUnreachable as gone:
            raise WorkspaceConnectionError(
                description=str(gone), metadata={"databricks_run_url": dg.MetadataValue.url(handle.run_page_url)}
            ) from None
        except (Unauthenticated, PermissionDenied) as err:  # credentials rejected mid-run: not an outage
            raise (self.databricks.connection_failure(err) or err) from None
        self.context.log.info(self.costs.summary(handle.run_id))
        if failures:
            lines = "\n".join(f"- {k.to_user_string()}: {v}" for k, v in sorted(failures.items()))
            raise dg.Failure(
                description=f"{len(failures)} asset(s) failed in Databricks run {handle.run_id} "
                f"({handle.run_page_url}):\n{lines}",
                metadata={"databricks_run_url": dg.MetadataValue.url(handle.run_page_url)},
            )

    def _report(self, finished: TaskFinished, source: TaskSource, metadata: dict[str, Any]) -> TaskReport:
        """The task's events from its source, with what it reported through Pipes."""
        return self.pipes.complete(finished, source.report(finished, self.selection, self.target, metadata))

    def _revive_embedded_workspace(self) -> None:
        """While the workspace is unreachable: the embedded one, if its server died, is started again on
        its state dir (what Databricks' control plane coming back looks like); it ends the runs its
        clusters were running with a message saying so, which this step then reports."""
        host = self.databricks.revive_embedded_workspace(self.client, self.watch_client)
        if host is not None:
            self.context.log.warning(
                f"The embedded Databricks workspace's server had exited; restarted it on its state dir at {host}. "
                "Runs it was running lost their clusters with it and end with a message saying so."
            )

    def _on_poll(self, tasks: Sequence[RunTask], final: bool) -> None:
        self.costs.observe(tasks)  # which tasks share a cluster at each moment
        self.cluster_logs(tasks, final)

    def _usual_task_seconds(self) -> dict[str, float]:
        """Each selected task's execution time at its last materialization, from Dagster's own
        history (one lookup per task, whatever number of assets it materializes)."""
        usual: dict[str, float] = {}
        for _, task in self.selected:
            key = min(task.asset_keys & self.selection.assets, default=None, key=lambda k: k.to_user_string())
            event = self.context.instance.get_latest_materialization_event(key) if key else None
            materialization = event.asset_materialization if event else None
            seconds = materialization.metadata.get(EXECUTION_SECONDS) if materialization else None
            if seconds is not None and isinstance(seconds.value, (int, float)):
                usual[task.task_key] = float(seconds.value)
        return usual

    def _compute(self, finished: TaskFinished) -> str:
        """Where the task ran: its compute in the job spec, plus the cluster runs/get names."""
        task = self.spec.task(finished.task_key)
        return task.compute_description(finished.cluster_id, all_purpose=self.workflow.compute == "all_purpose")

    @staticmethod
    def _metadata(finished: TaskFinished, handle: RunHandle) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "databricks_job_id": handle.job_id,
            "databricks_run_id": handle.run_id,
            "databricks_task_run_id": finished.task_run_id,
            "databricks_run_url": dg.MetadataValue.url(handle.run_page_url),
        }
        if finished.cluster_id:
            meta["databricks_cluster_id"] = finished.cluster_id
        if finished.setup_seconds is not None:
            meta["setup_duration_s"] = finished.setup_seconds
        if finished.execution_seconds is not None:
            meta[EXECUTION_SECONDS] = finished.execution_seconds
        if finished.attempt_number:  # Databricks retried the task (max_retries)
            meta["databricks_attempt_number"] = finished.attempt_number
        return meta


def _over(run: Run) -> bool:
    return bool(run.state and run.state.life_cycle_state in TERMINAL_LIFE_CYCLE)


def _repairable(run: Run) -> bool:
    """Ended TERMINATED without success (a run that never started its tasks is started anew instead)."""
    state = run.state
    if not state or not state.life_cycle_state or state.life_cycle_state.value != "TERMINATED":
        return False
    return not (state.result_state and state.result_state.value == "SUCCESS")
