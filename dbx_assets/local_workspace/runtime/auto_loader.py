"""Auto Loader (`spark.readStream.format("cloudFiles")`) on Spark's own file streaming source.

A DataStreamReader-level translation, installed in the task process with the other runtime
patches: `format("cloudFiles")` records the reader's options instead of naming a source, and
`load(path)` turns them into `readStream.format(<cloudFiles.format>).schema(<schema>)` over the
same path. Spark's file source then does the streaming: its checkpoint (the writer's
`checkpointLocation`) lists every file a query has committed, so a second run with
`trigger(availableNow=True)` ingests only files that landed since — exactly once across runs,
as Auto Loader's file notification/listing state does on Databricks.

Why not a registered Python data source: Spark 3.5 has no Python streaming data source API (it
arrives in Spark 4.0), and a translation keeps Spark's own file source with everything it brings
(`_metadata.file_path`, partition directories, `maxFilesPerTrigger`, checkpoint recovery).

The schema Auto Loader would infer and persist under `cloudFiles.schemaLocation` is inferred here
with a batch read over the files present at the first `load` and written to
`<schemaLocation>/_schemas/<version>` (Databricks' layout: `v1` then the schema's JSON); later
loads reuse it. Files landed since the last load are sampled again at each load: new columns
with `schemaEvolutionMode` `addNewColumns` (the default) are added to a new schema version and
the load fails naming them, so the next run (a job retry) picks them up, as on Databricks.
Option parsing and schema merging are pure (no JVM) so they are tested without Spark.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESCUED_DATA = "_rescued_data"
FORMATS = ("json", "csv", "parquet")
EVOLUTION_MODES = ("addNewColumns", "rescue", "failOnNewColumns", "none")
SCHEMAS_DIR = "_schemas"
SAMPLED_FILE = "_dbx_sampled_files.json"  # which files the persisted schema has seen (local bookkeeping)


class AutoLoaderError(ValueError):
    """An Auto Loader option Databricks would refuse, with Databricks' error class."""

    def __init__(self, error_class: str, message: str):
        super().__init__(f"[{error_class}] {message}")
        self.error_class = error_class


class UnknownFieldException(RuntimeError):
    """New columns found with schemaEvolutionMode addNewColumns: the schema was updated, the
    stream stops; restarting it picks the new columns up (Databricks' UnknownFieldException)."""

    def __init__(self, new_columns: list[str], files: list[str]):
        self.new_columns = new_columns
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        super().__init__(
            "[UNKNOWN_FIELD_EXCEPTION.NEW_FIELDS_IN_FILE] Encountered unknown fields during parsing: "
            f"{', '.join(new_columns)}, which can be fixed by an automatic retry: true. The schema at the "
            f"schema location was updated with them (files: {shown}); restart the stream (retry the job) to "
            "ingest them."
        )


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() == "true"


@dataclass(frozen=True)
class AutoLoaderOptions:
    """What the `cloudFiles.*` options ask for, and the options Spark's file source gets."""

    format: str
    schema_location: str | None
    infer_column_types: bool
    evolution_mode: str
    include_existing_files: bool
    schema_hints: str | None
    rescued_column: str | None  # None: no rescued data column
    spark_options: dict[str, str] = field(default_factory=dict)  # for readStream.format(format)
    read_options: dict[str, str] = field(default_factory=dict)  # the format's own options (inference too)


