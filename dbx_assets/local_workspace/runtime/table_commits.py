"""Tables land whole or not at all: when the workspace starts again after its server died (and with
it every cluster, mid-write), managed-table dirs of the warehouse that hold no committed table are
removed, and what interrupted writes left inside committed tables is cleared away.

A write cut short leaves a dir Spark cannot get past: `saveAsTable` refuses a non-empty location
that is not a table (LOCATION_ALREADY_EXISTS), Delta refuses a non-empty dir that is not a Delta
table. Nothing else would ever clean it. Run only while no cluster is running (at server start):
another cluster's write in flight looks exactly like a cut one.

Committed, by what the dir holds (`_*` and `.*` entries are invisible to readers):

- `_delta_log/` (Delta): committed iff it holds a commit (`<version>.json`) or a checkpoint; files
  no commit names are Delta's own business (VACUUM). Without one: removed.
- `_SUCCESS` at the root (Spark's file committer, any file format): the job committed. A later
  write's leftovers (`_temporary/`, `.spark-staging-*/`) are removed.
- Neither: nothing visible (only `_temporary/`, `.spark-staging-*`): removed. Visible files without
  a marker are what Spark's dynamic partition overwrite commits (it writes no root `_SUCCESS`) — and
  also what a cut job commit or a Delta first write cut before its commit leaves. Such a dir is kept
  when a finished task recorded this very dir (catalog_sync's columns snapshot, same inode), or
  when it holds a file older than the earliest write that was cut (`interrupted_since_ms`), or when
  nothing was cut at all; otherwise removed (with its snapshot).

Known limit: an append cut during its job commit (a sub-second window) can leave part of its files
in a table that was committed before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog_sync import columns_snapshot_path

log = logging.getLogger("dbx_local_workspace")

DELTA_LOG = "_delta_log"
SUCCESS_MARKER = "_SUCCESS"
# 00000000000000000003.json, 00000000000000000010.checkpoint.parquet, multi-part and v2 (uuid) checkpoints
_DELTA_COMMIT = re.compile(r"^\d{20}\.(json|checkpoint(\.\d{10}\.\d{10})?(\.[0-9a-fA-F-]{36})?\.(parquet|json))$")
_IN_FLIGHT = ("_temporary", ".spark-staging-")


@dataclass(frozen=True)
class TableDir:
    database: str
    table: str
    path: Path


@dataclass(frozen=True)
class Verdict:
    table: TableDir
    committed: bool
    reason: str
    leftovers: tuple[Path, ...] = ()  # in-flight dirs of a cut write inside a committed table


def table_dirs(warehouse: Path) -> Iterator[TableDir]:
    """Managed-table dirs: `<warehouse>/<db>.db/<table>` and `<warehouse>/<table>` (database `default`)."""
    if not warehouse.is_dir():
        return
    for entry in sorted(warehouse.iterdir()):
        if not entry.is_dir() or entry.name.startswith(("_", ".")):
            continue
        if entry.name.endswith(".db"):
            for table in sorted(entry.iterdir()):
                if table.is_dir() and not table.name.startswith(("_", ".")):
                    yield TableDir(entry.name[:-3].lower(), table.name.lower(), table)
        else:
            yield TableDir("default", entry.name.lower(), entry)


def inspect(table: TableDir, warehouse: Path, interrupted_since_ms: int | None = None) -> Verdict:
    """Whether `table`'s dir holds a committed table (see the module doc); pure, changes nothing."""
    path = table.path
    entries = list(path.iterdir())
    names = {e.name for e in entries}
    leftovers = tuple(sorted(e for e in entries if e.name.startswith(_IN_FLIGHT)))
    if DELTA_LOG in names:
        log_dir = path / DELTA_LOG
        if log_dir.is_dir() and any(_DELTA_COMMIT.match(f.name) for f in log_dir.iterdir()):
            return Verdict(table, True, "Delta table with a commit")
        return Verdict(table, False, "Delta log without any commit")
    if SUCCESS_MARKER in names:
        return Verdict(table, True, "_SUCCESS marker", leftovers)
    visible = [e for e in entries if not e.name.startswith(("_", "."))]
    if not visible:
        if not leftovers:
            return Verdict(table, True, "empty")  # CREATE TABLE without data: nothing to protect or clear
        return Verdict(table, False, "only the files of a write that never committed")
    if _recorded_by_a_finished_task(table, warehouse):
        return Verdict(table, True, "recorded at the end of a task", leftovers)
    if interrupted_since_ms is None:
        return Verdict(table, True, "no write was cut", leftovers)
    if _holds_data_older_than(visible, interrupted_since_ms):
        return Verdict(table, True, "holds data written before the interrupted writes", leftovers)
    return Verdict(table, False, "data files without a commit, written by an interrupted write")


def remove_uncommitted_tables(warehouse: Path, *, interrupted_since_ms: int | None = None) -> list[Verdict]:
    """Remove what holds no committed table, and cut writes' leftovers in committed ones; returns
    the verdicts that changed something. Only while no cluster runs (see the module doc)."""
    acted: list[Verdict] = []
    for table in table_dirs(warehouse):
        try:
            verdict = inspect(table, warehouse, interrupted_since_ms)
        except OSError as err:  # vanished or unreadable meanwhile: leave it be
            log.warning("could not inspect table dir %s: %s", table.path, err)
            continue
        if not verdict.committed:
            shutil.rmtree(table.path, ignore_errors=True)
            columns_snapshot_path(warehouse, table.database, table.table).unlink(missing_ok=True)
            log.warning(
                "removed half-written table %s.%s at %s (%s)", table.database, table.table, table.path, verdict.reason
            )
            acted.append(verdict)
        elif verdict.leftovers:
            for leftover in verdict.leftovers:
                shutil.rmtree(leftover, ignore_errors=True)
            log.warning(
                "removed what an interrupted write left in table %s.%s: %s",
                table.database,
                table.table,
                ", ".join(p.name for p in verdict.leftovers),
            )
            acted.append(verdict)
    return acted


def _recorded_by_a_finished_task(table: TableDir, warehouse: Path) -> bool:
    """catalog_sync records each table's dir (inode:mtime) at the end of every task; the same inode
    means this very dir was a table then (not one dropped and written again since)."""
    try:
        signature = json.loads(columns_snapshot_path(warehouse, table.database, table.table).read_text())["signature"]
        return str(signature).split(":", 1)[0] == str(table.path.stat().st_ino)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _holds_data_older_than(visible: list[Path], since_ms: int) -> bool:
    limit_ns = since_ms * 1_000_000
    for entry in visible:
        if entry.is_file():
            if entry.stat().st_mtime_ns < limit_ns:
                return True
            continue
        for root, dirs, files in os.walk(entry):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            for name in files:
                if not name.startswith(("_", ".")) and os.stat(os.path.join(root, name)).st_mtime_ns < limit_ns:
                    return True
    return False
