"""Delta logs written by hand, action by action as the Delta protocol (PROTOCOL.md) specifies them:
for tests that need a Delta table without a JVM."""

from __future__ import annotations

import json
import os
from pathlib import Path

SCHEMA = {
    "type": "struct",
    "fields": [
        {"name": "order_id", "type": "long", "nullable": False, "metadata": {"comment": "the order's id"}},
        {"name": "amount", "type": "decimal(10,2)", "nullable": True, "metadata": {}},
        {"name": "order_date", "type": "date", "nullable": True, "metadata": {}},
    ],
}


class Log:
    """A Delta table's `_delta_log`, one commit file per `commit` call."""

    def __init__(self, table: Path):
        self.table = table
        self.dir = table / "_delta_log"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.version = -1

    def commit(self, *actions: dict, operation: str = "WRITE", at_ms: int | None = None, **info) -> int:
        self.version += 1
        commit_info = {"timestamp": at_ms or 1_800_000_000_000, "operation": operation, **info}
        path = self.dir / f"{self.version:020d}.json"
        path.write_text("".join(json.dumps(a) + "\n" for a in [{"commitInfo": commit_info}, *actions]))
        if at_ms is not None:  # Delta's commit time is the file's modification time
            os.utime(path, (at_ms / 1000, at_ms / 1000))
        return self.version

    def create(self, *, partitions: tuple[str, ...] = (), configuration: dict | None = None, **metadata) -> int:
        return self.commit(protocol(), meta(partitions, configuration, **metadata), operation="CREATE TABLE")

    def drop_commits_before(self, version: int) -> None:
        """What log cleanup does once a checkpoint covers them."""
        for v in range(version):
            (self.dir / f"{v:020d}.json").unlink()


def protocol(reader: int = 1, writer: int = 2, **features) -> dict:
    return {"protocol": {"minReaderVersion": reader, "minWriterVersion": writer, **features}}


def meta(partitions=(), configuration=None, schema=None, **extra) -> dict:
    return {
        "metaData": {
            "id": "5f2a1d9e-0000-4000-8000-000000000001",
            "format": {"provider": "parquet", "options": {}},
            "schemaString": json.dumps(schema or SCHEMA),
            "partitionColumns": list(partitions),
            "configuration": configuration or {},
            "createdTime": 1_799_000_000_000,
            **extra,
        }
    }


def add(path: str, rows: int | None, size: int = 100, dv: dict | None = None, data_change: bool = True) -> dict:
    action: dict = {"path": path, "partitionValues": {}, "size": size, "modificationTime": 1, "dataChange": data_change}
    if rows is not None:
        action["stats"] = json.dumps({"numRecords": rows, "minValues": {}, "maxValues": {}, "nullCount": {}})
    if dv is not None:
        action["deletionVector"] = dv
    return {"add": action}


def remove(path: str, dv: dict | None = None) -> dict:
    action: dict = {"path": path, "deletionTimestamp": 2, "dataChange": True}
    if dv is not None:
        action["deletionVector"] = dv
    return {"remove": action}


def dv(cardinality: int, where: str = "ab^-aqEH.-t@S}K{vb[*k^") -> dict:
    return {"storageType": "u", "pathOrInlineDv": where, "offset": 1, "sizeInBytes": 36, "cardinality": cardinality}
