"""The workflow as one subsettable Dagster multi-asset: any selection of its assets becomes one
Databricks run on shared job clusters, each asset reported as its task ends."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

from collections.abc import Iterator
from typing import Any

import dagster as dg

from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.execution import WorkflowExecution

DEFAULT_POOL = "databricks"


def build_workflow_assets(
    workflow: Workflow,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    backfill_policy: dg.BackfillPolicy | None = None,
    pool: str = DEFAULT_POOL,
    resource_key: str = "databricks",
) -> dg.AssetsDefinition:
    """One multi-asset for the whole workflow; Dagster's subsetting picks the tasks to run.

    The `pool` caps how many of these steps run at once across the instance (Databricks caps
    concurrent runs per workspace too).
    """

    @dg.multi_asset(
        name=workflow.name,
        specs=workflow.asset_specs(),
        check_specs=workflow.check_specs(),
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy if partitions_def is not None else None,
        pool=pool,
        op_tags={"kind": "databricks"},
        required_resource_keys={resource_key},
        # The job's own parameters, set per run (unset: the deploy target's catalog/schema/deployment, else
        # the job's default).
        config_schema={
            name: dg.Field(str, is_required=False, description=f"Job parameter {name} (the job's default: {default!r})")
            for name, default in workflow.parameters.items()
        }
        or None,
    )
    def _workflow(context: dg.AssetExecutionContext) -> Iterator[Any]:
        databricks: DatabricksResource = getattr(context.resources, resource_key)
        execution = workflow.execution_type or WorkflowExecution  # an existing job's step runs it as it is
        yield from execution(workflow, context, databricks).run()

    return _workflow