def translate_options(options: dict[str, str], user_schema: bool) -> AutoLoaderOptions:
    """Auto Loader's options as Spark file-source options. Raises AutoLoaderError as Databricks would."""
    cf = {k[len("cloudfiles.") :].lower(): v for k, v in options.items() if k.lower().startswith("cloudfiles.")}
    plain = {k: v for k, v in options.items() if not k.lower().startswith("cloudfiles.") and k.lower() != "path"}
    fmt = (cf.get("format") or "").lower()
    if not fmt:
        raise AutoLoaderError("CF_MISSING_FORMAT", "Option 'cloudFiles.format' is required: one of json, csv, parquet.")
    if fmt not in FORMATS:
        raise AutoLoaderError(
            "CF_UNSUPPORTED_FORMAT",
            f"cloudFiles.format '{fmt}' is not supported locally; use one of {', '.join(FORMATS)}.",
        )
    location = cf.get("schemalocation")
    if not user_schema and not location:
        raise AutoLoaderError(
            "CF_SCHEMA_LOCATION_REQUIRED",
            "Schema inference requires 'cloudFiles.schemaLocation' (where the inferred schema is kept across runs), "
            "or give the stream a schema with .schema(...).",
        )
    modes = {m.lower(): m for m in EVOLUTION_MODES}
    mode_given = cf.get("schemaevolutionmode")
    if mode_given is not None and mode_given.lower() not in modes:
        raise AutoLoaderError(
            "CF_INVALID_SCHEMA_EVOLUTION_MODE",
            f"cloudFiles.schemaEvolutionMode '{mode_given}' is not one of {', '.join(EVOLUTION_MODES)}.",
        )
    mode = modes[mode_given.lower()] if mode_given else ("none" if user_schema else "addNewColumns")
    lower_plain = {k.lower(): v for k, v in plain.items()}
    rescued: str | None = lower_plain.get("rescueddatacolumn")
    if rescued is None and not user_schema and mode != "none":
        rescued = RESCUED_DATA  # Databricks adds it whenever it infers the schema
    if not _bool(cf.get("includeexistingfiles"), True):
        # Spark's file source has no start-time filter (modifiedAfter is batch-only): refuse rather than
        # silently ingest the files that were there before the stream started.
        raise AutoLoaderError(
            "CF_UNSUPPORTED_OPTION",
            "cloudFiles.includeExistingFiles=false is not supported locally (Spark's file stream source reads "
            "every file present at its first run); start the stream on an empty directory instead.",
        )
    infer_types = _bool(cf.get("infercolumntypes"), fmt == "parquet")
    spark_options = {k: str(v) for k, v in plain.items() if k.lower() != "rescueddatacolumn"}
    read_options = dict(spark_options)
    if rescued and fmt in ("json", "csv"):
        # Spark's corrupt-record column: a record that does not parse against the schema lands there.
        spark_options["columnNameOfCorruptRecord"] = rescued
        spark_options.setdefault("mode", "PERMISSIVE")
    if "maxfilespertrigger" in cf:
        spark_options["maxFilesPerTrigger"] = str(cf["maxfilespertrigger"])
    return AutoLoaderOptions(
        format=fmt,
        schema_location=location,
        infer_column_types=infer_types,
        evolution_mode=mode,
        include_existing_files=_bool(cf.get("includeexistingfiles"), True),
        schema_hints=cf.get("schemahints"),
        rescued_column=rescued,
        spark_options=spark_options,
        read_options=read_options,
    )


def inference_options(opts: AutoLoaderOptions) -> dict[str, str]:
    """Options of the batch read that infers the schema: strings unless inferColumnTypes."""
    out = dict(opts.read_options)
    if opts.format == "json" and not opts.infer_column_types:
        out["primitivesAsString"] = "true"
    if opts.format == "csv":
        out["inferSchema"] = "true" if opts.infer_column_types else "false"
    if opts.format in ("json", "csv"):  # a malformed record is not a column of the schema
        out["columnNameOfCorruptRecord"] = opts.rescued_column or "_corrupt_record"
    return out


# --- schemas as JSON dicts (StructType.jsonValue()), merged without a JVM --------------------------


def merge_fields(current: list[dict], found: list[dict]) -> tuple[list[dict], list[str]]:
    """`current` with the fields of `found` it lacks appended (names compared case-insensitively,
    as Spark does); returns the merged fields and the new names."""
    known = {f["name"].lower() for f in current}
    new = [f for f in found if f["name"].lower() not in known]
    return [*current, *new], [f["name"] for f in new]


def parse_schema_hints(hints: str) -> list[tuple[str, str]]:
    """`"a int, b map<string,int>, `c d` string"` -> [(a, int), (b, map<string,int>), (c d, string)]."""
    out, depth, token = [], 0, ""
    for ch in hints + ",":
        if ch == "," and depth == 0:
            token = token.strip()
            if token:
                if token.startswith("`"):
                    end = token.index("`", 1)
                    name, kind = token[1:end], token[end + 1 :].strip()
                else:
                    name, _, kind = token.partition(" ")
                out.append((name.strip(), kind.strip()))
            token = ""
            continue
        depth += ch in "<("
        depth -= ch in ">)"
        token += ch
    return out


