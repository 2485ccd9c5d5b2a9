"""One Dagster step of an existing job: check the job still is what was snapshot, run it with
`only=` the selected tasks, report each asset as its task ends (the workflow's own watcher).

Staleness is decided, not guessed around: the job's current settings (one jobs/get) are
fingerprinted as the snapshot's were; if they differ the step fails before starting anything,
naming the job, what changed and the command that refreshes the snapshot. Running anyway would
report assets of tasks that may no longer do what the asset graph says (renamed, removed,
re-wired), so a changed job is never run under an old graph.

Job parameters: the job gets only the dbx_assets parameters it declares (`partition_key`,
`partition_start`, `partition_end`, `dagster_run_id`, `dagster_launch_id`), so run-now never sends
Databricks an undeclared parameter. Declaring `dagster_run_id` and `dagster_launch_id` on the job
(default "") gives it what our own jobs have: re-executing a failed Dagster run repairs the
Databricks run it started, and a restarted step reattaches by launch identity. Without them a
restarted step reattaches through the idempotency token, and a step retry starts a new run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from databricks.sdk.errors import NotFound, ResourceDoesNotExist
from databricks.sdk.service.jobs import Run

from dbx_assets.integration.existing_jobs.snapshot import FINGERPRINTED_SETTINGS, ExistingJob, fingerprint
from dbx_assets.integration.jobs.model import DAGSTER_RUN_PARAMETER, LAUNCH_PARAMETER
from dbx_assets.integration.jobs.runner import TaskFinished
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.execution import WorkflowExecution


class ExistingJobExecution(WorkflowExecution):
    """The step of a workflow that is an existing job (`jobs.ExistingJobWorkflow`, whose `existing`
    says which job and snapshot)."""

    def __init__(self, workflow: Workflow, context: dg.AssetExecutionContext, databricks: DatabricksResource):
        existing = getattr(workflow, "existing", None)
        if not isinstance(existing, ExistingJob):
            raise TypeError(f"Workflow '{workflow.name}' is not an existing job.")
        super().__init__(workflow, context, databricks)
        self.existing = existing
        self.declared = set(existing.job.parameter_names)
        self.sends_launch_parameter = LAUNCH_PARAMETER in self.declared

    def _job_id(self) -> int:
        job = self.existing.job
        host = self.databricks.workspace_host()
        fix = f"Re-run `{self.existing.refresh_command}` and reload the code location."
        try:
            current = self.client.jobs.get(job.job_id)
        except (NotFound, ResourceDoesNotExist):
            raise dg.Failure(
                description=f"Databricks job '{job.name}' ({job.job_id}) no longer exists in {host}; its assets "
                f"come from the snapshot {self.existing.snapshot_path}. {fix}"
            ) from None
        settings = current.settings.as_dict() if current.settings else {}
        if fingerprint(settings) != job.fingerprint:
            raise dg.Failure(
                description=f"Databricks job '{job.name}' ({job.job_id}) in {host} changed since its snapshot "
                f"{self.existing.snapshot_path} ({describe_changes(job.settings, settings)}), so it was not run: "
                f"its assets may no longer match its tasks. {fix}"
            )
        return job.job_id

    def _job_parameters(self) -> dict[str, str]:
        return {k: v for k, v in super()._job_parameters().items() if k in self.declared}

    def _previous_databricks_run(self, job_id: int) -> Run | None:
        if DAGSTER_RUN_PARAMETER not in self.declared:
            return None  # nothing tells which Databricks run an earlier Dagster run started
        return super()._previous_databricks_run(job_id)

    def _token(self, *extra: str) -> str:
        if not self.sends_launch_parameter:  # a retry cannot tell its own new run: it starts one
            extra = (*extra, f"retry {self.context.retry_number}")
        return super()._token(*extra)

    def _compute(self, finished: TaskFinished) -> str:
        task = next((t for t in self.existing.job.tasks if t.get("task_key") == finished.task_key), {})
        cluster = finished.cluster_id or "unknown"
        if task.get("job_cluster_key"):
            return f"job cluster '{task['job_cluster_key']}' (cluster id {cluster})"
        if task.get("existing_cluster_id"):
            return f"existing cluster {task['existing_cluster_id']}"
        if task.get("new_cluster"):
            return f"the task's own cluster (cluster id {cluster})"
        if task.get("environment_key"):
            return f"serverless environment '{task['environment_key']}'"
        return "serverless" if not finished.cluster_id else f"cluster {cluster}"


def describe_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What changed in a job's fingerprinted settings, in a few words."""
    said: list[str] = []
    old = {t.get("task_key"): t for t in before.get("tasks") or []}
    new = {t.get("task_key"): t for t in after.get("tasks") or []}
    added, removed = sorted(set(new) - set(old), key=str), sorted(set(old) - set(new), key=str)
    changed = sorted((k for k in set(old) & set(new) if old[k] != new[k]), key=str)
    for what, keys in (("tasks added", added), ("tasks removed", removed), ("tasks changed", changed)):
        if keys:
            said.append(f"{what}: {', '.join(map(str, keys))}")
    for name in FINGERPRINTED_SETTINGS:
        if name != "tasks" and (before.get(name) or None) != (after.get(name) or None):
            said.append(f"{name} changed")
    return "; ".join(said) or "its settings changed"
