"""Row counts of parquet tables without a JVM or pyarrow: every parquet file ends with its
FileMetaData (Thrift compact protocol) whose field 3 is the file's row count.

Only that one field is read; everything before it (the format version, the schema) is
skipped by type, so any writer's footer works. A table's row count is the sum over its data
files (partition subdirectories included; `_SUCCESS`, `.crc` and other hidden files skipped).
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"PAR1"
_NUM_ROWS_FIELD = 3

# Thrift compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


class NotParquet(ValueError):
    """A file that does not end like a parquet file (or whose footer is damaged)."""


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise NotParquet("parquet footer ends early")
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

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):
            return  # a struct field's boolean lives in its type id
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            length = self.varint()  # read first: `self.pos += self.varint()` would drop the varint's bytes
            self.pos += length
        elif kind in (_LIST, _SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self._skip_element(element)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self._skip_element(types >> 4)
                    self._skip_element(types & 0x0F)
        elif kind == _STRUCT:
            while (field := self.field_header()) is not None:
                self.skip(field[1])
        else:
            raise NotParquet(f"unknown Thrift type {kind} in parquet footer")

    def _skip_element(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):  # inside containers a boolean takes one byte
            self.pos += 1
        else:
            self.skip(kind)

    def field_header(self, last_id: list[int] | None = None) -> tuple[int, int] | None:
        """(field id, type) of the next struct field, None at the struct's end."""
        header = self.byte()
        if header == 0:
            return None
        delta, kind = header >> 4, header & 0x0F
        field_id = (last_id[0] if last_id else 0) + delta if delta else self.zigzag()
        if last_id is not None:
            last_id[0] = field_id
        return field_id, kind


def file_row_count(path: Path) -> int:
    """The row count a parquet file's footer records."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size < 12:
            raise NotParquet(f"{path.name} is too small to be a parquet file")
        fh.seek(size - 8)
        tail = fh.read(8)
        if tail[4:] != MAGIC:
            raise NotParquet(f"{path.name} does not end with the parquet magic bytes")
        (length,) = struct.unpack("<i", tail[:4])
        if not 0 < length <= size - 12:
            raise NotParquet(f"{path.name} has a damaged parquet footer length")
        fh.seek(size - 8 - length)
        reader = _Reader(fh.read(length))
    last_id = [0]
    while (field := reader.field_header(last_id)) is not None:
        field_id, kind = field
        if field_id == _NUM_ROWS_FIELD and kind == _I64:
            return reader.zigzag()
        reader.skip(kind)
    raise NotParquet(f"{path.name}'s parquet footer has no row count")


def table_row_count(table_dir: Path) -> int:
    """Rows of a parquet table: the sum over its data files."""
    total = 0
    for path in sorted(table_dir.rglob("*")):
        relative = path.relative_to(table_dir).parts
        if path.is_file() and not any(part.startswith(("_", ".")) for part in relative):
            total += file_row_count(path)
    return total
