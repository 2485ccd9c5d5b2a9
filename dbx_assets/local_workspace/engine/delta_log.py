"""A Delta table's current state from its `_delta_log`, without a JVM: version, schema, partition
columns, properties, live files and their row counts, the last commit.

Read as the Delta protocol (PROTOCOL.md, "Action Reconciliation") defines it:

1. List `_delta_log/` once: commits `NNNNNNNNNNNNNNNNNNNN.json`, checkpoints (classic
   `N.checkpoint.parquet`, multi-part `N.checkpoint.o.p.parquet` when every part is there, UUID-named
   v2 `N.checkpoint.<uuid>.json|parquet` with their `_sidecars/`). The table's version is the newest
   commit (or checkpoint). The listing is authoritative; `_last_checkpoint` is only the hint object
   stores need to avoid a listing, and it can lag behind one.
2. Start from the newest complete checkpoint whose later commits are all present, reading only the
   checkpoint columns the state needs (engine/parquet_columns.py); then replay the JSON commits after
   it in order: the latest `protocol` and `metaData` win, a logical file (path, deletion vector id)
   is live after its latest `add` and gone after its latest `remove` (within one commit removes apply
   before adds: a valid commit never has both for one logical file). `commitInfo` is read only from
   the newest commit: checkpoints do not keep it.
3. A checkpoint that cannot be read (damaged, or a parquet feature the reader lacks) is skipped for an
   older one, then for all commits from version 0 when they are all still there.
4. When none of that works (e.g. commits before the only readable checkpoint were removed by log
   cleanup, `delta.logRetentionDuration`, 30 days by default), the snapshot says so rather than guess:
   the version is known, schema and properties come from the newest commits that carry them or from
   Delta's version checksum (`N.crc`, which Delta writes after each commit with the state's
   `numFiles`, `metadata`, `protocol` and, for small tables, `allFiles`), and what none of them gives
   is None with the reason in `unknown`.

Row count: the sum over live files of `stats.numRecords` minus the rows their deletion vector removes
(`deletionVector.cardinality`), as Delta answers COUNT(*) from statistics; None when any live file has
no `numRecords` (e.g. written with statistics off, or CONVERT TO DELTA ... NO STATISTICS).

Not read: commits a catalog has ratified but not yet published (`_staged_commits/`, catalog-managed
tables), log compaction files (the commits they summarise are still there), and the deletion vector
files themselves (their cardinality is in the log).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .parquet_columns import ParquetFile
from .parquet_footer import NotParquet, file_row_count

LOG_DIR = "_delta_log"
SIDECARS_DIR = "_sidecars"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_MULTIPART = re.compile(r"^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$")
_UUID_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.([0-9A-Za-z-]+)\.(json|parquet)$")
_CHECKSUM = re.compile(r"^(\d{20})\.crc$")


class DeltaLogError(Exception):
    """A `_delta_log` from which no version can be read (no commit yet, or damaged)."""


def is_delta_table(table_dir: Path) -> bool:
    return (table_dir / LOG_DIR).is_dir()


@dataclass(frozen=True)
class LiveFile:
    """One logical file of the current snapshot."""

    path: str  # URI-decoded: relative to the table dir, or absolute
    size: int | None
    num_records: int | None  # physical rows in the data file (stats.numRecords); None without stats
    deleted_records: int = 0  # rows its deletion vector removes

    @property
    def rows(self) -> int | None:
        return None if self.num_records is None else self.num_records - self.deleted_records

    def location(self, table_dir: Path) -> Path:
        return Path(self.path) if os.path.isabs(self.path) else table_dir / self.path


@dataclass(frozen=True)
class DeltaSnapshot:
    version: int
    min_reader_version: int | None = None
    min_writer_version: int | None = None
    reader_features: tuple[str, ...] = ()
    writer_features: tuple[str, ...] = ()
    table_id: str | None = None
    name: str | None = None
    description: str | None = None  # the table's COMMENT
    provider: str | None = None
    schema: dict | None = None  # the StructType JSON of metaData.schemaString
    partition_columns: tuple[str, ...] = ()
    configuration: dict[str, str] = field(default_factory=dict)
    created_time: int | None = None  # ms since the epoch (metaData.createdTime)
    files: tuple[LiveFile, ...] | None = None  # None when the state could not be reconstructed
    num_files: int | None = None
    size_in_bytes: int | None = None
    num_records: int | None = None
    last_commit_timestamp: int | None = None  # ms: the in-commit timestamp, else the commit file's mtime
    last_operation: str | None = None
    read_from: str = ""  # which log files gave the state, e.g. "checkpoint 10 + commits 11-14"
    unknown: str | None = None  # why num_records (or more) is None

    @property
    def fields(self) -> list[dict]:
        return list((self.schema or {}).get("fields") or [])


# -- the log's files --------------------------------------------------------------------------------
@dataclass
class _Listing:
    log: Path
    commits: dict[int, Path]
    checkpoints: dict[int, list[list[Path]]]  # version -> complete checkpoints (each a list of parts)
    checksums: dict[int, Path]

    @property
    def latest(self) -> int:
        versions = set(self.commits) | set(self.checkpoints)
        if not versions:
            raise DeltaLogError(f"{self.log} has no commits yet")
        return max(versions)

    def signature(self) -> tuple:
        newest = max(self.commits, default=-1)
        path = self.commits.get(newest)
        st = path.stat() if path else None
        return (newest, st.st_mtime_ns if st else 0, st.st_size if st else 0, tuple(sorted(self.checkpoints)))


def _list(log: Path) -> _Listing:
    commits: dict[int, Path] = {}
    checksums: dict[int, Path] = {}
    single: dict[int, list[list[Path]]] = {}
    parts: dict[tuple[int, int], dict[int, Path]] = {}
    try:
        names = os.listdir(log)
    except OSError as exc:
        raise DeltaLogError(f"cannot list {log}: {exc}") from None
    for name in names:
        if m := _COMMIT.match(name):
            commits[int(m[1])] = log / name
        elif m := _CHECKPOINT.match(name):
            single.setdefault(int(m[1]), []).append([log / name])
        elif m := _MULTIPART.match(name):
            parts.setdefault((int(m[1]), int(m[3])), {})[int(m[2])] = log / name
        elif m := _UUID_CHECKPOINT.match(name):
            single.setdefault(int(m[1]), []).insert(0, [log / name])  # a v2 checkpoint first
        elif m := _CHECKSUM.match(name):
            checksums[int(m[1])] = log / name
    for (version, total), found in parts.items():
        if len(found) == total and set(found) == set(range(1, total + 1)):  # a partial one is ignored
            single.setdefault(version, []).append([found[i] for i in range(1, total + 1)])
    return _Listing(log, commits, single, checksums)


# -- replay -----------------------------------------------------------------------------------------
def _stats_records(stats: Any) -> int | None:
    if isinstance(stats, str):
        try:
            stats = json.loads(stats)
        except ValueError:
            return None
    if isinstance(stats, dict):
        value = stats.get("numRecords")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _dv_id(dv: dict | None) -> str | None:
    """Delta's deletionVector.uniqueId: <storageType><pathOrInlineDv>[@<offset>]."""
    if not dv:
        return None
    unique = f"{dv.get('storageType') or ''}{dv.get('pathOrInlineDv') or ''}"
    return unique if dv.get("offset") is None else f"{unique}@{dv['offset']}"


