"""The Delta log reader without a JVM (engine/delta_log.py, engine/parquet_columns.py).

Most logs are written here by hand, action by action as PROTOCOL.md specifies them: a creation,
appends, an overwrite with removes, a MERGE that rewrites files and adds a deletion vector, files
without statistics, checkpoints (a v2 JSON checkpoint, which the protocol allows, for the logic;
Delta's own parquet checkpoint below for the format) and log cleanup. tests/data/delta holds logs
that Delta Lake 3.3.3 on Spark 3.5 wrote (`engineInfo` in each commit), each with Delta's own
version checksum (`N.crc`: numFiles, tableSizeBytes, metadata, protocol and every live file with its
stats) for the reader to agree with:

- checkpointed/: checkpoint 10 and commits 10-13 of a table that went through UPDATE, DELETE, MERGE,
  OPTIMIZE, RESTORE and change data feed; commits 0-9 are left out, as log cleanup leaves a log.
- deletion_vectors/: a DELETE that wrote a deletion vector instead of rewriting the file.
- partitioned/: a table partitioned by `d`, appended to and overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from delta_logs import SCHEMA, Log, add, dv, meta, protocol, remove

from dbx_assets.local_workspace.engine.delta_log import (
    DeltaLogError,
    SnapshotCache,
    count_rows,
    is_delta_table,
    read_snapshot,
)
from dbx_assets.local_workspace.engine.parquet_columns import read_columns, snappy_decompress

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = DATA / "delta"


@pytest.fixture
def log(tmp_path) -> Log:
    return Log(tmp_path / "orders")


# -- hand-built logs ------------------------------------------------------------------------------
def test_creation_gives_schema_partitions_properties_and_no_rows(log):
    log.create(
        partitions=("order_date",),
        configuration={"delta.enableChangeDataFeed": "true"},
        description="Orders, one row per order",
    )
    os.utime(log.dir / f"{0:020d}.json", (1_800_000_123.456, 1_800_000_123.456))
    snap = read_snapshot(log.table)
    assert is_delta_table(log.table) and not is_delta_table(log.table / "_delta_log")
    assert (snap.version, snap.num_files, snap.num_records, snap.size_in_bytes) == (0, 0, 0, 0)
    assert snap.schema == SCHEMA and [f["name"] for f in snap.fields] == ["order_id", "amount", "order_date"]
    assert snap.partition_columns == ("order_date",)
    assert snap.configuration == {"delta.enableChangeDataFeed": "true"}
    assert snap.description == "Orders, one row per order" and snap.created_time == 1_799_000_000_000
    assert (snap.min_reader_version, snap.min_writer_version) == (1, 2)
    assert snap.last_operation == "CREATE TABLE" and snap.last_commit_timestamp == 1_800_000_123_456
    assert snap.read_from == "commit 0" and snap.unknown is None


def test_appends_sum_the_live_files_statistics(log):
    log.create()
    log.commit(add("part-0.parquet", 7, size=700), add("part-1.parquet", 3, size=300))
    log.commit(add("part-2.parquet", 5, size=500), operation="WRITE", at_ms=1_800_000_555_000)
    snap = read_snapshot(log.table)
    assert (snap.version, snap.num_files, snap.num_records, snap.size_in_bytes) == (2, 3, 15, 1500)
    assert [f.path for f in snap.files or ()] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert snap.last_operation == "WRITE" and snap.last_commit_timestamp == 1_800_000_555_000
    assert snap.read_from == "commits 0-2"


def test_an_overwrite_removes_what_was_there(log):
    log.create()
    log.commit(add("part-0.parquet", 7), add("part-1.parquet", 3))
    log.commit(
        remove("part-0.parquet"),
        remove("part-1.parquet"),
        add("part-2.parquet", 4),
        operation="WRITE",
        operationParameters={"mode": "Overwrite"},
    )
    snap = read_snapshot(log.table)
    assert (snap.num_files, snap.num_records) == (1, 4)


def test_a_merge_rewrites_files_and_deletion_vectors_hide_rows(log):
    log.create(configuration={"delta.enableDeletionVectors": "true"})
    log.commit(add("part-0.parquet", 10), add("part-1.parquet", 10), add("part-2.parquet", 10))
    # MERGE: part-0 rewritten (2 rows updated, 1 deleted), 4 rows inserted in a new file
    log.commit(remove("part-0.parquet"), add("part-3.parquet", 9), add("part-4.parquet", 4), operation="MERGE")
    # DELETE with deletion vectors: part-1 stays, 3 of its rows are marked deleted
    log.commit(remove("part-1.parquet"), add("part-1.parquet", 10, dv=dv(3)), operation="DELETE")
    # another DELETE on the same file: its old DV is replaced by one removing 5 rows
    log.commit(
        remove("part-1.parquet", dv=dv(3)), add("part-1.parquet", 10, dv=dv(5, "other-dv-id")), operation="DELETE"
    )
    snap = read_snapshot(log.table)
    assert snap.num_files == 4
    assert snap.num_records == 10 + 10 + 9 + 4 - 5  # part-1 (minus 5), part-2, part-3, part-4
    assert snap.last_operation == "DELETE"
    part1 = [f for f in snap.files or () if f.path == "part-1.parquet"]
    assert [(f.num_records, f.deleted_records, f.rows) for f in part1] == [(10, 5, 5)]


def test_optimize_and_restore_keep_the_count(log):
    log.create()
    log.commit(add("a.parquet", 1), add("b.parquet", 2))
    log.commit(remove("a.parquet"), remove("b.parquet"), add("ab.parquet", 3, data_change=False), operation="OPTIMIZE")
    assert read_snapshot(log.table).num_records == 3
    log.commit(remove("ab.parquet"), add("a.parquet", 1), add("b.parquet", 2), operation="RESTORE")
    snap = read_snapshot(log.table)
    assert (snap.num_files, snap.num_records, snap.last_operation) == (2, 3, "RESTORE")


def test_a_file_without_statistics_makes_the_count_unknown_not_wrong(log):
    log.create()
    log.commit(add("part-0.parquet", 7), add("part-1.parquet", None))
    snap = read_snapshot(log.table)
    assert snap.num_files == 2 and snap.num_records is None
    assert snap.unknown == "1 of 2 live files have no statistics (numRecords)"
    # COUNT(*) reads that one file's parquet footer (Spark wrote 7 rows there), as a scan would
    shutil.copy(DATA / "orders_7_rows.parquet", log.table / "part-1.parquet")
    assert count_rows(snap, log.table) == 14
    # once that file is removed, the statistics answer again
    log.commit(remove("part-1.parquet"), operation="DELETE")
    assert read_snapshot(log.table).num_records == 7


def test_paths_are_one_key_however_an_action_spells_them(log):
    log.create(partitions=("order_date",))
    log.commit(add("order_date=2026-11-01/part%200.parquet", 4))
    log.commit(remove((log.table / "order_date=2026-11-01" / "part 0.parquet").as_uri()), operation="DELETE")
    snap = read_snapshot(log.table)
    assert (snap.num_files, snap.num_records) == (0, 0)


def test_metadata_and_protocol_changes_win(log):
    log.create()
    log.commit(
        meta(configuration={"delta.enableChangeDataFeed": "true"}, description="v1"),
        protocol(1, 7, writerFeatures=["changeDataFeed", "appendOnly", "invariants"]),
        operation="SET TBLPROPERTIES",
    )
    snap = read_snapshot(log.table)
    assert snap.configuration == {"delta.enableChangeDataFeed": "true"} and snap.description == "v1"
    assert (snap.min_writer_version, snap.writer_features) == (7, ("changeDataFeed", "appendOnly", "invariants"))


def test_in_commit_timestamps_are_the_commit_time(log):
    log.create()
    log.commit(add("a.parquet", 1), at_ms=1_800_000_000_000, inCommitTimestamp=1_800_000_009_999)
    assert read_snapshot(log.table).last_commit_timestamp == 1_800_000_009_999


def _v2_checkpoint(log: Log, version: int, *actions: dict) -> Path:
    """A UUID-named v2 checkpoint in JSON (PROTOCOL.md, "Checkpoints"): the state at `version`."""
    path = log.dir / f"{version:020d}.checkpoint.3a0d65cd-4056-49b8-937b-95f9e3ee90e5.json"
    lines = [{"checkpointMetadata": {"version": version}}, *actions]
    path.write_text("".join(json.dumps(a) + "\n" for a in lines))
    return path


def test_a_checkpoint_and_the_commits_after_it_after_log_cleanup(log):
    log.create()
    log.commit(add("a.parquet", 1), add("b.parquet", 2))
    log.commit(remove("a.parquet"), add("c.parquet", 3))
    _v2_checkpoint(log, 2, protocol(), meta(), add("b.parquet", 2), add("c.parquet", 3), remove("a.parquet"))
    log.commit(add("d.parquet", 4))
    log.commit(remove("b.parquet"), operation="DELETE")
    log.drop_commits_before(2)
    snap = read_snapshot(log.table)
    assert snap.read_from == "checkpoint 2 + commits 3-4"
    assert (snap.version, snap.num_files, snap.num_records) == (4, 2, 7)
    assert snap.schema == SCHEMA and snap.last_operation == "DELETE"


def test_a_damaged_checkpoint_falls_back_to_the_commits_when_they_are_all_there(log):
    log.create()
    log.commit(add("a.parquet", 1))
    (log.dir / f"{1:020d}.checkpoint.parquet").write_bytes(b"PAR1 truncated")
    log.commit(add("b.parquet", 2))
    snap = read_snapshot(log.table)
    assert (snap.read_from, snap.num_records) == ("commits 0-2", 3)


def test_without_the_commits_before_an_unreadable_checkpoint_the_count_is_unknown(log):
    log.create(configuration={"delta.appendOnly": "false"})
    log.commit(add("a.parquet", 1))
    (log.dir / f"{1:020d}.checkpoint.parquet").write_bytes(b"PAR1 truncated")
    log.commit(add("b.parquet", 2), operation="WRITE")
    log.drop_commits_before(1)
    snap = read_snapshot(log.table)
    assert snap.version == 2 and snap.last_operation == "WRITE"
    assert snap.num_records is None and snap.num_files is None and snap.files is None
    assert snap.unknown and "commits before version 1 are gone" in snap.unknown
    assert "checkpoint 1 could not be read" in snap.unknown
    with pytest.raises(DeltaLogError, match="commits before version 1 are gone"):
        count_rows(snap, log.table)
    # The schema and properties still come from the newest commits that carry them, or from Delta's
    # version checksum for that version when it wrote one.
    assert snap.schema is None
    checksum = {
        "tableSizeBytes": 200,
        "numFiles": 2,
        "numMetadata": 1,
        "numProtocol": 1,
        "metadata": meta(configuration={"delta.appendOnly": "false"})["metaData"],
        "protocol": protocol()["protocol"],
    }
    (log.dir / f"{2:020d}.crc").write_text(json.dumps(checksum))
    snap = read_snapshot(log.table)
    assert snap.schema == SCHEMA and snap.configuration == {"delta.appendOnly": "false"}
    assert (snap.num_files, snap.num_records, snap.read_from) == (2, None, "the version checksum 2.crc")
    checksum["allFiles"] = [add("a.parquet", 1)["add"], add("b.parquet", 2)["add"]]
    (log.dir / f"{2:020d}.crc").write_text(json.dumps(checksum))
    assert read_snapshot(log.table).num_records == 3


def test_a_missing_commit_or_a_partial_multipart_checkpoint_is_not_trusted(log):
    log.create()
    log.commit(add("a.parquet", 1))
    log.commit(add("b.parquet", 2))
    (log.dir / f"{1:020d}.checkpoint.0000000001.0000000002.parquet").write_bytes(b"only part 1 of 2")
    (log.dir / f"{1:020d}.json").unlink()
    snap = read_snapshot(log.table)
    assert snap.version == 2 and snap.num_records is None
    assert snap.unknown and "commit 1 is missing" in snap.unknown


def test_logs_without_a_version_or_damaged_raise(log):
    with pytest.raises(DeltaLogError, match="no commits yet"):
        read_snapshot(log.table)
    log.create()
    (log.dir / f"{1:020d}.json").write_text('{"commitInfo": {}}\n{"add": {"path": "a.parq')
    with pytest.raises(DeltaLogError, match="line 2 is not JSON"):
        read_snapshot(log.table)


def test_the_cache_reads_a_log_again_only_after_a_new_commit(log):
    log.create()
    cache = SnapshotCache()
    first = cache.get(log.table)
    assert cache.get(log.table) is first
    log.commit(add("a.parquet", 1))
    assert cache.get(log.table).num_records == 1


# -- logs Delta wrote -----------------------------------------------------------------------------
def _checksum(table: Path, version: int) -> dict:
    return json.loads((table / "_delta_log" / f"{version:020d}.crc").read_text())


def _agree_with_deltas_checksum(table: Path, version: int) -> dict:
    snap = read_snapshot(table)
    crc = _checksum(table, version)
    assert snap.version == version
    assert (snap.num_files, snap.size_in_bytes) == (crc["numFiles"], crc["tableSizeBytes"])
    assert snap.schema == json.loads(crc["metadata"]["schemaString"])
    assert list(snap.partition_columns) == crc["metadata"]["partitionColumns"]
    assert snap.configuration == crc["metadata"]["configuration"]
    assert snap.table_id == crc["metadata"]["id"] and snap.created_time == crc["metadata"]["createdTime"]
    assert (snap.min_reader_version, snap.min_writer_version) == (
        crc["protocol"]["minReaderVersion"],
        crc["protocol"]["minWriterVersion"],
    )
    assert set(snap.writer_features) == set(crc["protocol"].get("writerFeatures", []))
    live = {f["path"]: json.loads(f["stats"])["numRecords"] for f in crc["allFiles"]}
    assert {f.path: f.num_records for f in snap.files or ()} == live
    return {"snapshot": snap, "crc": crc}


def test_a_real_parquet_checkpoint_after_log_cleanup():
    found = _agree_with_deltas_checksum(REAL / "checkpointed", 13)
    snap = found["snapshot"]
    assert snap.read_from == "checkpoint 10 + commits 11-13"
    assert snap.num_records == 2 and snap.last_operation == "OPTIMIZE"
    assert snap.configuration == {"delta.enableChangeDataFeed": "true"}
    assert snap.writer_features == ("changeDataFeed", "appendOnly", "invariants")


def test_the_real_checkpoints_columns():
    checkpoint = REAL / "checkpointed" / "_delta_log" / f"{10:020d}.checkpoint.parquet"
    columns = read_columns(
        checkpoint,
        [
            ("add", "path"),
            ("add", "size"),  # dictionary-encoded by parquet-mr
            ("protocol", "writerFeatures", "list", "element"),
            ("metaData", "configuration", "key_value", "key"),
            ("metaData", "configuration", "key_value", "value"),
            ("add", "no_such_column"),
        ],
    )
    # one row per action: 11 rows, of which 2 are the live files at version 10 (the rest: protocol,
    # metadata, tombstones), each column aligned with the others
    paths = columns[("add", "path")]
    assert len(paths) == 11
    assert [(p, s) for p, s in zip(paths, columns[("add", "size")], strict=True) if p is not None] == [
        ("part-00000-cfa0c93b-6734-466f-8121-debb899ba15d-c000.snappy.parquet", 678),
        ("part-00000-7a745074-ddd2-4151-9f8f-757542a4426c.c000.snappy.parquet", 892),
    ]
    assert [f for f in columns[("protocol", "writerFeatures", "list", "element")] if f] == [
        ["changeDataFeed", "appendOnly", "invariants"]
    ]
    keys = [k for k in columns[("metaData", "configuration", "key_value", "key")] if k]
    values = [v for v in columns[("metaData", "configuration", "key_value", "value")] if v]
    assert (keys, values) == ([["delta.enableChangeDataFeed"]], [["true"]])
    assert set(columns[("add", "no_such_column")]) == {None}


def test_multipart_and_v2_checkpoints_with_sidecars(tmp_path):
    """Delta's checkpoint, split as a multi-part checkpoint would be, or referenced as the sidecar of a
    UUID-named v2 checkpoint, gives the same state."""
    real = REAL / "checkpointed" / "_delta_log"
    checkpoint = real / f"{10:020d}.checkpoint.parquet"
    for layout in ("multipart", "sidecar"):
        table = tmp_path / layout
        shutil.copytree(REAL / "checkpointed", table)
        (table / "_delta_log" / checkpoint.name).unlink()
        if layout == "multipart":  # every action of part 1 repeated in part 2: the same state
            for part in (1, 2):
                shutil.copy(checkpoint, table / "_delta_log" / f"{10:020d}.checkpoint.{part:010d}.0000000002.parquet")
        else:
            (table / "_delta_log" / "_sidecars").mkdir()
            shutil.copy(checkpoint, table / "_delta_log" / "_sidecars" / "016ae953-37a9-438e-8683-9a9a4a79a395.parquet")
            (table / "_delta_log" / f"{10:020d}.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json").write_text(
                json.dumps({"checkpointMetadata": {"version": 10}})
                + "\n"
                + json.dumps({"sidecar": {"path": "016ae953-37a9-438e-8683-9a9a4a79a395.parquet", "sizeInBytes": 1}})
                + "\n"
            )
        snap = _agree_with_deltas_checksum(table, 13)["snapshot"]
        assert snap.read_from == "checkpoint 10 + commits 11-13", layout
    # a multi-part checkpoint missing a part is ignored (it may still be being written): with commits
    # 0-9 gone, what is left is Delta's checksum for version 13, which lists the live files
    (tmp_path / "multipart" / "_delta_log" / f"{10:020d}.checkpoint.0000000002.0000000002.parquet").unlink()
    snap = read_snapshot(tmp_path / "multipart")
    assert (snap.read_from, snap.num_files, snap.num_records) == ("the version checksum 13.crc", 1, 2)


def test_a_real_log_with_a_deletion_vector():
    found = _agree_with_deltas_checksum(REAL / "deletion_vectors", 2)
    snap, crc = found["snapshot"], found["crc"]
    physical = sum(json.loads(f["stats"])["numRecords"] for f in crc["allFiles"])
    assert snap.num_records == physical - crc["numDeletedRecordsOpt"] == 90
    assert snap.reader_features == ("deletionVectors",) and snap.last_operation == "DELETE"


def test_a_real_partitioned_log():
    snap = _agree_with_deltas_checksum(REAL / "partitioned", 2)["snapshot"]
    assert snap.partition_columns == ("d",) and snap.num_records == 2


def test_snappy_as_parquet_stores_it():
    # "abc", then a copy of 9 bytes from 3 back (overlapping: the pattern repeats)
    assert snappy_decompress(bytes([12, 0x08]) + b"abc" + bytes([0x15, 0x03])) == b"abcabcabcabc"
    long_literal = b"x" * 100  # a literal longer than 60 bytes carries its length in the next byte
    assert snappy_decompress(bytes([100, 60 << 2, 99]) + long_literal) == long_literal
