"""Tables land whole or not at all after a crash: which warehouse dirs hold a committed table (pure
logic on temp dirs laid out as Spark's file committer and Delta leave them; no JVM)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime.catalog_sync import columns_snapshot_path
from dbx_assets.local_workspace.runtime.table_commits import (
    TableDir,
    inspect,
    remove_uncommitted_tables,
    table_dirs,
)

PART = "part-00000-3f1c2a7e-0c1d-4e8f-9b6a-1234567890ab-c000.snappy.parquet"
COMMIT0 = "00000000000000000000.json"


def _files(root: Path, *names: str, age_seconds: float = 0.0) -> Path:
    """Create `names` (paths under root; a trailing / makes a dir) aged `age_seconds`."""
    stamp = time.time() - age_seconds
    for name in names:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PAR1")
        os.utime(path, (stamp, stamp))
    return root


def _table(warehouse: Path, db: str, name: str, *files: str, age_seconds: float = 0.0) -> Path:
    return _files(warehouse / f"{db}.db" / name, *files, age_seconds=age_seconds)


def _record(warehouse: Path, db: str, name: str, table_dir: Path) -> Path:
    """What catalog_sync writes at the end of a task for a table this cluster knows."""
    path = columns_snapshot_path(warehouse, db, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    st = table_dir.stat()
    path.write_text(json.dumps({"signature": f"{st.st_ino}:{st.st_mtime_ns}", "schema": {}}))
    return path


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    wh = tmp_path / "warehouse"
    (wh / "_unity_catalog" / "catalogs").mkdir(parents=True)
    return wh


def test_table_dirs_are_the_managed_tables_of_every_database_and_the_default_one(warehouse):
    _table(warehouse, "dbx_demo_dev__bronze", "Orders", "_SUCCESS", PART)
    _files(warehouse / "loose", "_SUCCESS", PART)
    _files(warehouse / "other.db", "_hidden/", ".staging/")
    found = {(t.database, t.table) for t in table_dirs(warehouse)}
    assert found == {("dbx_demo_dev__bronze", "orders"), ("default", "loose")}  # _unity_catalog is not a table


def test_a_write_cut_before_its_commit_is_removed_and_committed_tables_stay(warehouse):
    """The crash of issue 24: `bronze.orders` had only Spark's _temporary dir (LOCATION_ALREADY_EXISTS)."""
    cut = _table(warehouse, "bronze", "orders", "_temporary/0/_temporary/attempt_1/" + PART)
    staged = _table(warehouse, "bronze", "staged", f".spark-staging-{'0' * 8}/d=1/{PART}")
    committed = _table(warehouse, "bronze", "customers", "_SUCCESS", "._SUCCESS.crc", PART, age_seconds=600)
    since = _now_ms() - 60_000
    acted = remove_uncommitted_tables(warehouse, interrupted_since_ms=since)
    assert {v.table.table for v in acted} == {"orders", "staged"}
    assert not cut.exists() and not staged.exists()
    assert {p.name for p in committed.iterdir()} == {"._SUCCESS.crc", PART, "_SUCCESS"}


def test_a_cut_write_inside_a_committed_table_leaves_the_table_and_loses_its_leftovers(warehouse):
    table = _table(warehouse, "silver", "orders", "_SUCCESS", PART, "_temporary/0/" + PART, ".spark-staging-1/x")
    (verdict,) = remove_uncommitted_tables(warehouse, interrupted_since_ms=_now_ms())
    assert verdict.committed and verdict.reason == "_SUCCESS marker"
    assert {p.name for p in table.iterdir()} == {PART, "_SUCCESS"}


def test_files_of_an_interrupted_write_without_a_commit_are_removed_with_their_snapshot(warehouse):
    """A job commit cut short, or a Delta table's first write cut before its first commit: data
    files, no marker, all written after the interrupted writes began."""
    since = _now_ms() - 5_000
    table = _table(warehouse, "bronze", "orders", PART, "ingest_date=2026-11-01/" + PART)
    snapshot = columns_snapshot_path(warehouse, "bronze", "orders")
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text(json.dumps({"signature": "1:2"}))  # an earlier incarnation of the table (another inode)
    (verdict,) = remove_uncommitted_tables(warehouse, interrupted_since_ms=since)
    assert not verdict.committed and "interrupted write" in verdict.reason
    assert not table.exists() and not snapshot.exists()


def test_partitions_committed_without_a_marker_are_kept(warehouse):
    """Spark's dynamic partition overwrite (the local clusters' default) commits partition dirs and
    no root _SUCCESS: kept when a finished task recorded the dir, or when it holds older data."""
    since = _now_ms() - 5_000
    recorded = _table(warehouse, "silver", "by_day", "d=1/" + PART, "d=2/" + PART, ".spark-staging-7/d=3/" + PART)
    _record(warehouse, "silver", "by_day", recorded)
    older = _table(warehouse, "silver", "older", "d=1/" + PART, age_seconds=3600)
    _files(older, "d=2/" + PART)  # one partition rewritten by the cut write, the other from before
    acted = {v.table.table: v for v in remove_uncommitted_tables(warehouse, interrupted_since_ms=since)}
    assert set(acted) == {"by_day"} and acted["by_day"].committed  # only its staging dir went
    assert sorted(p.name for p in recorded.iterdir()) == ["d=1", "d=2"]
    assert sorted(p.name for p in older.iterdir()) == ["d=1", "d=2"]


def test_without_an_interrupted_write_nothing_committed_looking_is_removed(warehouse):
    table = _table(warehouse, "silver", "by_day", "d=1/" + PART)
    cut = _table(warehouse, "silver", "cut", "_temporary/0/")
    acted = remove_uncommitted_tables(warehouse)  # a clean restart: no run was active
    assert [v.table.table for v in acted] == ["cut"] and not cut.exists()
    assert table.exists()


def test_delta_tables_are_committed_by_their_log_only(warehouse):
    since = _now_ms() - 5_000
    committed = _table(warehouse, "gold", "revenue", f"_delta_log/{COMMIT0}", PART, "part-uncommitted.parquet")
    checkpointed = _table(
        warehouse,
        "gold",
        "old",
        "_delta_log/00000000000000000010.checkpoint.parquet",
        "_delta_log/_last_checkpoint",
        PART,
    )
    no_commit = _table(
        warehouse, "gold", "cut", "_delta_log/_commits/", "_delta_log/.00000000000000000000.json.tmp", PART
    )
    acted = remove_uncommitted_tables(warehouse, interrupted_since_ms=since)
    assert [(v.table.table, v.committed) for v in acted] == [("cut", False)]
    assert not no_commit.exists()
    # a committed Delta table is left exactly as it is: files no commit names are Delta's (VACUUM's) business
    assert {p.name for p in committed.iterdir()} == {"_delta_log", PART, "part-uncommitted.parquet"}
    assert checkpointed.exists()


def test_an_empty_table_dir_is_left_alone(warehouse):
    table = _table(warehouse, "bronze", "empty", ".hidden.crc")
    verdict = inspect(TableDir("bronze", "empty", table), warehouse, _now_ms())
    assert verdict.committed and verdict.reason == "empty"
    assert remove_uncommitted_tables(warehouse, interrupted_since_ms=_now_ms()) == []


def test_a_missing_warehouse_is_nothing_to_do(tmp_path):
    assert remove_uncommitted_tables(tmp_path / "nowhere", interrupted_since_ms=_now_ms()) == []
