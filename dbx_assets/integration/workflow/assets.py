"""The workflow as one subsettable Dagster multi-asset: any selection of its notebooks and dbt
models becomes one Databricks run on shared job clusters, each asset reported as its task ends.
"""


import graphlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import requests
from dagster._core.errors import DagsterExecutionInterruptedError

from dbx_assets.integration.sources.notebook import NOTEBOOKS_DIR, NotebookAsset, load_notebooks
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.workflow.deploy import WorkflowDeployer, WorkspaceFile
from dbx_assets.integration.workflow.model import (
    DEFAULT_CLUSTER_SPEC,
    DEFAULT_JOB_CLUSTER_KEY,
    WorkflowDefinitionError,
    WorkflowSpec,
    WorkflowTask,
    validate_cluster_spec,
)
from dbx_assets.integration.workflow.runner import RunHandle, TaskFinished, WorkflowRunner, idempotency_token

if TYPE_CHECKING:
    from dbx_assets.integration.dbt.project import DbtProjectAssets

DBT_TASK_KEY = "dbt_build"
RUN_ID_TAG = "dbx_assets/databricks_run_id"
JOB_ID_TAG = "dbx_assets/databricks_job_id"
DEFAULT_POOL = "databricks"
# How Databricks (and the local workspace) report a task whose notebook path does not exist.
_MISSING_NOTEBOOK = re.compile(r"Notebook not found|Unable to access the notebook|RESOURCE_DOES_NOT_EXIST", re.IGNORECASE)
Compute = Literal["job_cluster", "all_purpose"]


@dataclass
class Workflow:
    """Notebooks (+ optionally a dbt project) deployed as one Databricks job named `name`."""

    name: str
    notebooks: Sequence[NotebookAsset]
    dbt: "DbtProjectAssets | None" = None  # noqa: UP037 (runtime-evaluated by dagster)
    job_clusters: Mapping[str, dict[str, Any]] = field(default_factory=lambda: {DEFAULT_JOB_CLUSTER_KEY: DEFAULT_CLUSTER_SPEC})
    compute: Compute = "job_cluster"
    external_deps: Sequence[str] = ()
    notebooks_dir: Any = NOTEBOOKS_DIR

    def __post_init__(self) -> None:
        self.loaded = load_notebooks(self.notebooks, self.notebooks_dir)
        self._validate()

    # -- definitions-load validation -----------------------------------------------------------
    def _validate(self) -> None:
        seen: dict[dg.AssetKey, str] = {}
        for nb in self.notebooks:
            if nb.asset_key in seen:
                raise WorkflowDefinitionError(
                    f"Asset key '{nb.key}' is declared twice (notebooks {seen[nb.asset_key]} and {nb.notebook}). "
                    "Give each notebook asset its own key."
                )
            seen[nb.asset_key] = nb.notebook
        dbt_models = self.dbt.model_keys() if self.dbt else set()
        for key in dbt_models & set(seen):
            raise WorkflowDefinitionError(f"Asset key '{key.to_user_string()}' is both a notebook and a dbt model.")
        known = set(seen) | dbt_models | {dg.AssetKey.from_user_string(k) for k in self.external_deps}
        for nb in self.notebooks:
            for dep in nb.dep_keys:
                if dep not in known:
                    raise WorkflowDefinitionError(
                        f"Notebook asset '{nb.key}' ({nb.notebook}) depends on unknown asset '{dep.to_user_string()}'. "
                        "Declare it as a notebook, a dbt model, or list it in external_deps."
                    )
            if nb.job_cluster not in self.job_clusters:
                raise WorkflowDefinitionError(
                    f"Notebook asset '{nb.key}' names job cluster '{nb.job_cluster}', which the workflow does not "
                    f"define (defined: {', '.join(sorted(self.job_clusters))})."
                )
        for key, spec in self.job_clusters.items():
            validate_cluster_spec(spec, f"Job cluster '{key}' of workflow '{self.name}'")
        if self.compute == "all_purpose" and DEFAULT_JOB_CLUSTER_KEY not in self.job_clusters:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' uses compute='all_purpose', which creates one cluster from the "
                f"'{DEFAULT_JOB_CLUSTER_KEY}' cluster spec; add job_clusters['{DEFAULT_JOB_CLUSTER_KEY}']."
            )
        try:
            list(graphlib.TopologicalSorter({t: set(deps) for t, deps in self._task_deps().items()}).static_order())
        except graphlib.CycleError as err:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has a dependency cycle between tasks {err.args[1]}: a notebook that reads a "
                "dbt model cannot also feed a dbt source."
            ) from None

    # -- the job --------------------------------------------------------------------------------
    def _task_deps(self) -> dict[str, tuple[str, ...]]:
        by_key = {nb.asset_key: nb.task_key for nb in self.notebooks}
        dbt_models = self.dbt.model_keys() if self.dbt else set()
        deps: dict[str, tuple[str, ...]] = {}
        for nb in self.notebooks:
            upstream = {by_key[d] for d in nb.dep_keys if d in by_key}
            upstream |= {DBT_TASK_KEY for d in nb.dep_keys if d in dbt_models}
            deps[nb.task_key] = tuple(sorted(upstream))
        if self.dbt:
            deps[DBT_TASK_KEY] = tuple(sorted(by_key[k] for k in self.dbt.upstream_keys() if k in by_key))
        return deps

    def spec(self, workspace_root: str, dbt_target: str) -> WorkflowSpec:
        deps = self._task_deps()
        tasks = [nb.task(workspace_root=workspace_root, depends_on=deps[nb.declaration.task_key]) for nb in self.loaded]
        if self.dbt:
            payload = self.dbt.task_payload(workspace_project_dir=f"{workspace_root}/dbt_project", target=dbt_target)
            tasks.append(WorkflowTask(DBT_TASK_KEY, "dbt", payload, depends_on=deps[DBT_TASK_KEY],
                                      libraries=self.dbt.task_libraries(target=dbt_target)))
        return WorkflowSpec(name=self.name, tasks=tuple(tasks), job_clusters=dict(self.job_clusters))

    def files(self) -> dict[str, WorkspaceFile]:
        files = {nb.declaration.workspace_relative_path: nb.workspace_file() for nb in self.loaded}
        if self.dbt:
            for rel, content in self.dbt.project_files().items():
                files[f"dbt_project/{rel}"] = WorkspaceFile(f"dbt_project/{rel}", content)
        return files

    def task_keys_for(self, assets: set[dg.AssetKey], checks: set[dg.AssetCheckKey]) -> list[str]:
        keys = [nb.task_key for nb in self.notebooks if nb.asset_key in assets]
        if self.dbt and ((assets & self.dbt.model_keys()) or checks):
            keys.append(DBT_TASK_KEY)
        return keys

    def asset_key_of(self, task_key: str) -> dg.AssetKey | None:
        return next((nb.asset_key for nb in self.notebooks if nb.task_key == task_key), None)

    def specs(self) -> list[dg.AssetSpec]:
        return [nb.spec() for nb in self.loaded] + (list(self.dbt.specs) if self.dbt else [])

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return list(self.dbt.check_specs) if self.dbt else []


