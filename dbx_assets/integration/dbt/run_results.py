"""dbt's run_results.json -> Dagster events, following dagster-dbt's semantics.

- A model that dbt built (success / no-op / reused) -> MaterializeResult.
- A test -> AssetCheckResult: passed only on "pass"; a failing `severity: warn` test has
  status "warn" -> passed=False, severity WARN; "fail"/"error" -> passed=False, severity ERROR.
  Skipped tests yield nothing (dagster-dbt's CLI path emits no result for them either).
- A model that failed, errored, was skipped or never ran -> an entry in `failures`
  (asset key -> dbt's message), so the caller can fail exactly those assets.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import dagster as dg

MODEL_BUILT_STATUSES = frozenset({"success", "no-op", "reused"})
TEST_FAILED_STATUSES = frozenset({"fail", "error", "warn"})
NODE_FAILED_STATUSES = frozenset({"error", "fail"})
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class DbtModelOutcome:
    """One node (model or test) of a dbt invocation, as run_results.json reports it."""

    unique_id: str
    name: str
    resource_type: str  # "model", "test", "seed", "snapshot"
    status: str  # success | error | skipped | pass | fail | warn | ...
    message: str | None
    execution_time: float | None
    rows_affected: int | None
    failures: int | None  # failing rows of a test

    @property
    def built(self) -> bool:
        return self.status in MODEL_BUILT_STATUSES


def read_outcomes(run_results: Mapping[str, Any]) -> dict[str, DbtModelOutcome]:
    """unique_id -> outcome, for every result in run_results.json (dbt-core schema v5/v6)."""
    outcomes: dict[str, DbtModelOutcome] = {}
    for result in run_results.get("results", []):
        unique_id = result["unique_id"]
        rows = (result.get("adapter_response") or {}).get("rows_affected")
        outcomes[unique_id] = DbtModelOutcome(
            unique_id=unique_id,
            name=_node_name(unique_id),
            resource_type=unique_id.split(".", 1)[0],
            status=str(result.get("status")),
            message=result.get("message"),
            execution_time=result.get("execution_time"),
            rows_affected=int(rows) if isinstance(rows, (int, float)) and rows >= 0 else None,
            failures=result.get("failures"),
        )
    return outcomes


def run_results_from_artifacts(archive: bytes | IO[bytes]) -> dict[str, Any]:
    """run_results.json from the tar(.gz) that `runs/get-output` -> dbt_output.artifacts_link serves,
    read as a stream (the download's body as it arrives; nothing but run_results.json is kept).

    The shallowest one wins: it is the invocation's own target/ (deeper copies can come from
    packages or nested projects); equal depths are decided by name, so the choice is stable.
    """
    stream = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    best: tuple[tuple[int, list[str]], bytes] | None = None
    names: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                names.append(member.name)
                if member.name.rsplit("/", 1)[-1] != "run_results.json":
                    continue
                rank = (len(_parts(member.name)), _parts(member.name))
                if best is None or rank < best[0]:
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file member always has content
                    best = (rank, extracted.read())
    except tarfile.TarError as err:
        size = f" ({len(archive)} bytes)" if isinstance(archive, bytes) else ""
        raise ValueError(f"The dbt artifacts archive is not a tar archive{size}: {err}") from None
    if best is None:
        listed = ", ".join(sorted(names)[:10]) or "no files"
        raise ValueError(
            f"The dbt artifacts archive has no run_results.json (did the dbt command run at all?); it holds: {listed}."
        )
    return json.loads(best[1])


def _parts(member_name: str) -> list[str]:
    """Path parts of a tar member: `target/x` and `./target/x` are the same file."""
    return [part for part in member_name.split("/") if part not in ("", ".")]


class RunResultsTranslator:
    """Maps run_results unique_ids to asset/check keys using the manifest the specs came from."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        key_by_unique_id: Mapping[str, dg.AssetKey],
        check_key_by_unique_id: Mapping[str, dg.AssetCheckKey],
    ):
        self._manifest = manifest
        self._key_by_unique_id = key_by_unique_id
        self._check_key_by_unique_id = check_key_by_unique_id

    def events(
        self,
        run_results: Mapping[str, Any],
        *,
        selected_models: Iterable[dg.AssetKey],
        selected_checks: Iterable[dg.AssetCheckKey],
        metadata: Mapping[str, Any],
    ) -> tuple[list[dg.MaterializeResult | dg.AssetCheckResult], dict[dg.AssetKey, str]]:
        selected_models = set(selected_models)
        selected_checks = set(selected_checks)
        outcomes = read_outcomes(run_results)
        invocation_id = (run_results.get("metadata") or {}).get("invocation_id")
        events: list[dg.MaterializeResult | dg.AssetCheckResult] = []
        failures: dict[dg.AssetKey, str] = {}
        seen_models: set[dg.AssetKey] = set()

        for outcome in outcomes.values():
            common = {
                **metadata,
                "unique_id": outcome.unique_id,
                "status": outcome.status,
                **({"invocation_id": invocation_id} if invocation_id else {}),
                **({"execution_duration": outcome.execution_time} if outcome.execution_time is not None else {}),
            }
            key = self._key_by_unique_id.get(outcome.unique_id)
            if key is not None and key in selected_models:
                seen_models.add(key)
                if outcome.built:
                    rows = {"rows_affected": outcome.rows_affected} if outcome.rows_affected is not None else {}
                    events.append(dg.MaterializeResult(asset_key=key, metadata={**common, **rows}))
                else:
                    failures[key] = self._failure_message(outcome, outcomes)
                continue
            check_key = self._check_key_by_unique_id.get(outcome.unique_id)
            if check_key is not None and check_key in selected_checks and outcome.status != "skipped":
                extra: dict[str, Any] = {}
                if outcome.failures is not None:
                    extra["dagster_dbt/failed_row_count"] = outcome.failures
                if outcome.status != "pass" and outcome.message:
                    extra["message"] = _clip(outcome.message)
                events.append(
                    dg.AssetCheckResult(
                        asset_key=check_key.asset_key,
                        check_name=check_key.name,
                        passed=outcome.status == "pass",
                        severity=dg.AssetCheckSeverity.WARN
                        if outcome.status == "warn"
                        else dg.AssetCheckSeverity.ERROR,
                        metadata={**common, **extra},
                    )
                )

        for key in sorted(selected_models - seen_models, key=lambda k: k.to_user_string()):
            failures[key] = (
                f"dbt did not run {key.to_user_string()}: it is not in run_results.json "
                "(the dbt command's --select did not include it, or dbt stopped before it)."
            )
        return events, failures

    def _failure_message(self, outcome: DbtModelOutcome, outcomes: Mapping[str, DbtModelOutcome]) -> str:
        if outcome.status != "skipped":
            return _clip(
                outcome.message or f"dbt {outcome.resource_type} {outcome.name} ended with status {outcome.status}."
            )
        culprits = self._failed_upstreams(outcome.unique_id, outcomes)
        if not culprits:
            return (
                f"dbt skipped {outcome.resource_type} {outcome.name} (an upstream node failed or the run was stopped)."
            )
        return f"skipped because upstream {', '.join(culprits)} failed"

    def _failed_upstreams(self, unique_id: str, outcomes: Mapping[str, DbtModelOutcome]) -> list[str]:
        """The failed models/tests among the node's ancestors (tests count via the node they test)."""
        parent_map: Mapping[str, list[str]] = self._manifest.get("parent_map", {})
        ancestors: set[str] = set()
        stack = list(parent_map.get(unique_id, []))
        while stack:
            node = stack.pop()
            if node not in ancestors:
                ancestors.add(node)
                stack.extend(parent_map.get(node, []))
        culprits = []
        for other in outcomes.values():
            if other.status not in NODE_FAILED_STATUSES:
                continue
            tested = other.resource_type == "test" and ancestors.intersection(parent_map.get(other.unique_id, []))
            if other.unique_id in ancestors or tested:
                culprits.append(f"{'dbt test' if other.resource_type == 'test' else other.resource_type} {other.name}")
        return sorted(culprits)


def _node_name(unique_id: str) -> str:
    """`model.pkg.name[.v1]` / `test.pkg.name[.hash]` -> name."""
    parts = unique_id.split(".")
    return parts[2] if len(parts) > 2 else unique_id


def _clip(message: str) -> str:
    message = message.strip()
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"
