"""The file sensor's memory and its planning step: pure logic, no I/O, no Dagster.

Identity, not time: a *file version* is (path, size, modification time) exactly as the
workspace reports them. The sensor remembers every version it has handled for as long as
the file is present, so a file is found however old its mtime (archives copied in with
`cp -p`/`azcopy`, a late partition), and an unchanged file is never triggered twice. The
remote mtime is never compared with the local clock: a version is *stable* (complete)
once it has been observed unchanged on `settle_ticks` consecutive ticks, optionally also
spanning `settle_seconds` measured on the sensor's own clock (first sighting to now).

Bound. The cursor holds one entry per matching file currently present under the watch
path (handled or still settling) plus at most `max_retired` (default 10,000) handled
versions that are no longer present (deleted or rewritten; kept so that a file restored
unchanged is not triggered again). It is stored front-coded, delta-coded, zlib-compressed
and base64'd: under 1 byte per file for sequentially named files (about 1.6 KB at 10,000
and 13 KB at 100,000), about 40 bytes per file for random names such as UUIDs (about
390 KB at 10,000, 3.8 MB at 100,000); `python -m bench sensor_tick` prints both. Dagster
also copies the cursor into every tick record, so for large trees of random names narrow
the watch path or shorten the instance's tick retention. Beyond the caps:
  - more than `max_tracked` (default 100,000) matching files present: the tick fails with
    `CursorCapacityError` naming the counts and the fix (narrow the watch path/pattern or
    raise the cap); the stored cursor is left as it was, so nothing is triggered twice or
    lost, and the sensor resumes where it stopped once fixed.
  - more than `max_retired` retired versions: the oldest are forgotten and the tick says
    so; such a version, if it reappears unchanged, triggers again (a duplicate, never a
    miss — and Dagster itself skips a run request whose run key already ran).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CURSOR_VERSION = 2
HANDLED = 0  # `state` of an entry whose version was triggered (or deliberately skipped)
DEFAULT_MAX_TRACKED = 100_000
DEFAULT_MAX_RETIRED = 10_000


@dataclass(frozen=True, order=True)
class FileVersion:
    """One observed state of a file; a change in size or mtime is a new version."""

    mtime_ms: int  # first, so sorting versions puts the oldest first
    path: str  # normalized: `dbfs:/...` or `/Volumes/...`
    size: int

    @property
    def run_key(self) -> str:
        return f"{self.path}@{self.mtime_ms}:{self.size}"


@dataclass(frozen=True)
class Entry:
    """What the cursor knows about one present path."""

    size: int
    mtime_ms: int
    state: int  # HANDLED, or n >= 1: this version seen unchanged on n consecutive ticks
    first_seen_s: int = 0  # local clock, when this version was first seen (pending only)

    def same_version(self, f: FileVersion) -> bool:
        return self.size == f.size and self.mtime_ms == f.mtime_ms


@dataclass(frozen=True)
class LegacyV1:
    """A version-1 cursor, applied once: every version below `floor` or in `seen` was handled."""

    floor: int
    seen: dict[str, list[int]]

    def covers(self, f: FileVersion) -> bool:
        return f.mtime_ms < self.floor or self.seen.get(f.path) == [f.mtime_ms, f.size]


class CursorCapacityError(Exception):
    """More matching files are present than the cursor may remember exactly."""


@dataclass
class FileCursor:
    """path -> Entry for every matching file present at the last tick, plus retired versions.

    `retired` maps (path, size, mtime_ms) of handled versions that are no longer current to
    None, oldest first (a dict keeps insertion order and gives O(1) lookups).
    """

    files: dict[str, Entry] = field(default_factory=dict)
    retired: dict[tuple[str, int, int], None] = field(default_factory=dict)
    legacy: LegacyV1 | None = None
    notes: list[str] = field(default_factory=list)  # said once, when decoding

    @classmethod
    def from_json(cls, raw: str | None) -> FileCursor:
        """Decode a stored cursor. A version-1 cursor is migrated; an unreadable one is reset
        (with a note to log): every present file then counts as new, a duplicate not a miss."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            version = data.get("v") if isinstance(data, dict) else None
            if version == CURSOR_VERSION:
                return _decode_v2(data)
            if version == 1:
                legacy = LegacyV1(floor=int(data["floor"]), seen={p: list(v) for p, v in data["seen"].items()})
                return cls(
                    legacy=legacy,
                    notes=[
                        f"Migrated a version-1 file-sensor cursor: files present with mtime below {legacy.floor} ms "
                        f"or among its {len(legacy.seen)} remembered versions count as handled."
                    ],
                )
            problem = f"unknown version {version!r}"
        except (ValueError, KeyError, TypeError, zlib.error) as err:
            problem = f"{type(err).__name__}: {err}"
        return cls(notes=[f"Reset an unreadable file-sensor cursor ({problem[:200]}); present files count as new."])

    def to_json(self) -> str:
        return _encode_v2(self)


@dataclass(frozen=True)
class TickPlan:
    """The outcome of one tick before it is turned into Dagster objects."""

    to_trigger: list[FileVersion]  # stable new versions taken this tick, oldest first
    waiting: list[FileVersion]  # new versions not yet stable, or stable but over the run cap
    cursor: FileCursor
    notes: list[str]


