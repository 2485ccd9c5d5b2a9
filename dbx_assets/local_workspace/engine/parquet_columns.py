"""A few columns of a parquet file, without a JVM or pyarrow: what a Delta checkpoint needs.

The footer (Thrift compact protocol) gives the schema and each column chunk's offsets; each chunk's
pages are decoded here. Supported, which is what Spark's parquet-mr writer produces for a Delta
checkpoint by default: codecs UNCOMPRESSED, SNAPPY and GZIP; data pages v1 and v2; values PLAIN or
dictionary-encoded (PLAIN_DICTIONARY / RLE_DICTIONARY); levels in the RLE/bit-packed hybrid; leaves
nested in structs at any depth, with at most one repeated ancestor (a list or a map, as Delta's
`partitionColumns` or `configuration`). Anything else (ZSTD or LZ4, DELTA_* encodings, lists of
lists) raises `UnsupportedParquet`, never a wrong value, so a caller can fall back.

`read_columns(path, [("add", "path"), ...])` answers one Python list per requested leaf with one
item per row: the value, or None when it or any struct above it is null; for a leaf under a list or
map, the row's list of values (None when the list itself or a struct above it is null). A leaf the
file does not have gives a column of Nones, as a reader of an older checkpoint schema expects.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .parquet_footer import MAGIC, NotParquet, ThriftCompact, footer_bounds

# parquet.thrift enums
_BOOLEAN, _INT32, _INT64, _INT96, _FLOAT, _DOUBLE_T, _BYTE_ARRAY, _FIXED = range(8)
_REQUIRED, _OPTIONAL, _REPEATED = range(3)
_UNCOMPRESSED, _SNAPPY, _GZIP = 0, 1, 2
_CODECS = {3: "LZO", 4: "BROTLI", 5: "LZ4", 6: "ZSTD", 7: "LZ4_RAW"}
_PLAIN, _PLAIN_DICTIONARY, _RLE, _BIT_PACKED, _RLE_DICTIONARY = 0, 2, 3, 4, 8
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = range(4)
_UTF8 = 0  # ConvertedType


class UnsupportedParquet(NotParquet):
    """A valid parquet file using something this reader does not decode (a codec, an encoding, a nesting)."""


def snappy_decompress(data: bytes) -> bytes:
    """Snappy's raw block format (what parquet's SNAPPY codec stores)."""
    src = ThriftCompact(data)
    length = src.varint()
    out = bytearray()
    pos, end = src.pos, len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            out += data[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            size = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 2], "little")
            pos += 2
        else:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise NotParquet("damaged snappy data")
        start = len(out) - offset
        if offset >= size:
            out += out[start : start + size]
        else:  # the copy overlaps what it writes: a repeating pattern
            for i in range(size):
                out.append(out[start + i])
    if len(out) != length:
        raise NotParquet("damaged snappy data (length mismatch)")
    return bytes(out)


def _decompress(codec: int, data: bytes, size: int) -> bytes:
    if codec == _UNCOMPRESSED:
        return data
    if codec == _SNAPPY:
        return snappy_decompress(data)
    if codec == _GZIP:
        try:
            return zlib.decompress(data, 47)  # gzip or zlib header
        except zlib.error as exc:
            raise NotParquet(f"damaged gzip page: {exc}") from None
    raise UnsupportedParquet(f"parquet codec {_CODECS.get(codec, codec)} is not supported")


def _hybrid(data: bytes, pos: int, end: int, width: int, count: int) -> list[int]:
    """RLE / bit-packed hybrid values (levels, dictionary indices)."""
    out: list[int] = []
    byte_width = (width + 7) // 8
    mask = (1 << width) - 1
    reader = ThriftCompact(data, pos)
    while len(out) < count and reader.pos < end:
        header = reader.varint()
        if header & 1:  # bit-packed groups of 8
            groups = header >> 1
            nbytes = groups * width
            bits = int.from_bytes(data[reader.pos : reader.pos + nbytes], "little")
            reader.pos += nbytes
            out.extend((bits >> (i * width)) & mask for i in range(groups * 8))
        else:
            run = header >> 1
            value = int.from_bytes(data[reader.pos : reader.pos + byte_width], "little")
            reader.pos += byte_width
            out.extend([value] * run)
    if len(out) < count:
        raise NotParquet("parquet levels end early")
    return out[:count]


def _plain(data: bytes, pos: int, count: int, physical: int, type_length: int, utf8: bool) -> list[Any]:
    if physical == _BYTE_ARRAY:
        out: list[Any] = []
        for _ in range(count):
            (length,) = struct.unpack_from("<i", data, pos)
            pos += 4
            raw = data[pos : pos + length]
            pos += length
            out.append(raw.decode("utf-8", "replace") if utf8 else raw)
        return out
    if physical == _INT32:
        return list(struct.unpack_from(f"<{count}i", data, pos))
    if physical == _INT64:
        return list(struct.unpack_from(f"<{count}q", data, pos))
    if physical == _FLOAT:
        return list(struct.unpack_from(f"<{count}f", data, pos))
    if physical == _DOUBLE_T:
        return list(struct.unpack_from(f"<{count}d", data, pos))
    if physical == _BOOLEAN:
        bits = int.from_bytes(data[pos : pos + (count + 7) // 8], "little")
        return [bool((bits >> i) & 1) for i in range(count)]
    size = 12 if physical == _INT96 else type_length
    return [data[pos + i * size : pos + (i + 1) * size] for i in range(count)]


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]
    physical: int
    type_length: int
    utf8: bool
    max_def: int
    max_rep: int
    list_def: int  # definition level of the repeated ancestor (0 when none)


def _leaves(schema: list[dict[int, Any]]) -> dict[tuple[str, ...], _Leaf]:
    """The flattened schema (depth first) as leaves with their level bounds."""
    out: dict[tuple[str, ...], _Leaf] = {}
    pos = 1  # element 0 is the root

    def walk(prefix: tuple[str, ...], max_def: int, max_rep: int, list_def: int) -> None:
        nonlocal pos
        element = schema[pos]
        pos += 1
        name = element.get(4, b"").decode("utf-8", "replace")
        repetition = element.get(3, _REQUIRED)
        d = max_def + (repetition != _REQUIRED)
        r = max_rep + (repetition == _REPEATED)
        ld = d if repetition == _REPEATED else list_def
        path = (*prefix, name)
        children = element.get(5)
        if children:
            for _ in range(children):
                walk(path, d, r, ld)
            return
        logical = element.get(10) or {}
        utf8 = element.get(6) == _UTF8 or 1 in logical
        out[path] = _Leaf(path, element.get(1, _BYTE_ARRAY), element.get(2, 0), utf8, d, r, ld)

    root_children = schema[0].get(5, 0) if schema else 0
    for _ in range(root_children):
        walk((), 0, 0, 0)
    return out


class ParquetFile:
    """One parquet file's footer; `column` reads one leaf column of every row group."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        if self.data[:4] != MAGIC:
            raise NotParquet(f"{path.name} is not a parquet file")
        start, _ = footer_bounds(path.name, len(self.data), self.data[-8:])
        footer = ThriftCompact(self.data, start).struct()
        self.num_rows: int = footer.get(3, 0)
        self.leaves = _leaves(footer.get(2) or [])
        self.row_groups: list[dict[int, Any]] = footer.get(4) or []

    def has(self, path: Sequence[str]) -> bool:
        return tuple(path) in self.leaves

    def leaves_under(self, prefix: Sequence[str]) -> list[tuple[str, ...]]:
        prefix = tuple(prefix)
        return [p for p in self.leaves if p[: len(prefix)] == prefix]

    def column(self, path: Sequence[str]) -> list[Any]:
        leaf = self.leaves.get(tuple(path))
        if leaf is None:
            return [None] * self.num_rows
        if leaf.max_rep > 1:
            raise UnsupportedParquet(f"column {'.'.join(path)} is nested in more than one list or map")
        out: list[Any] = []
        for group in self.row_groups:
            chunk = next(
                (c for c in group.get(1) or [] if tuple(_text(p) for p in c.get(3, {}).get(3, [])) == leaf.path),
                None,
            )
            if chunk is None:
                raise NotParquet(f"{self.path.name}: a row group has no column {'.'.join(path)}")
            out.extend(self._chunk(leaf, chunk))
        if len(out) != self.num_rows:
            raise NotParquet(f"{self.path.name}: column {'.'.join(path)} has {len(out)} of {self.num_rows} rows")
        return out

    def _chunk(self, leaf: _Leaf, chunk: dict[int, Any]) -> list[Any]:
        meta = chunk[3]
        codec, total_values = meta.get(4, 0), meta.get(5, 0)
        start = meta.get(11) or meta[9]  # the dictionary page comes first when there is one
        if not 4 <= start < len(self.data):
            raise NotParquet(f"{self.path.name}: a column chunk points outside the file")
        dictionary: list[Any] | None = None
        defs: list[int] = []
        reps: list[int] = []
        values: list[Any] = []
        pos, seen = start, 0
        while seen < total_values:
            reader = ThriftCompact(self.data, pos)
            header = reader.struct()
            body_start = reader.pos
            kind, size, compressed_size = header.get(1), header.get(2, 0), header.get(3, 0)
            body = self.data[body_start : body_start + compressed_size]
            pos = body_start + compressed_size
            if pos > len(self.data):
                raise NotParquet(f"{self.path.name}: a page runs past the end of the file")
            if kind == _DICTIONARY_PAGE:
                page = header.get(7) or {}
                if page.get(2, _PLAIN) not in (_PLAIN, _PLAIN_DICTIONARY):
                    raise UnsupportedParquet(f"dictionary encoding {page.get(2)} is not supported")
                raw = _decompress(codec, body, size)
                dictionary = _plain(raw, 0, page.get(1, 0), leaf.physical, leaf.type_length, leaf.utf8)
                continue
            if kind == _DATA_PAGE:
                page = header.get(5) or {}
                count, encoding = page.get(1, 0), page.get(2, _PLAIN)
                raw = _decompress(codec, body, size)
                at = 0
                page_reps, at = self._levels_v1(raw, at, leaf.max_rep, count, page.get(4, _RLE))
                page_defs, at = self._levels_v1(raw, at, leaf.max_def, count, page.get(3, _RLE))
            elif kind == _DATA_PAGE_V2:
                page = header.get(8) or {}
                count, encoding = page.get(1, 0), page.get(4, _PLAIN)
                rep_len, def_len = page.get(6, 0), page.get(5, 0)
                page_reps = _hybrid(body, 0, rep_len, leaf.max_rep.bit_length(), count) if leaf.max_rep else [0] * count
                page_defs = (
                    _hybrid(body, rep_len, rep_len + def_len, leaf.max_def.bit_length(), count)
                    if leaf.max_def
                    else [0] * count
                )
                rest = body[rep_len + def_len :]
                raw = _decompress(codec, rest, size - rep_len - def_len) if page.get(7, True) else rest
                at = 0
            elif kind == _INDEX_PAGE:
                continue
            else:
                raise UnsupportedParquet(f"parquet page type {kind} is not supported")
            present = sum(1 for d in page_defs if d == leaf.max_def)
            if encoding == _PLAIN:
                values.extend(_plain(raw, at, present, leaf.physical, leaf.type_length, leaf.utf8))
            elif encoding in (_PLAIN_DICTIONARY, _RLE_DICTIONARY):
                if dictionary is None:
                    raise NotParquet(f"{self.path.name}: dictionary-encoded page without a dictionary")
                width = raw[at] if present else 0
                indexes = _hybrid(raw, at + 1, len(raw), width, present) if present else []
                try:
                    values.extend(dictionary[i] for i in indexes)
                except IndexError:
                    raise NotParquet(f"{self.path.name}: dictionary index out of range") from None
            else:
                raise UnsupportedParquet(f"parquet encoding {encoding} is not supported")
            defs.extend(page_defs)
            reps.extend(page_reps)
            seen += count
        return _assemble(leaf, defs, reps, values)

    @staticmethod
    def _levels_v1(raw: bytes, at: int, max_level: int, count: int, encoding: int) -> tuple[list[int], int]:
        if not max_level:
            return [0] * count, at
        if encoding != _RLE:
            raise UnsupportedParquet(f"parquet level encoding {encoding} is not supported")
        (length,) = struct.unpack_from("<i", raw, at)
        at += 4
        return _hybrid(raw, at, at + length, max_level.bit_length(), count), at + length


def _assemble(leaf: _Leaf, defs: list[int], reps: list[int], values: list[Any]) -> list[Any]:
    it = iter(values)
    if not leaf.max_rep:
        return [next(it) if d == leaf.max_def else None for d in defs]
    rows: list[Any] = []
    for d, r in zip(defs, reps, strict=True):
        if r == 0:  # a new row: its list is null, empty or has a first element
            if d < leaf.list_def - 1:
                rows.append(None)
                continue
            rows.append([])
            if d == leaf.list_def - 1:
                continue
        item = next(it) if d == leaf.max_def else None
        current = rows[-1]
        if current is not None:
            current.append(item)
    return rows


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_columns(path: Path, columns: Iterable[Sequence[str]]) -> dict[tuple[str, ...], list[Any]]:
    """The requested leaf columns of `path`, one item per row each (see the module docstring)."""
    parquet = ParquetFile(path)
    return {tuple(c): parquet.column(c) for c in columns}
