"""File-arrival sensors on DBFS (`dbfs:/...`) and Unity Catalog volumes (`/Volumes/...`).

`build_file_sensor` watches a path recursively through the Databricks SDK and requests a
materialization of its target when a matching file (or a `_SUCCESS`-style marker) appears
or changes. Each tick lists the tree (DBFS has no "changed since" API), then a pure planning
step (`plan_tick`) decides what to trigger against a small JSON cursor (`FileCursor`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import dagster as dg
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    Cancelled,
    DatabricksError,
    DeadlineExceeded,
    InternalError,
    NotFound,
    PermissionDenied,
    TemporarilyUnavailable,
    TooManyRequests,
    Unauthenticated,
)
from databricks.sdk.service.files import DbfsAPI

TRIGGER_FILE_TAG = "dbx_assets/trigger_file"
TRIGGER_COUNT_TAG = "dbx_assets/trigger_file_count"
_MAX_LOGGED_SKIPS = 20

# ---------------------------------------------------------------------------------------
# Paths and listing
# ---------------------------------------------------------------------------------------


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


def is_volume_path(path: str) -> bool:
    return normalize_path(path).startswith("/Volumes/")


@dataclass(frozen=True, order=True)
class FileVersion:
    """One observed state of a file; a change in mtime or size is a new version."""

    mtime_ms: int
    path: str  # normalized, see normalize_path
    size: int

    @property
    def key(self) -> list[int]:
        return [self.mtime_ms, self.size]

    @property
    def run_key(self) -> str:
        return f"{self.path}@{self.mtime_ms}:{self.size}"


def list_files(client: WorkspaceClient, watch_path: str) -> Iterator[FileVersion]:
    """Every file under `watch_path`, recursively. Raises NotFound if the root is missing.

    A subdirectory that vanishes between listing its parent and listing it is ignored (a
    writer cleaned up); only the root's absence is reported.
    """
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
    for info in DbfsAPI(client.api_client).list(path[len("dbfs:") :]):
        yield bool(info.is_dir), FileVersion(
            mtime_ms=int(info.modification_time or 0), path=normalize_path(info.path or ""), size=int(info.file_size or 0)
        )


def _list_volume_dir(client: WorkspaceClient, path: str) -> Iterator[tuple[bool, FileVersion]]:
    # list_directory_contents follows next_page_token itself (1000 entries a page).
    for entry in client.files.list_directory_contents(path):
        yield bool(entry.is_directory), FileVersion(
            mtime_ms=int(entry.last_modified or 0),
            path=normalize_path((entry.path or "").rstrip("/")),
            size=int(entry.file_size or 0),
        )


# ---------------------------------------------------------------------------------------
# Cursor and planning (pure logic)
# ---------------------------------------------------------------------------------------


@dataclass
class FileCursor:
    """What the sensor remembers between ticks, kept small however large the directory.

    - `floor` (ms): every file version with a modification time below it has been handled.
      It trails the newest handled modification time by `lookback_seconds`, so it only
      moves over files that were already seen.
    - `seen`: {path: [mtime_ms, size]} for handled versions at or above the floor — the few
      files that share the newest timestamps, so a file landing in the same millisecond as
      one already handled is still caught, and a file that reappears unchanged is not.
    - `pending`: {path: [mtime_ms, size]} for matching files not yet stable (modified within
      `settle_seconds`, or changed since the previous tick). They are re-checked every tick
      whatever the floor, so the floor can move past a file that is still being written.

    Size is O(files modified within the lookback + files being written), not O(directory):
    a 10,000-file directory leaves a cursor of a few hundred bytes. `max_seen` caps `seen`
    (raising the floor to the newest `max_seen` timestamps) for pathological bursts.
    """

    floor: int = 0
    seen: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)

    VERSION = 1

    @classmethod
    def from_json(cls, raw: Optional[str]) -> "FileCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        if data.get("v") != cls.VERSION:
            raise ValueError(f"Unknown file-sensor cursor version {data.get('v')!r}; reset the sensor's cursor.")
        return cls(floor=int(data["floor"]), seen=dict(data["seen"]), pending=dict(data["pending"]))

    def to_json(self) -> str:
        return json.dumps(
            {"v": self.VERSION, "floor": self.floor, "seen": self.seen, "pending": self.pending},
            separators=(",", ":"),
            sort_keys=True,
        )

    def is_handled(self, f: FileVersion) -> bool:
        if f.path in self.pending:
            return False
        return self.seen.get(f.path) == f.key or f.mtime_ms < self.floor


@dataclass(frozen=True)
class TickPlan:
    """The outcome of one tick before it is turned into Dagster objects."""

    to_trigger: list[FileVersion]  # stable, new versions, oldest first
    waiting: list[FileVersion]  # new versions not yet stable
    cursor: FileCursor


def plan_tick(
    cursor: FileCursor,
    candidates: Iterable[FileVersion],
    *,
    now_ms: int,
    settle_ms: int,
    lookback_ms: int = 0,
    max_groups: Optional[int] = None,
    group_of: Callable[[FileVersion], Optional[str]] = lambda f: f.path,
    max_seen: int = 1000,
) -> TickPlan:
    """Decide which candidate file versions to handle now, and the next cursor.

    Stable new versions are taken oldest first. `group_of` names the run a file belongs to
    (its partition, or the file itself; None = skipped, no run); taking stops before the file
    that would open group number `max_groups + 1`. What is left stays above the floor and is
    taken on the next tick, so a backlog drains without being lost.
    """
    present = {}
    fresh: list[FileVersion] = []
    for f in candidates:
        present[f.path] = f
        if not cursor.is_handled(f):
            fresh.append(f)
    fresh.sort()

    pending: dict[str, list[int]] = {}
    stable: list[FileVersion] = []
    for f in fresh:
        recently_modified = now_ms - f.mtime_ms < settle_ms
        changed_since_last_tick = f.path in cursor.pending and cursor.pending[f.path] != f.key
        if recently_modified or changed_since_last_tick:
            pending[f.path] = f.key
        else:
            stable.append(f)

    taken: list[FileVersion] = []
    groups: set[str] = set()
    left_over: Optional[FileVersion] = None
    for f in stable:
        group = group_of(f)
        if group is not None and group not in groups:
            if max_groups is not None and len(groups) >= max_groups:
                left_over = f
                break
            groups.add(group)
        taken.append(f)

    seen = dict(cursor.seen)
    for f in taken:
        seen[f.path] = f.key
    newest = max([cursor.floor] + [v[0] for v in seen.values()])
    floor = max(cursor.floor, newest - lookback_ms)
    if len(seen) > max_seen:
        floor = max(floor, sorted((v[0] for v in seen.values()), reverse=True)[max_seen - 1])
    if left_over is not None:
        # The backlog sorts at or after left_over: keep the floor at or below it (but never
        # lower than before, which would resurrect handled files below the old floor).
        floor = max(cursor.floor, min(floor, left_over.mtime_ms))
        # The only backlog files that can sit below the floor are formerly pending ones;
        # keep them pending so they are not mistaken for handled.
        for f in stable[len(taken) :]:
            if f.mtime_ms < floor:
                pending[f.path] = f.key
    seen = {p: v for p, v in seen.items() if v[0] >= floor}
    # A pending file that disappeared is simply forgotten.
    pending = {p: v for p, v in pending.items() if p in present}
    waiting = [f for f in fresh if f.path in pending]
    return TickPlan(to_trigger=taken, waiting=waiting, cursor=FileCursor(floor, seen, pending))


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

_TRANSIENT_API_ERRORS = (TooManyRequests, InternalError, TemporarilyUnavailable, DeadlineExceeded, Cancelled)


def is_transient(err: BaseException) -> bool:
    """Worth retrying on the next tick: throttling, 5xx, timeouts, dropped connections."""
    if isinstance(err, _TRANSIENT_API_ERRORS):
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

TargetSelection = Union[dg.AssetSelection, str, dg.AssetKey, Sequence[Union[str, dg.AssetKey]]]


def default_target() -> dg.AssetSelection:
    """The ingest asset and everything downstream of it."""
    return dg.AssetSelection.assets("bronze_orders").downstream()


def build_file_sensor(
    *,
    name: str,
    watch_path: str,
    target: Optional[TargetSelection] = None,
    pattern: str = "*",
    marker: Optional[str] = None,
    partition_template: Optional[str] = None,
    partitions_def: Optional[dg.PartitionsDefinition] = None,
    settle_seconds: float = 30,
    lookback_seconds: float = 0,
    max_runs_per_tick: Optional[int] = 100,
    minimum_interval_seconds: int = 30,
    resource_key: str = "databricks",
    api_retry_seconds: int = 15,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: Optional[str] = None,
) -> dg.SensorDefinition:
    """A sensor that materializes `target` when files land under `watch_path`.

    Args:
        watch_path: `dbfs:/...` (DBFS 2.0 API) or `/Volumes/<catalog>/<schema>/<volume>/...`
            (Files API), listed recursively each tick.
        target: assets to materialize; default `bronze_orders` and everything downstream.
        pattern: glob on the file name (or on the path below `watch_path` if it has a `/`).
        marker: e.g. `_SUCCESS`: only marker files trigger (`pattern` is ignored); the run is
            about the marker's directory, written completely before the marker.
        partition_template: e.g. `dbfs:/landing/orders/date={partition}/_SUCCESS`; maps a
            trigger file to a partition key of `partitions_def`. Files that do not match, or
            whose key is not a partition, are skipped (logged) and not retried.
        settle_seconds: a file modified more recently than this, or whose size/mtime changed
            since the previous tick, waits until stable.
        lookback_seconds: keep remembering handled files this far below the newest one, to
            catch files that become visible late with an older mtime (e.g. moved in place).
        max_runs_per_tick: bound on run requests per tick; the backlog continues next tick.
        api_retry_seconds: the SDK's retry budget for one tick's calls (not the 300 s default),
            so an outage skips the tick quickly and the next tick retries.
    """
    if marker and "/" in marker:
        raise ValueError(f"marker must be a file name like '_SUCCESS', not a path: {marker!r}")
    if (partition_template is None) != (partitions_def is None):
        raise ValueError(f"Sensor {name}: partition_template and partitions_def go together; set both or neither.")
    root = normalize_path(watch_path)
    partition_regex = template_regex(partition_template) if partition_template else None
    selection = default_target() if target is None else target

    def matches(f: FileVersion) -> bool:
        if marker:
            return posixpath.basename(f.path) == marker
        relative = f.path[len(root) :].lstrip("/")
        return fnmatch.fnmatchcase(relative if "/" in pattern else posixpath.basename(f.path), pattern)

    def resolve(f: FileVersion, context: dg.SensorEvaluationContext) -> tuple[Optional[str], Optional[str]]:
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
        target=selection,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={resource_key},
        description=description or f"Materializes on new or changed files under {root} ({marker or pattern}).",
    )
    def _file_sensor(context: dg.SensorEvaluationContext):
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

        resolved = {f.path: resolve(f, context) for f in candidates if not cursor.is_handled(f)}
        plan = plan_tick(
            cursor,
            candidates,
            now_ms=int(time.time() * 1000),
            settle_ms=int(settle_seconds * 1000),
            lookback_ms=int(lookback_seconds * 1000),
            max_groups=max_runs_per_tick,
            group_of=lambda f: resolved[f.path][0],
        )
        run_requests = _run_requests(plan.to_trigger, resolved, partitioned=partition_regex is not None, marker=marker)
        skipped = [resolved[f.path][1] for f in plan.to_trigger if resolved[f.path][0] is None]
        for reason in skipped[:_MAX_LOGGED_SKIPS]:
            context.log.info(reason)
        if len(skipped) > _MAX_LOGGED_SKIPS:
            context.log.info(f"... and {len(skipped) - _MAX_LOGGED_SKIPS} more skipped files.")
        if plan.waiting:
            context.log.info(
                f"{len(plan.waiting)} file(s) still being written, waiting to settle: "
                + ", ".join(f.path for f in plan.waiting[:5])
            )
        skip_reason = None
        if not run_requests:
            skip_reason = (
                f"{len(plan.waiting)} file(s) under {root} still settling."
                if plan.waiting
                else f"No new or changed files under {root} ({len(candidates)} matching files known)."
            )
        return dg.SensorResult(run_requests=run_requests, cursor=plan.cursor.to_json(), skip_reason=skip_reason)

    return _file_sensor


def sensor_client(resource, retry_seconds: int) -> WorkspaceClient:
    """The resource's workspace and credentials with a short retry budget for one tick.

    The budget must be set before the client is built: building it already makes a call
    (the SDK's host-metadata probe) that would otherwise retry for the resource's 300 s.
    """
    return resource.get_client_with_retry_timeout(retry_seconds)


def _run_requests(
    files: list[FileVersion],
    resolved: dict[str, tuple[Optional[str], Optional[str]]],
    *,
    partitioned: bool,
    marker: Optional[str],
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