def plan_tick(
    cursor: FileCursor,
    candidates: Iterable[FileVersion],
    *,
    now_s: int = 0,
    settle_ticks: int = 2,
    settle_seconds: float = 0,
    max_groups: int | None = None,
    group_of: Callable[[FileVersion], str | None] = lambda f: f.path,
    max_tracked: int = DEFAULT_MAX_TRACKED,
    max_retired: int = DEFAULT_MAX_RETIRED,
) -> TickPlan:
    """Decide which candidate versions to handle now, and the next cursor.

    A version never handled before is stable once seen unchanged on `settle_ticks`
    consecutive ticks (1 = at first sight, for markers written last) and, if
    `settle_seconds` > 0, at least that long after its first sighting by `now_s` (the
    sensor's clock only). Stable versions are taken oldest first; `group_of` names the run
    a file belongs to (its partition, or the file itself; None = skipped, no run), and at
    most `max_groups` groups are opened per tick. Stable versions not taken stay stable in
    the cursor and are taken on a later tick.
    """
    if settle_ticks < 1:
        raise ValueError(f"settle_ticks must be at least 1, got {settle_ticks}")
    present: dict[str, FileVersion] = {f.path: f for f in candidates}
    if len(present) > max_tracked:
        raise CursorCapacityError(
            f"{len(present)} matching files are present, more than the {max_tracked} this sensor remembers "
            "exactly; nothing was triggered and the cursor is unchanged. Narrow watch_path or pattern, "
            "or raise max_tracked_files."
        )
    notes = list(cursor.notes)
    retired = dict(cursor.retired)
    files: dict[str, Entry] = {}
    stable: list[FileVersion] = []
    unsettled: list[FileVersion] = []

    for path, known in cursor.files.items():
        if known.state == HANDLED and not (path in present and known.same_version(present[path])):
            retired[(path, known.size, known.mtime_ms)] = None  # deleted or rewritten

    for path, f in present.items():
        old = cursor.files.get(path)
        if old is not None and old.same_version(f):
            if old.state == HANDLED:
                files[path] = old
                continue
            entry = Entry(f.size, f.mtime_ms, min(old.state + 1, settle_ticks), old.first_seen_s)
        elif (path, f.size, f.mtime_ms) in retired or (cursor.legacy is not None and cursor.legacy.covers(f)):
            # Restored unchanged, or handled under a version-1 cursor: the same version, no trigger.
            retired.pop((path, f.size, f.mtime_ms), None)
            files[path] = Entry(f.size, f.mtime_ms, HANDLED)
            continue
        else:
            entry = Entry(f.size, f.mtime_ms, 1, now_s)
        files[path] = entry
        if entry.state >= settle_ticks and now_s - entry.first_seen_s >= settle_seconds:
            stable.append(f)
        else:
            unsettled.append(f)

    stable.sort()
    taken: list[FileVersion] = []
    over_cap: list[FileVersion] = []
    groups: set[str] = set()
    for f in stable:
        group = group_of(f)
        if group is not None and group not in groups:
            if max_groups is not None and len(groups) >= max_groups:
                over_cap.append(f)  # stays stable in the cursor: taken on a later tick
                continue
            groups.add(group)
        taken.append(f)
    for f in taken:
        files[f.path] = Entry(f.size, f.mtime_ms, HANDLED)

    if len(retired) > max_retired:
        dropped = len(retired) - max_retired
        retired = dict.fromkeys(list(retired)[dropped:])
        notes.append(
            f"Forgot the {dropped} oldest of the deleted or rewritten versions (cap {max_retired}); "
            "if one is restored unchanged it triggers again."
        )
    waiting = sorted(unsettled) + over_cap
    return TickPlan(to_trigger=taken, waiting=waiting, cursor=FileCursor(files, retired), notes=notes)


# ---------------------------------------------------------------------------------------
# Encoding: {"v": 2, "n": <entries>, "z": base64(zlib(json columns))}
# ---------------------------------------------------------------------------------------
# Columns in path order: paths front-coded against the previous path (shared prefix length +
# suffix), sizes, mtimes as deltas from the previous entry's, states, and first-seen times of
# the pending entries. Sorted paths and small deltas are what zlib compresses well.


def _encode_v2(cursor: FileCursor) -> str:
    paths = sorted(cursor.files)
    shared: list[int] = []
    suffixes: list[str] = []
    sizes: list[int] = []
    mtime_deltas: list[int] = []
    states: list[int] = []
    first_seen: list[int] = []
    previous_path, previous_mtime = "", 0
    for path in paths:
        e = cursor.files[path]
        n = _common_prefix(previous_path, path)
        shared.append(n)
        suffixes.append(path[n:])
        sizes.append(e.size)
        mtime_deltas.append(e.mtime_ms - previous_mtime)
        states.append(e.state)
        if e.state != HANDLED:
            first_seen.append(e.first_seen_s)
        previous_path, previous_mtime = path, e.mtime_ms
    body = {
        "c": shared,
        "x": suffixes,
        "s": sizes,
        "m": mtime_deltas,
        "k": states,
        "f": first_seen,
        "r": [list(key) for key in cursor.retired],
    }
    packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)
    return json.dumps(
        {"v": CURSOR_VERSION, "n": len(paths), "z": base64.b64encode(packed).decode("ascii")}, separators=(",", ":")
    )


def _decode_v2(data: dict) -> FileCursor:
    body = json.loads(zlib.decompress(base64.b64decode(data["z"])))
    files: dict[str, Entry] = {}
    previous_path, previous_mtime = "", 0
    pending_times = iter(body["f"])
    for n, suffix, size, delta, state in zip(body["c"], body["x"], body["s"], body["m"], body["k"], strict=True):
        path = previous_path[:n] + suffix
        mtime = previous_mtime + delta
        files[path] = Entry(size, mtime, state, 0 if state == HANDLED else next(pending_times))
        previous_path, previous_mtime = path, mtime
    retired = {(str(p), int(s), int(m)): None for p, s, m in body["r"]}
    return FileCursor(files=files, retired=retired)


def _common_prefix(a: str, b: str) -> int:
    # Binary search on slice equality: O(log len) comparisons done in C, not a Python loop per char.
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