class _State:
    def __init__(self, table_dir: Path):
        self.table_dir = table_dir
        self.protocol: dict | None = None
        self.metadata: dict | None = None
        self.files: dict[tuple[str, str | None], LiveFile] = {}
        self.commit_info: dict | None = None  # of the last commit applied

    def _path(self, raw: str) -> str:
        """A logical file's path as one key whichever way an action spelt it (relative, file: URI)."""
        if "://" in raw or raw.startswith("file:"):
            parsed = urlparse(raw)
            if parsed.scheme == "file":
                local = unquote(parsed.path)
                try:
                    return str(Path(local).relative_to(self.table_dir))
                except ValueError:
                    return local
            return raw
        return unquote(raw)

    def add(self, action: dict) -> None:
        dv = action.get("deletionVector") or None
        path = self._path(str(action.get("path")))
        records = _stats_records(action.get("stats"))
        if records is None and isinstance(action.get("stats_parsed"), dict):
            records = _stats_records(action["stats_parsed"])
        deleted = int((dv or {}).get("cardinality") or 0)
        size = action.get("size")
        self.files[(path, _dv_id(dv))] = LiveFile(path, int(size) if size is not None else None, records, deleted)

    def remove(self, action: dict) -> None:
        self.files.pop((self._path(str(action.get("path"))), _dv_id(action.get("deletionVector") or None)), None)

    def apply(self, actions: Iterable[dict]) -> None:
        """One commit: removes before adds (a valid commit never has both for one logical file)."""
        adds: list[dict] = []
        self.commit_info = None
        for action in actions:
            if "commitInfo" in action:
                self.commit_info = action["commitInfo"] if isinstance(action["commitInfo"], dict) else None
            elif "protocol" in action:
                self.protocol = action["protocol"]
            elif "metaData" in action:
                self.metadata = action["metaData"]
            elif "remove" in action:
                self.remove(action["remove"])
            elif "add" in action:
                adds.append(action["add"])
        for add in adds:
            self.add(add)


