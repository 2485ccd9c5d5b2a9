"""File-arrival sensors on DBFS (`dbfs:/...`) and Unity Catalog volumes (`/Volumes/...`).

`build_file_sensor` watches a path recursively through the Databricks SDK and requests a
materialization of its target once for every new file version (path, size, mtime) that
matches, or for every `_SUCCESS`-style marker, whatever its mtime. Each tick lists the tree
(DBFS has no "changed since" API), then the pure planning step `plan_tick` (in
`file_cursor`) decides what to trigger against the cursor, which remembers every handled
version of the files present (its bound is stated in `file_cursor`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import dagster as dg
import requests

from dbx_assets.integration.file_cursor import (
    DEFAULT_MAX_RETIRED,
    DEFAULT_MAX_TRACKED,
    CursorCapacityError,
    FileCursor,
    FileVersion,
    TickPlan,
    plan_tick,
)

__all__ = [
    "TRIGGER_COUNT_TAG",
    "TRIGGER_FILE_TAG",
    "CursorCapacityError",
    "FileCursor",
    "FileVersion",
    "TickPlan",
    "WatchPathAccessError",
    "build_file_sensor",
    "list_files",
    "normalize_path",
    "plan_tick",
    "template_regex",
]

TRIGGER_FILE_TAG = "dbx_assets/trigger_file"
TRIGGER_COUNT_TAG = "dbx_assets/trigger_file_count"
_MAX_LOGGED_SKIPS = 20

# ---------------------------------------------------------------------------------------
# Paths and listing
# ---------------------------------------------------------------------------------------

if TYPE_CHECKING:  # imported where used: the definitions load without the SDK
    from databricks.sdk import WorkspaceClient


def normalize_path(path: str) -> str:
    """One spelling per file: `/Volumes/...` for volumes, `dbfs:/...` for everything else."""
    raw = path[len("dbfs:") :] if path.startswith("dbfs:") else path
    if not raw.startswith("/"):
        raise ValueError(f"Watch paths must be absolute (dbfs:/... or /Volumes/...): {path!r}")
    clean = posixpath.normpath(raw)
    clean = "/" + clean.lstrip("/")
    if clean == "/Volumes" or clean.startswith("/Volumes/"):
        return clean
    return "dbfs:" + clean


def list_files(client: WorkspaceClient, watch_path: str) -> Iterator[FileVersion]:
    """Every file under `watch_path`, recursively. Raises NotFound if the root is missing.

    A subdirectory that vanishes between listing its parent and listing it is ignored (a
    writer cleaned up); only the root's absence is reported.
    """
    from databricks.sdk.errors import NotFound

    root = normalize_path(watch_path)
    lister = _list_volume_dir if root.startswith("/Volumes/") else _list_dbfs_dir
    queue = [root]
    first = True
    while queue:
        directory = queue.pop()
        try:
            entries = list(lister(client, directory))
        except NotFound:
            if first:
                raise
            continue
        first = False
        for is_dir, version in entries:
            if is_dir:
                queue.append(version.path)
            else:
                yield version


def _list_dbfs_dir(client: WorkspaceClient, path: str) -> Iterator[tuple[bool, FileVersion]]:
    # The plain DbfsAPI (not w.dbfs, whose list() adds a get-status call per directory).
    from databricks.sdk.service.files import DbfsAPI

    for info in DbfsAPI(client.api_client).list(path[len("dbfs:") :]):
        yield (
            bool(info.is_dir),
            FileVersion(
                mtime_ms=int(info.modification_time or 0),
                path=normalize_path(info.path or ""),
                size=int(info.file_size or 0),
            ),
        )


def _list_volume_dir(client: WorkspaceClient, path: str) -> Iterator[tuple[bool, FileVersion]]:
    # list_directory_contents follows next_page_token itself (1000 entries a page).
    for entry in client.files.list_directory_contents(path):
        yield (
            bool(entry.is_directory),
            FileVersion(
                mtime_ms=int(entry.last_modified or 0),
                path=normalize_path((entry.path or "").rstrip("/")),
                size=int(entry.file_size or 0),
            ),
        )


def template_regex(template: str) -> re.Pattern[str]:
    """`dbfs:/landing/date={partition}/*.csv` -> a regex with a `partition` group.

    `*` and `?` match within one path segment, like a glob.
    """
    normalized = normalize_path(template.replace("{partition}", "__PARTITION__"))
    out = []
    for piece in re.split(r"(__PARTITION__|\*|\?)", normalized):
        if piece == "__PARTITION__":
            out.append(r"(?P<partition>[^/]+)")
        elif piece == "*":
            out.append(r"[^/]*")
        elif piece == "?":
            out.append(r"[^/]")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out))


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def is_transient(err: BaseException) -> bool:
    """Worth retrying on the next tick: throttling, 5xx, timeouts, dropped connections."""
    from databricks.sdk.errors import (
        Cancelled,
        DatabricksError,
        DeadlineExceeded,
        InternalError,
        TemporarilyUnavailable,
        TooManyRequests,
    )

    if isinstance(err, (TooManyRequests, InternalError, TemporarilyUnavailable, DeadlineExceeded, Cancelled)):
        return True
    if type(err) is DatabricksError:  # unmapped status, e.g. a 502 page from a gateway
        return True
    return isinstance(err, (TimeoutError, requests.ConnectionError, requests.Timeout, ConnectionError))


class WatchPathAccessError(Exception):
    """The identity the sensor runs as may not list the watched path."""


def _identity(client: WorkspaceClient) -> str:
    try:
        me = client.current_user.me()
        return me.user_name or me.display_name or "an unnamed identity"
    except Exception as err:  # the token itself may be what is rejected
        return f"an unknown identity ({type(err).__name__}: credentials rejected?)"


# ---------------------------------------------------------------------------------------
# The sensor
# ---------------------------------------------------------------------------------------

# What Dagster coerces to an asset selection (a bare AssetKey or a list mixing keys and strings it rejects).
TargetSelection = dg.AssetSelection | str | Sequence[str] | Sequence[dg.AssetKey]


def build_file_sensor(
    *,
    name: str,
    watch_path: str,
    target: TargetSelection,
    pattern: str = "*",
    marker: str | None = None,
    partition_template: str | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    settle_ticks: int | None = None,
    settle_seconds: float = 0,
    max_runs_per_tick: int | None = 100,
    max_tracked_files: int = DEFAULT_MAX_TRACKED,
    max_remembered_deletions: int = DEFAULT_MAX_RETIRED,
    minimum_interval_seconds: int = 30,
    resource_key: str = "databricks",
    api_retry_seconds: int = 15,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
) -> dg.SensorDefinition:
    """A sensor that materializes `target` once per new file version under `watch_path`.

    A file version is (path, size, mtime) as the workspace reports them; it triggers once
    however old its mtime (files copied in with their original timestamps are found) and
    never again while it stays unchanged, across daemon restarts. Nothing compares a remote
    timestamp with the local clock.

    Args:
        watch_path: `dbfs:/...` (DBFS 2.0 API) or `/Volumes/<catalog>/<schema>/<volume>/...`
            (Files API), listed recursively each tick.
        target: the assets to materialize (an AssetSelection, a selection string, or a list of asset keys
            or of strings).
        pattern: glob on the file name (or on the path below `watch_path` if it has a `/`).
        marker: e.g. `_SUCCESS`: only marker files trigger (`pattern` is ignored); the run is
            about the marker's directory, written completely before the marker.
        partition_template: e.g. `dbfs:/landing/orders/date={partition}/_SUCCESS`; maps a
            trigger file to a partition key of `partitions_def`. Files that do not match, or
            whose key is not a partition, are skipped (logged) and not retried.
        settle_ticks: a new version triggers once it has been listed unchanged on this many
            consecutive ticks. Default 1 with `marker` (the marker is written last, so react at
            first sight), else 2 (a file still growing shows a new size on the next tick).
        settle_seconds: additionally, at least this long between a version's first sighting
            and its trigger, both read from the sensor's own clock (never the file's mtime).
            Default 0; the tick interval already spaces the sightings.
        max_runs_per_tick: bound on run requests per tick; the backlog continues next tick.
        max_tracked_files: how many matching files may be present; beyond it the tick fails
            naming the fix, with the cursor unchanged (see `file_cursor` for the bound).
        max_remembered_deletions: handled versions no longer present that are remembered, so
            a file restored unchanged does not trigger again; beyond it the oldest are
            forgotten (logged) and would trigger again if restored.
        api_retry_seconds: the SDK's retry budget for one tick's calls (not the 300 s default),
            so an outage skips the tick quickly and the next tick retries.
    """
    if marker and "/" in marker:
        raise ValueError(f"marker must be a file name like '_SUCCESS', not a path: {marker!r}")
    if (partition_template is None) != (partitions_def is None):
        raise ValueError(f"Sensor {name}: partition_template and partitions_def go together; set both or neither.")
    if target is None:
        raise ValueError(f"Sensor {name}: target is required (the assets to materialize when files land).")
    root = normalize_path(watch_path)
    partition_regex = template_regex(partition_template) if partition_template else None
    ticks_to_settle = settle_ticks if settle_ticks is not None else (1 if marker else 2)
    if ticks_to_settle < 1:
        raise ValueError(f"Sensor {name}: settle_ticks must be at least 1, got {settle_ticks}.")

    def matches(f: FileVersion) -> bool:
        if marker:
            return posixpath.basename(f.path) == marker
        relative = f.path[len(root) :].lstrip("/")
        return fnmatch.fnmatchcase(relative if "/" in pattern else posixpath.basename(f.path), pattern)

    def resolve(f: FileVersion, context: dg.SensorEvaluationContext) -> tuple[str | None, str | None]:
        """(run group, None) or (None, why the file is skipped)."""
        if partition_regex is None:
            return f.path, None
        assert partitions_def is not None
        match = partition_regex.fullmatch(f.path)
        if not match:
            return None, f"Skipped {f.path}: it does not match the partition template {partition_template}."
        key = match.group("partition")
        if not _has_partition(partitions_def, key, context):
            return None, f"Skipped {f.path}: {key!r} is not a partition of the target's partitions definition."
        return key, None

    @dg.sensor(
        name=name,
        target=target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={resource_key},
        description=description or f"Materializes on new or changed files under {root} ({marker or pattern}).",
    )
    def _file_sensor(context: dg.SensorEvaluationContext):
        from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated  # a tick's, not the load's

        resource = getattr(context.resources, resource_key)
        client = sensor_client(resource, api_retry_seconds)
        cursor = FileCursor.from_json(context.cursor)
        try:
            candidates = [f for f in list_files(client, root) if matches(f)]
        except NotFound:
            return dg.SkipReason(f"Watch path {root} does not exist yet; create it or fix the sensor's watch_path.")
        except (PermissionDenied, Unauthenticated) as err:
            raise WatchPathAccessError(
                f"Sensor {name} may not list {root} as {_identity(client)}: {err.error_code or type(err).__name__}. "
                "Grant that identity read access to the path, or run the sensor with one that has it."
            ) from None
        except Exception as err:
            if not is_transient(err):
                raise
            return dg.SkipReason(
                f"Listing {root} failed transiently ({type(err).__name__}: {str(err)[:200]}); "
                "cursor unchanged, the next tick retries."
            )

        resolved: dict[str, tuple[str | None, str | None]] = {}

        def group_of(f: FileVersion) -> str | None:
            if f.path not in resolved:  # only stable new versions are resolved
                resolved[f.path] = resolve(f, context)
            return resolved[f.path][0]

        plan = plan_tick(
            cursor,
            candidates,
            now_s=int(time.time()),  # local clock only, compared with itself (settle_seconds)
            settle_ticks=ticks_to_settle,
            settle_seconds=settle_seconds,
            max_groups=max_runs_per_tick,
            group_of=group_of,
            max_tracked=max_tracked_files,
            max_retired=max_remembered_deletions,
        )
        for note in plan.notes:
            context.log.warning(f"Sensor {name}: {note}")
        _log_plan(context, plan, resolved)
        run_requests = _run_requests(plan.to_trigger, resolved, partitioned=partition_regex is not None, marker=marker)
        skip_reason = None
        if not run_requests:
            skip_reason = (
                f"{len(plan.waiting)} new file version(s) under {root} waiting to settle or for a later tick."
                if plan.waiting
                else f"No new or changed files under {root} ({len(candidates)} matching files known)."
            )
        return dg.SensorResult(run_requests=run_requests, cursor=plan.cursor.to_json(), skip_reason=skip_reason)

    return _file_sensor


def _log_plan(
    context: dg.SensorEvaluationContext, plan: TickPlan, resolved: dict[str, tuple[str | None, str | None]]
) -> None:
    skipped = [resolved[f.path][1] for f in plan.to_trigger if resolved[f.path][0] is None]
    for reason in skipped[:_MAX_LOGGED_SKIPS]:
        context.log.info(reason)
    if len(skipped) > _MAX_LOGGED_SKIPS:
        context.log.info(f"... and {len(skipped) - _MAX_LOGGED_SKIPS} more skipped files.")
    if plan.waiting:
        context.log.info(
            f"{len(plan.waiting)} new file version(s) waiting to settle or for a later tick: "
            + ", ".join(f.path for f in plan.waiting[:5])
        )


def sensor_client(resource, retry_seconds: int) -> WorkspaceClient:
    """The resource's workspace and credentials with a short retry budget for one tick.

    The budget must be set before the client is built: building it already makes a call
    (the SDK's host-metadata probe) that would otherwise retry for the resource's 300 s.
    """
    return resource.get_client_with_retry_timeout(retry_seconds)


def _run_requests(
    files: list[FileVersion],
    resolved: dict[str, tuple[str | None, str | None]],
    *,
    partitioned: bool,
    marker: str | None,
) -> list[dg.RunRequest]:
    """One run per group: per partition when partitioned (all of a tick's files for that
    partition together), otherwise per file version."""
    groups: dict[str, list[FileVersion]] = {}
    for f in files:
        group = resolved[f.path][0]
        if group is not None:
            groups.setdefault(group, []).append(f)
    out = []
    for group, members in groups.items():
        if len(members) == 1:
            run_key = members[0].run_key
        else:
            run_key = f"{group}:" + hashlib.sha1("\n".join(m.run_key for m in members).encode()).hexdigest()[:12]
        subject = posixpath.dirname(members[-1].path) if marker else members[-1].path
        out.append(
            dg.RunRequest(
                run_key=run_key,
                partition_key=group if partitioned else None,
                tags={TRIGGER_FILE_TAG: subject, TRIGGER_COUNT_TAG: str(len(members))},
            )
        )
    return out


def _has_partition(partitions_def: dg.PartitionsDefinition, key: str, context: dg.SensorEvaluationContext) -> bool:
    try:
        if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
            return partitions_def.has_partition_key(key, dynamic_partitions_store=context.instance)
        return partitions_def.has_partition_key(key)
    except Exception:  # unparseable keys raise in some definitions
        return False