def build_workflow_assets(
    workflow: Workflow,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    backfill_policy: dg.BackfillPolicy | None = None,
    pool: str = DEFAULT_POOL,
) -> dg.AssetsDefinition:
    """One multi-asset for the whole workflow; Dagster's subsetting picks the tasks to run."""

    @dg.multi_asset(
        name=workflow.name,
        specs=workflow.specs(),
        check_specs=workflow.check_specs(),
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy if partitions_def is not None else None,
        pool=pool,
        op_tags={"kind": "databricks"},
    )
    def _workflow(context: dg.AssetExecutionContext, databricks: DatabricksResource) -> Iterator[Any]:
        yield from WorkflowExecution(workflow, context, databricks).run()

    return _workflow


class WorkflowExecution:
    """One step's worth of work: deploy, start/reattach/repair, report, and cancel on terminate."""

    def __init__(self, workflow: Workflow, context: dg.AssetExecutionContext, databricks: DatabricksResource):
        self.workflow = workflow
        self.context = context
        self.databricks = databricks
        try:
            self.client = databricks.get_client()
        except Exception as err:
            raise (databricks.connection_failure(err) or err) from None
        self.runner = WorkflowRunner(self.client, log=context.log)
        self.selected = set(context.selected_asset_keys)
        self.selected_checks = set(context.selected_asset_check_keys)
        self.task_keys = workflow.task_keys_for(self.selected, self.selected_checks)

    def run(self) -> Iterator[Any]:
        spec = self.workflow.spec(self.databricks.workspace_root, self.databricks.dbt_target)
        deployer = WorkflowDeployer(self.client, self.databricks.workspace_root, log=self.context.log)
        if self.workflow.compute == "all_purpose":
            yield from self._run_on_all_purpose_cluster(spec, deployer)
            return
        try:
            deployed = deployer.deploy(spec, self.workflow.files())
            handle = self._start(deployed.job_id)
        except Exception as err:
            raise (self.databricks.connection_failure(err) or err) from None
        self.context.instance.add_run_tags(
            self.context.run.run_id, {RUN_ID_TAG: str(handle.run_id), JOB_ID_TAG: str(deployed.job_id)}
        )
        yield from self._watch_and_report(handle)

    def _run_on_all_purpose_cluster(self, spec: WorkflowSpec, deployer: WorkflowDeployer) -> Iterator[Any]:
        """Create an all-purpose cluster, run the selection on it as one submitted run, and
        delete the cluster whatever happens (the create → run → terminate flow of seed 001)."""
        try:
            deployer.sync_files(self.workflow.files())
        except Exception as err:
            raise (self.databricks.connection_failure(err) or err) from None
        cluster_id = self.runner.create_cluster(
            spec.job_clusters[DEFAULT_JOB_CLUSTER_KEY], name=f"{self.workflow.name}-{self.context.run.run_id[:8]}"
        )
        try:
            handle = self.runner.submit(
                f"{self.workflow.name} ({self.context.run.run_id[:8]})",
                [self._submit_task(spec.task(k), cluster_id) for k in self.task_keys],
                token=self._token("all_purpose"),
            )
            self.context.instance.add_run_tags(self.context.run.run_id, {RUN_ID_TAG: str(handle.run_id)})
            yield from self._watch_and_report(handle)
        finally:
            self.runner.delete_cluster(cluster_id)

    def _submit_task(self, task: WorkflowTask, cluster_id: str) -> dict[str, Any]:
        """A job task as a runs/submit task: no job parameters there, so they go into the task itself."""
        settings = task.settings(cluster_override={"existing_cluster_id": cluster_id})
        settings["depends_on"] = [d for d in settings.get("depends_on", []) if d["task_key"] in self.task_keys]
        if "notebook_task" in settings:
            settings["notebook_task"]["base_parameters"] = {
                **settings["notebook_task"].get("base_parameters", {}), **self._job_parameters()}
        if "dbt_task" in settings:
            settings["dbt_task"]["commands"] = self._dbt_commands() or settings["dbt_task"]["commands"]
        return settings

    def _token(self, *extra: str) -> str:
        step_key = self.context.op_execution_context.get_step_execution_context().step.key
        return idempotency_token(self.context.run.run_id, step_key, *extra)

    def _watch_and_report(self, handle: RunHandle) -> Iterator[Any]:
        self.context.log.info(
            f"Databricks run {handle.run_id} ({'repair ' + str(handle.repair_id) if handle.repair_id else 'tasks'}: "
            f"{', '.join(self.task_keys)}): {handle.run_page_url}"
        )
        failures: dict[str, str] = {}
        try:
            for finished in self.runner.watch(handle):
                yield from self._report(finished, handle, failures)
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            self.runner.cancel(handle)
            raise
        if failures:
            lines = "\n".join(f"- {k}: {v}" for k, v in sorted(failures.items()))
            raise dg.Failure(
                description=f"{len(failures)} asset(s) failed in Databricks run {handle.run_id} "
                f"({handle.run_page_url}):\n{lines}",
                metadata={"databricks_run_url": dg.MetadataValue.url(handle.run_page_url)},
            )

    # -- start, reattach or repair ------------------------------------------------------------
    def _start(self, job_id: int) -> RunHandle:
        previous = self._previous_databricks_run(job_id)
        if previous is not None:
            done = self.runner.succeeded_tasks(previous)
            rerun = [k for k in self.task_keys if k not in done]
            if rerun:
                if len(rerun) < len(self.task_keys):
                    self.context.log.info(
                        f"Not rerunning {', '.join(k for k in self.task_keys if k in done)}: they succeeded in "
                        f"Databricks run {previous}, which is being repaired."
                    )
                self.task_keys = rerun
                return self.runner.repair(previous, rerun, dbt_commands=self._dbt_commands())
        handle = self.runner.run_now(
            job_id, self.task_keys, job_parameters=self._job_parameters(), token=self._token(str(job_id)),
            dbt_commands=self._dbt_commands(),
        )
        if handle.reattached and self.context.retry_number > 0:
            run = self.runner.get_run(handle.run_id)
            if run.state and run.state.result_state and run.state.result_state.value != "SUCCESS":
                return self.runner.repair(handle.run_id, self.task_keys, dbt_commands=self._dbt_commands())
        return handle

    def _previous_databricks_run(self, job_id: int) -> int | None:
        """On re-execution of a failed Dagster run, the Databricks run to repair (same job, finished, failed)."""
        parent_id = self.context.run.parent_run_id
        if not parent_id:
            return None
        parent = self.context.instance.get_run_by_id(parent_id)
        if parent is None or parent.tags.get(JOB_ID_TAG) != str(job_id) or RUN_ID_TAG not in parent.tags:
            return None
        run_id = int(parent.tags[RUN_ID_TAG])
        run = self.runner.get_run(run_id)
        state = run.state
        if not state or not state.life_cycle_state or state.life_cycle_state.value != "TERMINATED":
            return None
        if state.result_state and state.result_state.value == "SUCCESS":
            return None
        return run_id

    def _partition_values(self) -> dict[str, str]:
        if not self.context.has_partition_key and not self.context.has_partition_key_range:
            return {}
        key_range = self.context.partition_key_range
        single = key_range.start == key_range.end
        return {
            "partition_key": key_range.start if single else "",
            "partition_start": key_range.start,
            "partition_end": key_range.end,
        }

    def _job_parameters(self) -> dict[str, str]:
        return self._partition_values()

    def _dbt_commands(self) -> list[str] | None:
        dbt = self.workflow.dbt
        if dbt is None or DBT_TASK_KEY not in self.task_keys:
            return None
        models = self.selected & dbt.model_keys()
        return [dbt.build_command(models, self.selected_checks, target=self.databricks.dbt_target,
                                  vars=self._partition_values())]

    # -- reporting ----------------------------------------------------------------------------
    def _common_metadata(self, finished: TaskFinished, handle: RunHandle) -> dict[str, Any]:
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
            meta["execution_duration_s"] = finished.execution_seconds
        return meta

    def _report(self, finished: TaskFinished, handle: RunHandle, failures: dict[str, str]) -> Iterator[Any]:
        if finished.task_key == DBT_TASK_KEY and self.workflow.dbt is not None:
            yield from self._report_dbt(finished, handle, failures)
            return
        key = self.workflow.asset_key_of(finished.task_key)
        if key is None or key not in self.selected:
            return
        if not finished.succeeded:
            error = self._explain_notebook_error(finished)
            failures[key.to_user_string()] = f"{finished.result_state}: {error} ({handle.run_page_url})"
            self.context.log.error(f"Asset {key.to_user_string()} failed in task {finished.task_key}: {error}")
            return
        metadata = self._common_metadata(finished, handle)
        metadata.update(exit_value_metadata(finished.output.notebook_output.result if finished.output and finished.output.notebook_output else None))
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)

    def _explain_notebook_error(self, finished: TaskFinished) -> str:
        """A notebook deleted from the workspace after deploy: say so, and that the next deploy restores it
        (the deployer checks the notebooks are still there before each run)."""
        if not _MISSING_NOTEBOOK.search(finished.error):
            return finished.error
        nb = next((n for n in self.workflow.notebooks if n.task_key == finished.task_key), None)
        if nb is None:
            return finished.error
        path = posixpath.join(self.databricks.workspace_root, nb.workspace_relative_path)
        return (f"notebook {path} is missing in the workspace (deleted after deploy?); the next materialization "
                f"uploads it again. Databricks said: {finished.error}")

    def _report_dbt(self, finished: TaskFinished, handle: RunHandle, failures: dict[str, str]) -> Iterator[Any]:
        dbt = self.workflow.dbt
        assert dbt is not None
        models = self.selected & dbt.model_keys()
        run_results = self._dbt_run_results(finished)
        if run_results is None:
            for key in models:
                failures[key.to_user_string()] = f"dbt task {finished.result_state}: {finished.error} ({handle.run_page_url})"
            return
        events, model_failures = dbt.events_from_run_results(
            run_results, selected_models=models, selected_checks=self.selected_checks,
            metadata=self._common_metadata(finished, handle),
        )
        yield from events
        for key, message in model_failures.items():
            failures[key.to_user_string()] = f"{message} ({handle.run_page_url})"

    def _dbt_run_results(self, finished: TaskFinished) -> dict | None:
        output = finished.output
        link = output.dbt_output.artifacts_link if output and output.dbt_output else None
        if not link:
            return None
        headers = output.dbt_output.artifacts_headers or {}
        response = requests.get(link, headers=headers, timeout=60)
        response.raise_for_status()
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.name.endswith("run_results.json"):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return json.loads(extracted.read())
        return None


def exit_value_metadata(result: str | None) -> dict[str, Any]:
    """A notebook's exit value: a JSON object's keys become entries; anything else stays text."""
    if result is None or result == "":
        return {}
    try:
        value = json.loads(result)
    except ValueError:
        return {"notebook_exit_value": dg.MetadataValue.text(result)}
    if not isinstance(value, dict):
        return {"notebook_exit_value": dg.MetadataValue.text(result)}
    meta: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, bool) or v is None:
            meta[str(k)] = dg.MetadataValue.text(str(v))
        elif isinstance(v, (int, float, str)):
            meta[str(k)] = v
        else:
            meta[str(k)] = dg.MetadataValue.json(v)
    return meta