def apply_hints(fields: list[dict], hints: list[tuple[str, Any]]) -> list[dict]:
    """Fields with each hinted column's type replaced (or the column added): `hints` pairs a name
    with a type as JSON (DataType.jsonValue())."""
    out = [dict(f) for f in fields]
    index = {f["name"].lower(): i for i, f in enumerate(out)}
    for name, kind in hints:
        if name.lower() in index:
            out[index[name.lower()]]["type"] = kind
        else:
            out.append({"name": name, "type": kind, "nullable": True, "metadata": {}})
    return out


def with_rescued(fields: list[dict], rescued: str | None) -> list[dict]:
    body = [f for f in fields if rescued is None or f["name"] != rescued]
    if rescued:
        body.append({"name": rescued, "type": "string", "nullable": True, "metadata": {}})
    return body


# --- the schema location ----------------------------------------------------------------------------


class SchemaLocation:
    """`<schemaLocation>/_schemas/<n>` (`v1` then the schema's JSON) and the files sampled so far."""

    def __init__(self, local_dir: Path):
        self.dir = local_dir

    def latest(self) -> tuple[int, list[dict]] | None:
        versions = (
            sorted((int(p.name), p) for p in (self.dir / SCHEMAS_DIR).glob("*") if p.name.isdigit() and p.is_file())
            if (self.dir / SCHEMAS_DIR).is_dir()
            else []
        )
        if not versions:
            return None
        number, path = versions[-1]
        lines = path.read_text().splitlines()
        return number, json.loads(lines[-1])["fields"]

    def write(self, version: int, fields: list[dict]) -> None:
        folder = self.dir / SCHEMAS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{version}.{os.getpid()}.tmp"
        tmp.write_text("v1\n" + json.dumps({"type": "struct", "fields": fields}))
        os.replace(tmp, folder / str(version))

    def sampled(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / SAMPLED_FILE).read_text())
        except (OSError, ValueError):
            return {"files": [], "started_at": None}

    def write_sampled(self, doc: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{SAMPLED_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / SAMPLED_FILE)


def data_files(root: Path) -> list[Path]:
    """The files Spark's file source would read under `root` (names starting with `_` or `.` are
    skipped, as Spark skips them; `key=value` partition folders are walked)."""
    if root.is_file():
        return [root]
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        out.extend(Path(folder) / f for f in sorted(files) if not f.startswith(("_", ".")))
    return out


def resolve_schema(
    opts: AutoLoaderOptions,
    location: SchemaLocation,
    files: list[Path],
    infer: Callable[[list[Path]], list[dict]],
    hint_types: Callable[[str], Any],
) -> list[dict]:
    """The schema this load reads with (fields as JSON): inferred from `files` at the first load and
    persisted; reused afterwards, with new columns of newly landed files handled per the schema
    evolution mode. `infer` is the batch inference (Spark) over some files."""
    current = location.latest()
    sampled = location.sampled()
    seen = set(sampled.get("files") or [])
    fresh = [f for f in files if str(f) not in seen]
    if current is None:
        if not files:
            raise AutoLoaderError(
                "CF_EMPTY_DIR_FOR_SCHEMA_INFERENCE",
                "Unable to infer schema: the input path has no files yet. Land a file first or give the stream a "
                "schema with .schema(...) or cloudFiles.schemaHints.",
            )
        fields = infer(files)
        if opts.schema_hints:
            fields = apply_hints(fields, [(n, hint_types(t)) for n, t in parse_schema_hints(opts.schema_hints)])
        fields = with_rescued(fields, opts.rescued_column)
        location.write(0, fields)
        location.write_sampled({"files": [str(f) for f in files], "started_at": sampled.get("started_at")})
        return fields
    version, fields = current
    if fresh and opts.evolution_mode != "none":
        merged, new = merge_fields([f for f in fields if f["name"] != opts.rescued_column], infer(fresh))
        location.write_sampled(
            {"files": sorted(seen | {str(f) for f in fresh}), "started_at": sampled.get("started_at")}
        )
        if new and opts.evolution_mode in ("addNewColumns", "failOnNewColumns"):
            if opts.evolution_mode == "addNewColumns":
                location.write(version + 1, with_rescued(merged, opts.rescued_column))
            raise UnknownFieldException(new, [str(f) for f in fresh])
    return fields


# --- the pyspark patch --------------------------------------------------------------------------------


def install_auto_loader_patches(mapper: Any) -> None:
    """Teach `spark.readStream.format("cloudFiles")` Auto Loader. Idempotent; install after the path
    patches (paths given to the translated reader are mapped by them)."""
    from pyspark.sql.readwriter import to_str
    from pyspark.sql.streaming import DataStreamReader
    from pyspark.sql.types import StructType, _parse_datatype_string

    if getattr(DataStreamReader.load, "_dbx_auto_loader", False):
        return
    orig_format, orig_option, orig_options = DataStreamReader.format, DataStreamReader.option, DataStreamReader.options
    orig_schema, orig_load = DataStreamReader.schema, DataStreamReader.load

    def text(value: Any) -> str:
        converted = to_str(value)
        return "" if converted is None else converted

    def recorded(self: Any) -> dict[str, str]:
        return self.__dict__.setdefault("_dbx_options", {})

    def is_cloud_files(self: Any) -> bool:
        return bool(self.__dict__.get("_dbx_cloud_files"))

    @functools.wraps(orig_format)
    def format(self: Any, source: str) -> Any:
        if isinstance(source, str) and source.lower() == "cloudfiles":
            self._dbx_cloud_files = True
            return self
        self._dbx_cloud_files = False
        return orig_format(self, source)

    @functools.wraps(orig_option)
    def option(self: Any, key: str, value: Any) -> Any:
        recorded(self)[key] = text(value)
        return self if is_cloud_files(self) else orig_option(self, key, value)

    @functools.wraps(orig_options)
    def options(self: Any, **opts: Any) -> Any:
        for key, value in opts.items():
            recorded(self)[key] = text(value)
        return self if is_cloud_files(self) else orig_options(self, **opts)

    @functools.wraps(orig_schema)
    def schema(self: Any, schema: Any) -> Any:
        self._dbx_schema = schema
        return self if is_cloud_files(self) else orig_schema(self, schema)

    @functools.wraps(orig_load)
    def load(self: Any, path: str | None = None, format: str | None = None, schema: Any = None, **opts: Any) -> Any:
        if format is not None:
            self.format(format)
        if not is_cloud_files(self):
            return orig_load(self, path, None, schema, **opts)
        for key, value in opts.items():
            recorded(self)[key] = text(value)
        user_schema = schema if schema is not None else self.__dict__.get("_dbx_schema")
        return _load_cloud_files(self._spark, mapper, path or recorded(self).get("path"), recorded(self), user_schema)

    def _load_cloud_files(spark: Any, mapper: Any, path: str | None, given: dict[str, str], user_schema: Any) -> Any:
        if not path:
            raise AutoLoaderError("CF_PATH_REQUIRED", "Auto Loader needs an input path: .load(path).")
        opts = translate_options(given, user_schema is not None)
        local_root = Path(mapper.storage(path))
        if user_schema is not None:
            given_struct: Any = _parse_datatype_string(user_schema) if isinstance(user_schema, str) else user_schema
            fields = with_rescued(given_struct.jsonValue()["fields"], opts.rescued_column)
        else:
            location = SchemaLocation(Path(mapper.storage(opts.schema_location)))

            def infer(files: list[Path]) -> list[dict]:
                reader = spark.read.format(opts.format).options(**inference_options(opts))
                found = reader.load([mapper.spark(str(f)) for f in files]).schema
                corrupt = inference_options(opts).get("columnNameOfCorruptRecord")
                return [f for f in found.jsonValue()["fields"] if f["name"] not in (opts.rescued_column, corrupt)]

            started = time.monotonic()
            fields = resolve_schema(
                opts, location, data_files(local_root), infer, lambda t: _parse_datatype_string(t).jsonValue()
            )
            print(
                f"[local runtime] Auto Loader: {opts.format} from {path}, schema at {opts.schema_location} "
                f"({len(fields)} columns, {time.monotonic() - started:.2f} s)",
                flush=True,
            )
        struct = StructType.fromJson({"type": "struct", "fields": fields})
        spark_options = dict(opts.spark_options)
        inner = DataStreamReader(spark).format(opts.format)
        if opts.format == "parquet":  # no corrupt-record column: the rescued column is always null
            read = inner.schema(StructType([f for f in struct.fields if f.name != opts.rescued_column]))
            df = read.options(**spark_options).load(path)
            if opts.rescued_column:
                from pyspark.sql import functions as F

                df = df.withColumn(opts.rescued_column, F.lit(None).cast("string"))
            return df
        return inner.schema(struct).options(**spark_options).load(path)

    for name, fn in (("format", format), ("option", option), ("options", options), ("schema", schema), ("load", load)):
        setattr(DataStreamReader, name, fn)
    DataStreamReader.load._dbx_auto_loader = True  # type: ignore[attr-defined]