def _actions(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeltaLogError(f"cannot read {path.name}: {exc}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError:
            raise DeltaLogError(f"{path.name} line {n} is not JSON: the log is damaged") from None
        if isinstance(action, dict):
            out.append(action)
    return out


# -- checkpoints ------------------------------------------------------------------------------------
_ADD_COLUMNS = {
    "path": ("add", "path"),
    "size": ("add", "size"),
    "stats": ("add", "stats"),
    "numRecords": ("add", "stats_parsed", "numRecords"),
    "storageType": ("add", "deletionVector", "storageType"),
    "pathOrInlineDv": ("add", "deletionVector", "pathOrInlineDv"),
    "offset": ("add", "deletionVector", "offset"),
    "cardinality": ("add", "deletionVector", "cardinality"),
}


def _map_column(parquet: ParquetFile, prefix: tuple[str, ...]) -> list[dict | None]:
    leaves = parquet.leaves_under(prefix)
    keys = next((p for p in leaves if p[-1] == "key"), None)
    values = next((p for p in leaves if p[-1] == "value"), None)
    if keys is None or values is None:
        return [None] * parquet.num_rows
    return [
        None if k is None else {str(a): b for a, b in zip(k, v or [], strict=False)}
        for k, v in zip(parquet.column(keys), parquet.column(values), strict=True)
    ]


def _list_column(parquet: ParquetFile, prefix: tuple[str, ...]) -> list[list | None]:
    leaves = parquet.leaves_under(prefix)
    return parquet.column(leaves[0]) if len(leaves) == 1 else [None] * parquet.num_rows


def _parquet_actions(path: Path) -> Iterator[dict]:
    """The actions of one checkpoint (or sidecar) parquet file that the state needs."""
    parquet = ParquetFile(path)
    n = parquet.num_rows
    if parquet.has(("add", "path")):
        adds = {name: parquet.column(col) for name, col in _ADD_COLUMNS.items()}
        for i in range(n):
            if adds["path"][i] is None:
                continue
            dv = None
            if adds["storageType"][i] is not None:
                dv = {k: adds[k][i] for k in ("storageType", "pathOrInlineDv", "offset", "cardinality")}
            stats_parsed = {"numRecords": adds["numRecords"][i]} if adds["numRecords"][i] is not None else None
            yield {
                "add": {
                    "path": adds["path"][i],
                    "size": adds["size"][i],
                    "stats": adds["stats"][i],
                    "stats_parsed": stats_parsed,
                    "deletionVector": dv,
                }
            }
    if parquet.has(("metaData", "id")) or parquet.has(("metaData", "schemaString")):
        ids = parquet.column(("metaData", "id"))
        schema = parquet.column(("metaData", "schemaString"))
        rows = [i for i in range(n) if ids[i] is not None or schema[i] is not None]
        if rows:
            name, description, created = (
                parquet.column(("metaData", c)) for c in ("name", "description", "createdTime")
            )
            provider = parquet.column(("metaData", "format", "provider"))
            partitions = _list_column(parquet, ("metaData", "partitionColumns"))
            configuration = _map_column(parquet, ("metaData", "configuration"))
            i = rows[-1]
            yield {
                "metaData": {
                    "id": ids[i],
                    "name": name[i],
                    "description": description[i],
                    "format": {"provider": provider[i]},
                    "schemaString": schema[i],
                    "partitionColumns": partitions[i] or [],
                    "configuration": configuration[i] or {},
                    "createdTime": created[i],
                }
            }
    if parquet.has(("protocol", "minReaderVersion")):
        readers = parquet.column(("protocol", "minReaderVersion"))
        rows = [i for i in range(n) if readers[i] is not None]
        if rows:
            i = rows[-1]
            protocol: dict[str, Any] = {
                "minReaderVersion": readers[i],
                "minWriterVersion": parquet.column(("protocol", "minWriterVersion"))[i],
            }
            for key in ("readerFeatures", "writerFeatures"):
                features = _list_column(parquet, ("protocol", key))[i]
                if features is not None:
                    protocol[key] = features
            yield {"protocol": protocol}
    if parquet.has(("sidecar", "path")):
        for sidecar in parquet.column(("sidecar", "path")):
            if sidecar is not None:
                yield {"sidecar": {"path": sidecar}}


def _checkpoint_actions(parts: list[Path]) -> list[dict]:
    actions: list[dict] = []
    for part in parts:
        if part.suffix == ".json":
            actions.extend(_actions(part))
        else:
            actions.extend(_parquet_actions(part))
    sidecars = [a["sidecar"]["path"] for a in actions if "sidecar" in a]
    for sidecar in sidecars:  # v2 checkpoints keep their file actions in _delta_log/_sidecars/
        name = unquote(urlparse(sidecar).path).rsplit("/", 1)[-1]
        actions.extend(_parquet_actions(parts[0].parent / SIDECARS_DIR / name))
    return actions


# -- the snapshot -----------------------------------------------------------------------------------
def _span(first: int, last: int) -> str:
    if first > last:
        return "no commits after it"
    return f"commit {first}" if first == last else f"commits {first}-{last}"


def _last_commit(listing: _Listing, version: int, info: dict | None = None) -> tuple[int | None, str | None]:
    """(timestamp ms, operation) of the commit at `version`: Delta's commit timestamp is the in-commit
    timestamp when the table has them, else the commit file's modification time."""
    path = listing.commits.get(version)
    if path is None:
        return None, None
    try:
        if info is None:
            info = next((a["commitInfo"] for a in _actions(path) if isinstance(a.get("commitInfo"), dict)), {})
        mtime = int(path.stat().st_mtime * 1000)
    except (DeltaLogError, OSError):
        return None, None
    ict = (info or {}).get("inCommitTimestamp")
    operation = (info or {}).get("operation")
    return (ict if isinstance(ict, int) else mtime), (str(operation) if operation is not None else None)


def _snapshot(state: _State, version: int, read_from: str, listing: _Listing) -> DeltaSnapshot:
    files = tuple(sorted(state.files.values(), key=lambda f: f.path))
    without_stats = sum(1 for f in files if f.num_records is None)
    records = None if without_stats else sum(f.rows or 0 for f in files)
    sizes = [f.size for f in files]
    timestamp, operation = _last_commit(listing, version, state.commit_info)
    return DeltaSnapshot(
        version=version,
        **_protocol_fields(state.protocol),
        **_metadata_fields(state.metadata),
        files=files,
        num_files=len(files),
        size_in_bytes=None if None in sizes else sum(s or 0 for s in sizes),
        num_records=records,
        last_commit_timestamp=timestamp,
        last_operation=operation,
        read_from=read_from,
        unknown=(
            f"{without_stats} of {len(files)} live files have no statistics (numRecords)" if without_stats else None
        ),
    )


def _protocol_fields(protocol: dict | None) -> dict[str, Any]:
    protocol = protocol or {}
    return {
        "min_reader_version": protocol.get("minReaderVersion"),
        "min_writer_version": protocol.get("minWriterVersion"),
        "reader_features": tuple(str(f) for f in protocol.get("readerFeatures") or ()),
        "writer_features": tuple(str(f) for f in protocol.get("writerFeatures") or ()),
    }


def _metadata_fields(metadata: dict | None) -> dict[str, Any]:
    metadata = metadata or {}
    schema = None
    if metadata.get("schemaString"):
        try:
            schema = json.loads(metadata["schemaString"])
        except ValueError:
            schema = None
    return {
        "table_id": metadata.get("id"),
        "name": metadata.get("name"),
        "description": metadata.get("description"),
        "provider": (metadata.get("format") or {}).get("provider"),
        "schema": schema,
        "partition_columns": tuple(str(c) for c in metadata.get("partitionColumns") or ()),
        "configuration": {str(k): str(v) for k, v in (metadata.get("configuration") or {}).items() if v is not None},
        "created_time": metadata.get("createdTime"),
    }


def _partial(listing: _Listing, table_dir: Path, version: int, why: str) -> DeltaSnapshot:
    """What can be said without the table's full state: never a count that could be wrong."""
    state = _State(table_dir)
    for v in sorted(listing.commits, reverse=True):  # the newest protocol and metaData win
        if state.protocol and state.metadata:
            break
        try:
            actions = _actions(listing.commits[v])
        except DeltaLogError:
            continue
        for action in actions:
            if "protocol" in action and state.protocol is None:
                state.protocol = action["protocol"]
            if "metaData" in action and state.metadata is None:
                state.metadata = action["metaData"]
    checksum = _checksum(listing, version)
    read_from = "the newest commits"
    num_files = size = records = None
    files: tuple[LiveFile, ...] | None = None
    if checksum is not None:
        read_from = f"the version checksum {version}.crc"
        state.protocol = state.protocol or checksum.get("protocol")
        state.metadata = state.metadata or checksum.get("metadata")
        num_files, size = checksum.get("numFiles"), checksum.get("tableSizeBytes")
        if isinstance(checksum.get("allFiles"), list) and len(checksum["allFiles"]) == num_files:
            for add in checksum["allFiles"]:
                state.add(add)
            files = tuple(sorted(state.files.values(), key=lambda f: f.path))
            if all(f.num_records is not None for f in files):
                records = sum(f.rows or 0 for f in files)
    timestamp, operation = _last_commit(listing, version)
    return DeltaSnapshot(
        version=version,
        **_protocol_fields(state.protocol),
        **_metadata_fields(state.metadata),
        files=files,
        num_files=num_files if isinstance(num_files, int) else None,
        size_in_bytes=size if isinstance(size, int) else None,
        num_records=records,
        last_commit_timestamp=timestamp,
        last_operation=operation,
        read_from=read_from,
        unknown=why if records is None else None,
    )


def _checksum(listing: _Listing, version: int) -> dict | None:
    path = listing.checksums.get(version)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_snapshot(table_dir: Path) -> DeltaSnapshot:
    """The table's latest snapshot (see the module docstring). Raises DeltaLogError when `_delta_log`
    has no version yet or a commit needed for every route to the state is damaged."""
    return _read(table_dir, _list(table_dir / LOG_DIR))


def _read(table_dir: Path, listing: _Listing) -> DeltaSnapshot:
    version = listing.latest
    present = set(listing.commits)
    problems: list[str] = []
    for cp in sorted((v for v in listing.checkpoints if v <= version), reverse=True):
        missing = next((v for v in range(cp + 1, version + 1) if v not in present), None)
        if missing is not None:
            problems.append(f"commit {missing} after checkpoint {cp} is missing")
            continue
        for parts in listing.checkpoints[cp]:
            state = _State(table_dir)
            try:
                state.apply(_checkpoint_actions(parts))
            except (NotParquet, OSError, DeltaLogError) as exc:
                problems.append(f"checkpoint {cp} could not be read ({exc})")
                continue
            state.commit_info = None  # a checkpoint keeps no commitInfo
            for v in range(cp + 1, version + 1):
                state.apply(_actions(listing.commits[v]))
            return _snapshot(state, version, f"checkpoint {cp} + {_span(cp + 1, version)}", listing)
    if all(v in present for v in range(version + 1)):
        state = _State(table_dir)
        for v in range(version + 1):
            state.apply(_actions(listing.commits[v]))
        return _snapshot(state, version, _span(0, version), listing)
    first = min(present, default=version)
    reasons = [f"commits before version {first} are gone (log cleanup after delta.logRetentionDuration)"]
    if first == 0:
        gap = next((v for v in range(version + 1) if v not in present), version)
        reasons = [f"commit {gap} is missing"]
    if not listing.checkpoints:
        reasons.append("there is no checkpoint")
    return _partial(listing, table_dir, version, "the table's files are unknown: " + "; ".join(reasons + problems))


def count_rows(snapshot: DeltaSnapshot, table_dir: Path) -> int:
    """COUNT(*) of the snapshot: from the log's statistics, and for a live file without them from
    its parquet footer (the rows a scan would read), less the rows deletion vectors remove. Raises
    DeltaLogError when the snapshot does not know its files."""
    if snapshot.num_records is not None:
        return snapshot.num_records
    if snapshot.files is None:
        raise DeltaLogError(snapshot.unknown or "the table's files are unknown")
    total = 0
    for f in snapshot.files:
        if f.num_records is not None:
            total += f.num_records - f.deleted_records
            continue
        try:
            total += file_row_count(f.location(table_dir)) - f.deleted_records
        except (OSError, NotParquet) as exc:
            raise DeltaLogError(f"live file {f.path} has no statistics and its footer cannot be read: {exc}") from None
    return total


class SnapshotCache:
    """Snapshots by table dir, read again only when the log has a new commit or checkpoint (a Unity
    Catalog listing reads every table's log)."""

    def __init__(self, size: int = 256):
        self._size = size
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple, DeltaSnapshot]] = {}

    def get(self, table_dir: Path) -> DeltaSnapshot:
        listing = _list(table_dir / LOG_DIR)
        try:
            signature = listing.signature()
        except OSError:
            signature = ()
        with self._lock:
            hit = self._entries.get(table_dir)
        if hit is not None and signature and hit[0] == signature:
            return hit[1]
        snapshot = _read(table_dir, listing)
        with self._lock:
            self._entries[table_dir] = (signature, snapshot)
            while len(self._entries) > self._size:
                self._entries.pop(next(iter(self._entries)))
        return snapshot
