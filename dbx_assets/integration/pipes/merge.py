"""Folding what a task reported through Pipes into the task's one report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from dbx_assets.integration.sources.base import Selection, SourceTask, TaskReport


def merge_reported(task: SourceTask, results: Sequence[Any], report: TaskReport, selection: Selection) -> TaskReport:
    """`report` (a finished task's events from its source) with what the task reported through
    Pipes: the metadata and data version of its materializations merged into the one
    materialization of each of its assets (a step yields one per asset), its selected asset check
    results added after them. A report about an asset or check the task does not own fails the
    task's assets, naming both."""
    key = task.task_key
    owned = ", ".join(sorted(a.to_user_string() for a in task.asset_keys))
    errors: list[str] = []
    metadata: dict[dg.AssetKey, dict[str, Any]] = {}
    versions: dict[dg.AssetKey, dg.DataVersion] = {}
    checks: list[dg.AssetCheckResult] = []
    for result in results:
        asset = result.asset_key
        if isinstance(result, dg.MaterializeResult) and asset is not None:
            if asset not in task.asset_keys:
                errors.append(
                    f"task {key} reported a materialization of asset {asset.to_user_string()} through Dagster "
                    f"Pipes, but it materializes only {owned}"
                )
                continue
            metadata.setdefault(asset, {}).update(result.metadata or {})
            if result.data_version is not None:
                versions[asset] = result.data_version
        elif isinstance(result, dg.AssetCheckResult) and asset is not None:
            check_key = dg.AssetCheckKey(asset, result.check_name or "")
            if check_key not in task.check_keys:
                errors.append(
                    f"task {key} reported check '{result.check_name}' on asset {asset.to_user_string()} through "
                    f"Dagster Pipes, which is not one of its declared checks "
                    f"({', '.join(sorted(c.name for c in task.check_keys)) or 'none'}): declare it with checks=[...]"
                )
            elif check_key in selection.checks:
                checks.append(result)
    events: list[dg.MaterializeResult | dg.AssetCheckResult] = []
    for event in report.events:
        asset = event.asset_key
        if isinstance(event, dg.MaterializeResult) and asset is not None and (asset in metadata or asset in versions):
            event = dg.MaterializeResult(
                asset_key=asset,
                metadata={**(event.metadata or {}), **metadata.get(asset, {})},
                data_version=versions.get(asset, event.data_version),
            )
        events.append(event)
    merged = TaskReport(events=[*events, *checks], failures=dict(report.failures))
    if errors:
        why = "; ".join(errors)
        merged.events = [e for e in merged.events if e.asset_key not in task.asset_keys]
        merged.failures.update({a: why for a in task.asset_keys & selection.assets})
    return merged
