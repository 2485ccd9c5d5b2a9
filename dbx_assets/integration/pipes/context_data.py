"""The Pipes context one task reads: the step's context narrowed to the task's own assets, so that
`pipes.report_asset_materialization()` in a notebook needs no asset key and cannot name another
task's asset by accident. Built from the public context API (Dagster's own builder covers every
selected asset of the step, which is the wrong scope for a task)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg
from dagster_pipes import PipesContextData, PipesDataProvenance


def task_context_data(
    context: dg.AssetExecutionContext, asset_keys: Iterable[dg.AssetKey], extras: dict[str, Any]
) -> PipesContextData:
    keys = sorted(set(asset_keys) & set(context.selected_asset_keys), key=lambda k: k.to_user_string())
    code_versions = context.assets_def.code_versions_by_key
    partitioned = context.has_partition_key or context.has_partition_key_range
    key_range = context.partition_key_range if partitioned else None
    return PipesContextData(
        asset_keys=[k.to_escaped_user_string() for k in keys],
        code_version_by_asset_key={k.to_escaped_user_string(): code_versions.get(k) for k in keys},
        provenance_by_asset_key={k.to_escaped_user_string(): _provenance(context, k) for k in keys},
        partition_key=context.partition_key if context.has_partition_key else None,
        partition_key_range={"start": key_range.start, "end": key_range.end} if key_range else None,
        partition_time_window=_time_window(context) if partitioned else None,
        run_id=context.run.run_id,
        job_name=context.job_name,
        retry_number=context.retry_number,
        extras=extras,
    )


def _provenance(context: dg.AssetExecutionContext, key: dg.AssetKey) -> PipesDataProvenance | None:
    provenance = context.get_asset_provenance(key)
    if provenance is None:
        return None
    return PipesDataProvenance(
        code_version=provenance.code_version,
        input_data_versions={k.to_escaped_user_string(): v.value for k, v in provenance.input_data_versions.items()},
        is_user_provided=provenance.is_user_provided,
    )


def _time_window(context: dg.AssetExecutionContext) -> Any:
    try:
        window = context.partition_time_window
    except dg.DagsterInvariantViolationError:  # partitioned, but not by time
        return None
    return {"start": window.start.isoformat(), "end": window.end.isoformat()}
