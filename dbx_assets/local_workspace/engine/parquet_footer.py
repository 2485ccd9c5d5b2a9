"""Row counts of parquet tables without a JVM or pyarrow: every parquet file ends with its
FileMetaData (Thrift compact protocol) whose field 3 is the file's row count.

The footer is decoded generically (a struct is a dict of field id -> value), so any writer's
footer works; `ThriftCompact` also serves parquet_columns. A table's row count is the sum over its data
files (partition subdirectories included; `_SUCCESS`, `.crc` and other hidden files skipped).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

MAGIC = b"PAR1"
_NUM_ROWS_FIELD = 3

# Thrift compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


class NotParquet(ValueError):
    """A file that does not end like a parquet file (or whose footer is damaged)."""


class ThriftCompact:
    """Thrift compact protocol, decoded generically: a struct is a dict of field id -> value."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise NotParquet("parquet metadata ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind == _TRUE:
            return True
        if kind == _FALSE:
            return False
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.pos += 8
            return struct.unpack_from("<d", self.data, self.pos - 8)[0]
        if kind == _BINARY:
            length = self.varint()
            self.pos += length
            return self.data[self.pos - length : self.pos]
        if kind in (_LIST, _SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return [self._element(element) for _ in range(size)]
        if kind == _MAP:
            size = self.varint()
            if not size:
                return {}
            types = self.byte()
            return {self._element(types >> 4): self._element(types & 0x0F) for _ in range(size)}
        if kind == _STRUCT:
            return self.struct()
        raise NotParquet(f"unknown Thrift type {kind} in parquet metadata")

    def _element(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):  # inside containers a boolean takes one byte
            return self.byte() == 1
        return self.value(kind)

    def struct(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return out
            delta, kind = header >> 4, header & 0x0F
            last = last + delta if delta else self.zigzag()
            out[last] = self.value(kind)


def footer_bounds(name: str, size: int, tail: bytes) -> tuple[int, int]:
    """(start, length) of the footer of a parquet file of `size` bytes ending in `tail` (its last 8)."""
    if size < 12 or tail[4:] != MAGIC:
        raise NotParquet(f"{name} does not end like a parquet file")
    (length,) = struct.unpack("<i", tail[:4])
    if not 0 < length <= size - 12:
        raise NotParquet(f"{name} has a damaged parquet footer length")
    return size - 8 - length, length


def file_row_count(path: Path) -> int:
    """The row count a parquet file's footer records."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 8))
        start, length = footer_bounds(path.name, size, fh.read(8))
        fh.seek(start)
        footer = ThriftCompact(fh.read(length)).struct()
    rows = footer.get(_NUM_ROWS_FIELD)
    if not isinstance(rows, int):
        raise NotParquet(f"{path.name}'s parquet footer has no row count")
    return rows


def table_row_count(table_dir: Path) -> int:
    """Rows of a parquet table: the sum over its data files."""
    total = 0
    for path in sorted(table_dir.rglob("*")):
        relative = path.relative_to(table_dir).parts
        if path.is_file() and not any(part.startswith(("_", ".")) for part in relative):
            total += file_row_count(path)
    return total
