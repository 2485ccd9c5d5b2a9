"""`read_files(...)`, `STREAM read_files(...)`, `STREAM table`, streaming tables and materialized views
(`CREATE [OR REFRESH] STREAMING TABLE ... AS`, `CREATE [OR REPLACE] MATERIALIZED VIEW ... AS`, `REFRESH ...`) and
`COPY INTO` in `spark.sql`, rewritten onto Spark's own readers in the task process.

Each `read_files('path', format => 'json', ...)` call in a statement becomes a temporary view over
`spark.read.format(...).options(...).load(path)` (`readStream` after `STREAM`), and the call's
text is replaced by the view's name; the rest of the statement runs on Spark unchanged (after the
Unity Catalog and path rewriting). The schema is inferred with column types, as read_files does,
with a `_rescued_data` column (Spark's corrupt-record column: a record that does not parse
against the schema lands there whole). `COPY INTO` loads the files of a path not loaded into the
table before, tracked per table under `<warehouse>/_copy_into/` (a file already loaded is
skipped; a table dropped and created again starts over). Parsing is pure and tested without Spark.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auto_loader import RESCUED_DATA, apply_hints, data_files, parse_schema_hints, with_rescued

_CALL = re.compile(r"(?P<stream>\bSTREAM\s*(?:\(\s*)?)?\bread_files\s*\(", re.I)
_FORMATS = {"json": "json", "csv": "csv", "parquet": "parquet", "text": "text", "orc": "orc", "avro": "avro"}
_VIEW_COUNTER = itertools.count(1)


class ReadFilesError(ValueError):
    pass


@dataclass(frozen=True)
class ReadFilesCall:
    start: int  # span in the statement text, STREAM included
    end: int
    stream: bool
    path: str
    options: dict[str, str] = field(default_factory=dict)


def _scan_to_close(text: str, i: int) -> int:
    """Index just past the `)` closing the parenthesis opened before `i` (quotes respected)."""
    depth, quote = 1, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    i += 1
                else:
                    quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ReadFilesError("read_files(...): unbalanced parentheses")


def _split_args(body: str) -> list[str]:
    out, depth, quote, token = [], 0, None, ""
    for ch in body:
        if quote:
            token += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "(<":
            depth += 1
        elif ch in ")>" and not token.rstrip().endswith("="):
            depth -= 1
        if ch == "," and depth == 0:
            out.append(token.strip())
            token = ""
        else:
            token += ch
    if token.strip():
        out.append(token.strip())
    return out


def _literal(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace(value[0] * 2, value[0])
    return value


def find_calls(text: str) -> list[ReadFilesCall]:
    """Every `read_files(...)` call in `text` (outside string literals is assumed: a statement that
    quotes the words `read_files(` in a string is not one this rewriting is for)."""
    calls: list[ReadFilesCall] = []
    pos = 0
    while True:
        m = _CALL.search(text, pos)
        if not m:
            return calls
        close = _scan_to_close(text, m.end())
        args = _split_args(text[m.end() : close - 1])
        end = close
        stream = bool(m.group("stream"))
        if stream and "(" in m.group("stream"):  # STREAM(read_files(...))
            rest = re.match(r"\s*\)", text[end:])
            end += rest.end() if rest else 0
        path, options = None, {}
        for arg in args:
            named = re.match(r"^([A-Za-z_][\w.]*)\s*=>\s*(.*)$", arg, re.S)
            if named:
                options[named.group(1)] = _literal(named.group(2))
            elif path is None:
                path = _literal(arg)
        if not path:
            raise ReadFilesError("read_files(...) needs a path as its first argument")
        calls.append(ReadFilesCall(m.start(), end, stream, path, options))
        pos = end


@dataclass(frozen=True)
class ReadPlan:
    format: str
    options: dict[str, str]  # Spark reader options
    schema: str | None  # a DDL schema given by the user
    schema_hints: str | None
    rescued_column: str | None


def plan_read(path: str, options: dict[str, str], first_file: str | None = None) -> ReadPlan:
    """read_files' options as a Spark reader's: `format` (else the files' extension), inferred
    column types, `_rescued_data` unless a schema is given."""
    lowered = {k.lower(): (k, v) for k, v in options.items()}
    fmt = (lowered.pop("format", (None, None))[1] or "").lower()
    if not fmt:
        suffix = Path(first_file or path).suffix.lstrip(".").lower()
        fmt = {"jsonl": "json", "ndjson": "json", "tsv": "csv"}.get(suffix, suffix)
    if fmt not in _FORMATS:
        raise ReadFilesError(
            f"read_files: cannot tell the format of {path}: pass format => 'json' | 'csv' | 'parquet' | 'text'"
        )
    schema = lowered.pop("schema", (None, None))[1]
    hints = lowered.pop("schemahints", (None, None))[1]
    rescued = lowered.pop("rescueddatacolumn", (None, None))[1]
    infer_types = lowered.pop("infercolumntypes", (None, "true"))[1]
    spark_options = {key: value for key, value in lowered.values()}
    if "inferschema" not in {k.lower() for k in spark_options} and fmt == "csv":
        spark_options["inferSchema"] = "true" if str(infer_types).lower() == "true" else "false"
    if rescued is None and schema is None and fmt in ("json", "csv"):
        rescued = RESCUED_DATA
    if rescued and fmt in ("json", "csv"):
        spark_options["columnNameOfCorruptRecord"] = rescued
    return ReadPlan(_FORMATS[fmt], spark_options, schema, hints, rescued if fmt in ("json", "csv") else None)


# --- COPY INTO ------------------------------------------------------------------------------------

_COPY_INTO = re.compile(
    r"^\s*COPY\s+INTO\s+(?P<table>(?:`[^`]+`|[\w]+)(?:\s*\.\s*(?:`[^`]+`|[\w]+))*)\s+"
    r"FROM\s+(?P<path>'(?:[^']|'')*'|\"[^\"]*\")\s+"
    r"FILEFORMAT\s*=\s*(?P<format>\w+)(?P<rest>.*?);?\s*$",
    re.I | re.S,
)


@dataclass(frozen=True)
class CopyInto:
    table: str
    path: str
    format: str
    format_options: dict[str, str]
    copy_options: dict[str, str]
    files: tuple[str, ...] | None
    pattern: str | None


def _option_list(rest: str, keyword: str) -> dict[str, str]:
    m = re.search(keyword + r"\s*\(", rest, re.I)
    if not m:
        return {}
    close = _scan_to_close(rest, m.end())
    out = {}
    for arg in _split_args(rest[m.end() : close - 1]):
        pair = re.match(r"^\s*('(?:[^']|'')*'|\"[^\"]*\"|[\w.]+)\s*=\s*(.+)$", arg, re.S)
        if pair:
            out[_literal(pair.group(1))] = _literal(pair.group(2))
    return out


def parse_copy_into(text: str) -> CopyInto | None:
    """A `COPY INTO table FROM 'path' FILEFORMAT = ...` statement, or None for any other text."""
    stripped = re.sub(r"^\s*(?:--[^\n]*\n\s*)*", "", text)
    m = _COPY_INTO.match(stripped)
    if not m:
        return None
    rest = m.group("rest")
    files_m = re.search(r"\bFILES\s*=\s*\(([^)]*)\)", rest, re.I)
    pattern_m = re.search(r"\bPATTERN\s*=\s*'((?:[^']|'')*)'", rest, re.I)
    files = tuple(_literal(f) for f in _split_args(files_m.group(1))) if files_m else None
    return CopyInto(
        table=m.group("table"),
        path=_literal(m.group("path")),
        format=m.group("format").lower(),
        format_options=_option_list(rest, "FORMAT_OPTIONS"),
        copy_options={k.lower(): v for k, v in _option_list(rest, "COPY_OPTIONS").items()},
        files=files,
        pattern=pattern_m.group(1).replace("''", "'") if pattern_m else None,
    )


_SCHEMALESS_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<table>(?:`[^`]+`|[\w]+)(?:\s*\.\s*(?:`[^`]+`|[\w]+))*)\s*;?\s*$",
    re.I,
)

# --- CREATE STREAMING TABLE -----------------------------------------------------------------------

_LEADING_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*(?:\n|$)\s*)*", re.S)
_NAME = r"(?P<table>(?:`[^`]+`|[\w]+)(?:\s*\.\s*(?:`[^`]+`|[\w]+))*)"
_CREATE_HEAD = re.compile(
    r"CREATE\s+(?P<how>OR\s+REFRESH\s+|OR\s+REPLACE\s+)?(?P<kind>STREAMING\s+TABLE|MATERIALIZED\s+VIEW)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME,
    re.I,
)
_REFRESH = re.compile(
    r"REFRESH\s+(?P<kind>STREAMING\s+TABLE|MATERIALIZED\s+VIEW)\s+" + _NAME + r"(?:\s+(?:FULL|SYNC|ASYNC))*\s*;?\s*$",
    re.I,
)


@dataclass(frozen=True)
class PipelineTable:
    """`CREATE [OR REFRESH|OR REPLACE] STREAMING TABLE|MATERIALIZED VIEW name [(columns)] [clauses] AS
    query`, or `REFRESH STREAMING TABLE|MATERIALIZED VIEW name` (query None)."""

    kind: str  # "streaming_table" | "materialized_view"
    table: str
    query: str | None


def _top_level_as(text: str, i: int) -> int | None:
    """Index of the first ` AS ` keyword at parenthesis depth 0 from `i`, outside quotes and comments."""
    depth, quote = 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "-" and text.startswith("--", i):
            i = text.find("\n", i)
            if i < 0:
                return None
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text[i : i + 2].upper() == "AS" and not _word(text, i - 1) and not _word(text, i + 2):
            return i
        i += 1
    return None


def _word(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def parse_pipeline_table(text: str) -> PipelineTable | None:
    """A streaming table or materialized view statement (leading comments allowed), or None."""
    body = _LEADING_COMMENTS.sub("", text)
    refresh = _REFRESH.match(body)
    if refresh:
        kind = "streaming_table" if refresh.group("kind").upper().startswith("STREAMING") else "materialized_view"
        return PipelineTable(kind, refresh.group("table"), None)
    head = _CREATE_HEAD.match(body)
    if not head:
        return None
    at = _top_level_as(body, head.end())
    if at is None:
        return None
    query = body[at + 2 :].strip().rstrip(";").strip()
    kind = "streaming_table" if head.group("kind").upper().startswith("STREAMING") else "materialized_view"
    return PipelineTable(kind, head.group("table"), query)


_PART = r"(?:`[^`]+`|[A-Za-z_]\w*)"
_STREAM_TABLE = re.compile(
    rf"\bSTREAM\s*(?:\(\s*(?P<inner>{_PART}(?:\s*\.\s*{_PART})*)\s*\)|\s(?P<bare>{_PART}(?:\s*\.\s*{_PART})*))",
    re.I,
)


def find_stream_tables(text: str) -> list[tuple[int, int, str]]:
    """`STREAM table` / `STREAM(table)` (a streaming read of a Delta table): (start, end, name) each,
    `STREAM read_files(...)` left to find_calls."""
    found = []
    for m in _STREAM_TABLE.finditer(text):
        name = m.group("inner") or m.group("bare")
        if name.lower() == "read_files" or (m.group("bare") and re.match(r"\s*\(", text[m.end() :])):
            continue
        found.append((m.start(), m.end(), name))
    return found


def parse_streaming_table(text: str) -> tuple[str, str] | None:
    parsed = parse_pipeline_table(text)
    if parsed is None or parsed.kind != "streaming_table" or parsed.query is None:
        return None
    return parsed.table, parsed.query


# --- the pyspark patch --------------------------------------------------------------------------------


def install_read_files_patches(spark: Any, mapper: Any, warehouse: Path) -> None:
    """Wrap `spark.sql` (outermost: after this, the Unity Catalog and path rewriting run)."""
    from pyspark.sql import SparkSession

    if getattr(SparkSession.sql, "_dbx_read_files", False):
        return
    orig_sql = SparkSession.sql

    @functools.wraps(orig_sql)
    def sql(self: Any, sqlQuery: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sqlQuery, str) and "samples" in sqlQuery.lower():
            from .sample_data import refuse_writes

            refuse_writes(sqlQuery)
        if not isinstance(sqlQuery, str) or not re.search(
            r"read_files|COPY\s+INTO|STREAMING\s+TABLE|MATERIALIZED\s+VIEW|CREATE\s+TABLE", sqlQuery, re.I
        ):
            return orig_sql(self, sqlQuery, *args, **kwargs)
        placeholder = _SCHEMALESS_TABLE.match(sqlQuery)
        if placeholder:  # Delta's schemaless CREATE TABLE: COPY INTO ... mergeSchema creates it
            if not self.catalog.tableExists(placeholder.group("table")):
                _write_log(_copy_log(self, placeholder.group("table"), warehouse), {"files": [], "pending": True})
            return self.createDataFrame([], "x STRING").select()
        copy = parse_copy_into(sqlQuery)
        if copy is not None:
            return _copy_into(self, copy)
        pipeline_table = parse_pipeline_table(sqlQuery)
        if pipeline_table is not None:
            return _pipeline_table(self, pipeline_table)
        return orig_sql(self, _with_views(self, sqlQuery), *args, **kwargs)

    def _with_views(spark: Any, text: str) -> str:
        for call in reversed(find_calls(text)):
            df = _read(spark, call.path, call.options, call.stream)
            view = f"__read_files_{next(_VIEW_COUNTER)}"
            df.createOrReplaceTempView(view)
            text = text[: call.start] + view + text[call.end :]
        return text

    def _read(spark: Any, path: str, options: dict[str, str], stream: bool) -> Any:
        from pyspark.sql.types import StructType, _parse_datatype_string

        local = Path(mapper.storage(path))
        files = data_files(local) if local.exists() else []
        plan = plan_read(path, options, str(files[0]) if files else None)
        if plan.schema:
            struct = _parse_datatype_string(plan.schema)
        else:
            infer_opts = dict(plan.options)
            found = spark.read.format(plan.format).options(**infer_opts).load(path).schema.jsonValue()["fields"]
            fields = [f for f in found if f["name"] != plan.rescued_column]
            if plan.schema_hints:
                hints = [(n, _parse_datatype_string(t).jsonValue()) for n, t in parse_schema_hints(plan.schema_hints)]
                fields = apply_hints(fields, hints)
            struct = StructType.fromJson({"type": "struct", "fields": with_rescued(fields, plan.rescued_column)})
        reader = spark.readStream if stream else spark.read
        return reader.format(plan.format).schema(struct).options(**plan.options).load(path)

    def _copy_into(spark: Any, copy: CopyInto) -> Any:
        from pyspark.sql import functions as F

        local = Path(mapper.storage(copy.path))
        candidates = data_files(local) if local.exists() else []
        if copy.files is not None:
            wanted = {f.strip("/") for f in copy.files}
            candidates = [f for f in candidates if str(f.relative_to(local)) in wanted or f.name in wanted]
        if copy.pattern:
            import fnmatch

            candidates = [f for f in candidates if fnmatch.fnmatch(str(f.relative_to(local)), copy.pattern)]
        exists = spark.catalog.tableExists(copy.table)
        log_path = _copy_log(spark, copy.table, warehouse)
        log = _read_log(log_path) if exists else {"files": []}
        force = copy.copy_options.get("force", "false").lower() == "true"
        loaded = set(log["files"])
        new = [f for f in candidates if force or str(f) not in loaded]
        empty = spark.createDataFrame([(0, 0)], "num_affected_rows BIGINT, num_inserted_rows BIGINT")
        if not new:
            return empty
        options = {**copy.format_options}
        plan = plan_read(copy.path, {"format": copy.format, **options, "rescuedDataColumn": "_corrupt_record"})
        df = spark.read.format(plan.format).options(**plan.options).load([mapper.spark(str(f)) for f in new])
        df = df.drop("_corrupt_record") if "_corrupt_record" in df.columns else df
        rows = df.count()
        if not exists:
            df.write.saveAsTable(copy.table)
        else:
            target = spark.table(copy.table)
            missing = [c for c in df.columns if c.lower() not in {t.lower() for t in target.columns}]
            if missing and copy.copy_options.get("mergeschema", "false").lower() == "true":
                columns = ", ".join(f"`{c}` {df.schema[c].dataType.simpleString()}" for c in missing)
                spark.sql(f"ALTER TABLE {copy.table} ADD COLUMNS ({columns})")
                target = spark.table(copy.table)
            lower = {c.lower(): c for c in df.columns}
            aligned = df.select(
                [
                    (F.col(lower[f.name.lower()]) if f.name.lower() in lower else F.lit(None))
                    .cast(f.dataType)
                    .alias(f.name)
                    for f in target.schema.fields
                ]
            )
            aligned.write.insertInto(copy.table)
        log["files"] = sorted(loaded | {str(f) for f in new})
        _write_log(log_path, log)
        return spark.createDataFrame([(rows, rows)], "num_affected_rows BIGINT, num_inserted_rows BIGINT")

    def _pipeline_table(spark: Any, statement: PipelineTable) -> Any:
        """A streaming table or materialized view is a Delta table here, its defining query kept
        next to the warehouse so `REFRESH ...` runs it again: a streaming table ingests what is new
        since its checkpoint, a materialized view is recomputed in full (no incremental refresh)."""
        definition = (
            warehouse
            / "_pipeline_tables"
            / (hashlib.sha1(_table_key(spark, statement.table).encode()).hexdigest()[:16] + ".json")
        )
        query = statement.query
        if query is None:
            kept = _read_log(definition)
            if kept.get("kind") != statement.kind or not spark.catalog.tableExists(statement.table):
                what = statement.kind.replace("_", " ")
                raise ReadFilesError(
                    f"REFRESH {what.upper()} {statement.table}: there is no {what} {statement.table} on this "
                    f"workspace; create it first with CREATE {what.upper()} ... AS <query>."
                )
            query = str(kept["query"])
        else:
            _write_log(definition, {"kind": statement.kind, "query": query})
        if statement.kind == "streaming_table":
            return _streaming_table(spark, statement.table, query)
        orig_sql(spark, _with_views(spark, f"CREATE OR REPLACE TABLE {statement.table} USING DELTA AS {query}"))
        return spark.createDataFrame([], "x STRING").select()

    def _streaming_table(spark: Any, table: str, query: str) -> Any:
        """A streaming table locally: the query's stream written to the table with availableNow,
        its checkpoint under the warehouse; a refresh (the same statement again) ingests only new data."""
        for start, end, name in reversed(find_stream_tables(query)):  # a Delta source, read as a stream
            view = f"__stream_{next(_VIEW_COUNTER)}"
            spark.readStream.table(name).createOrReplaceTempView(view)
            query = query[:start] + view + query[end:]
        df = spark.sql(query)
        key = hashlib.sha1(_table_key(spark, table).encode()).hexdigest()[:16]
        checkpoint = warehouse / "_streaming_checkpoints" / key
        if not spark.catalog.tableExists(table):
            import shutil

            shutil.rmtree(checkpoint, ignore_errors=True)  # a dropped table starts over
        writer = df.writeStream.option("checkpointLocation", "file:" + str(checkpoint)).trigger(availableNow=True)
        writer.toTable(table).awaitTermination()
        return spark.createDataFrame([], "x STRING").select()

    sql._dbx_read_files = True  # type: ignore[attr-defined]
    for attr in ("_dbx_patched", "_dbx_uc_patched"):
        setattr(sql, attr, getattr(orig_sql, attr, False))
    SparkSession.sql = sql  # type: ignore[method-assign]


def _table_key(spark: Any, table: str) -> str:
    from .uc_names import split_name

    parts = [p.lower() for p in split_name(table)]
    if len(parts) == 1:
        parts = [spark.catalog.currentDatabase().lower(), *parts]
    if len(parts) == 2:
        parts = [spark.catalog.currentCatalog().lower(), *parts]
    return ".".join(parts)


def _copy_log(spark: Any, table: str, warehouse: Path) -> Path:
    return warehouse / "_copy_into" / (hashlib.sha1(_table_key(spark, table).encode()).hexdigest()[:16] + ".json")


def _read_log(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"files": []}


def _write_log(path: Path, log: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(log))
    os.replace(tmp, path)
