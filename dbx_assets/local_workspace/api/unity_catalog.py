"""Unity Catalog API subset (read-only): catalogs, schemas and tables as notebooks and dbt
left them in the shared warehouse dir.

Everything is read from disk, no JVM: catalogs from the registry the task processes keep
(`<warehouse>/_unity_catalog/catalogs`, runtime/uc_catalogs.py), schemas from `<db>.db` dirs
(`main.s` is database `s`, `c.s` is `c__s`), tables from their dirs. A Delta table (a dir with
`_delta_log/`) is described from its log (engine/delta_log.py) as Unity Catalog describes Delta
tables: `data_source_format` DELTA, columns from the log's schema (names, types, nullability,
comments), the table's COMMENT, and as `properties` its configuration plus what Databricks adds:
`delta.minReaderVersion`, `delta.minWriterVersion`, `delta.feature.<name>: supported` for each
table feature, `delta.lastUpdateVersion` and `delta.lastCommitTimestamp` (ms). Other tables
(parquet) get their columns from the schema snapshot a task process writes after each task
(runtime/catalog_sync.py). `hive_metastore` is an alias of `main` in SQL and is not listed here.
Every table is MANAGED: the warehouse dir holds no record of a `LOCATION` given at creation.
Responses are built from the SDK's dataclasses; errors use Unity Catalog's error codes with
status 404.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from databricks.sdk.service import catalog as uc_api

from ..engine.clusters import LOCAL_USER
from ..engine.delta_log import DeltaLogError, DeltaSnapshot, SnapshotCache, is_delta_table
from ..engine.errors import ApiError, invalid
from ..http.server import Dispatcher, Request

# Kept in step with runtime/uc_names.py, uc_catalogs.py and catalog_sync.py (this side imports no runtime code).
DEFAULT_CATALOG = "main"
SEPARATOR = "__"
REGISTRY_DIR = "_unity_catalog"
METASTORE_ID = "00000000-0000-4000-8000-00000000a11c"

# Spark type names (StructField JSON) -> ColumnTypeName
_TYPE_NAMES = {
    "integer": "INT", "long": "LONG", "short": "SHORT", "byte": "BYTE", "string": "STRING", "double": "DOUBLE",
    "float": "FLOAT", "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP_NTZ",
    "binary": "BINARY", "null": "NULL", "void": "NULL", "variant": "VARIANT",
}  # fmt: skip
_SIMPLE_TEXT = {
    "integer": "int",
    "long": "bigint",
    "short": "smallint",
    "byte": "tinyint",
    "void": "void",
    "null": "void",
}


def _not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def column_type(spark_type: str | dict) -> tuple[str, str]:
    """(type_name, type_text) of a Spark type in its JSON form: "integer" -> ("INT", "int")."""
    if isinstance(spark_type, dict):
        kind = spark_type.get("type")
        if kind == "array":
            return "ARRAY", f"array<{column_type(spark_type['elementType'])[1]}>"
        if kind == "map":
            return "MAP", f"map<{column_type(spark_type['keyType'])[1]},{column_type(spark_type['valueType'])[1]}>"
        if kind == "struct":
            inner = ",".join(f"{f['name']}:{column_type(f['type'])[1]}" for f in spark_type.get("fields", []))
            return "STRUCT", f"struct<{inner}>"
        return "USER_DEFINED_TYPE", str(spark_type.get("sqlType", kind))
    if spark_type.startswith("decimal"):
        return "DECIMAL", spark_type
    if spark_type.startswith(("char", "varchar")):
        return ("CHAR" if spark_type.startswith("char") else "STRING"), spark_type
    if spark_type.startswith("interval") or "interval" in spark_type:
        return "INTERVAL", spark_type
    return _TYPE_NAMES.get(spark_type, "STRING"), _SIMPLE_TEXT.get(spark_type, spark_type)


def columns_from_snapshot(doc: dict) -> list[uc_api.ColumnInfo]:
    partitions = [p.lower() for p in doc.get("partition_columns", [])]
    out = []
    for position, f in enumerate(doc.get("schema", {}).get("fields", [])):
        # CHAR/VARCHAR columns are strings to Spark and Delta, with the declared type in the metadata.
        declared = (f.get("metadata") or {}).get("__CHAR_VARCHAR_TYPE_STRING")
        type_name, type_text = column_type(declared if isinstance(declared, str) else f["type"])
        precision = scale = None
        if type_name == "DECIMAL" and "(" in type_text:
            p, s = type_text[type_text.index("(") + 1 : -1].split(",")
            precision, scale = int(p), int(s)
        out.append(
            uc_api.ColumnInfo(
                name=f["name"],
                type_name=uc_api.ColumnTypeName(type_name),
                type_text=type_text,
                type_json=json.dumps(f, separators=(",", ":")),
                type_precision=precision if precision is not None else 0,
                type_scale=scale if scale is not None else 0,
                position=position,
                nullable=bool(f.get("nullable", True)),
                partition_index=partitions.index(f["name"].lower()) if f["name"].lower() in partitions else None,
                comment=(f.get("metadata") or {}).get("comment"),
            )
        )
    return out


def _ms(path: Path) -> int:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return 0


def _is_table_dir(path: Path) -> bool:  # as runtime/catalog_sync.py decides what a table is
    if not path.is_dir() or path.name.startswith(("_", ".")):
        return False
    return any(not p.name.startswith(".") for p in path.iterdir())


def _q(req: Request, name: str) -> str | None:
    values = req.query.get(name) or []
    return values[0] if values else None


def _split_full_name(full_name: str, parts: int, what: str) -> list[str]:
    names = full_name.split(".")
    if len(names) != parts or not all(names):
        raise invalid(f"Invalid {what} full name '{full_name}': expected {parts} dot-separated parts.")
    return [n.lower() for n in names]


def delta_properties(snapshot: DeltaSnapshot) -> dict[str, str]:
    """A Delta table's `properties` as Unity Catalog reports them: the table's own configuration, its
    protocol and table features, and the version and time of its last commit."""
    properties = dict(snapshot.configuration)
    if snapshot.min_reader_version is not None:
        properties["delta.minReaderVersion"] = str(snapshot.min_reader_version)
    if snapshot.min_writer_version is not None:
        properties["delta.minWriterVersion"] = str(snapshot.min_writer_version)
    for feature in sorted({*snapshot.reader_features, *snapshot.writer_features}):
        properties[f"delta.feature.{feature}"] = "supported"
    properties["delta.lastUpdateVersion"] = str(snapshot.version)
    if snapshot.last_commit_timestamp is not None:
        properties["delta.lastCommitTimestamp"] = str(snapshot.last_commit_timestamp)
    return properties


class UnityCatalog:
    def __init__(self, warehouse: Path):
        self.warehouse = warehouse
        self._snapshots = SnapshotCache()

    def register(self, d: Dispatcher) -> None:
        base = "/api/2.1/unity-catalog"
        d.route("GET", base + "/catalogs", lambda req: uc_api.ListCatalogsResponse(catalogs=self.catalogs()).as_dict())
        d.route("GET", base + r"/catalogs/(?P<name>[^/]+)", lambda req: self.catalog(req.path_params["name"]).as_dict())
        d.route("GET", base + "/schemas", self._list_schemas)
        d.route(
            "GET",
            base + r"/schemas/(?P<full_name>[^/]+)",
            lambda req: self.schema(req.path_params["full_name"]).as_dict(),
        )
        d.route("GET", base + "/tables", self._list_tables)
        d.route(
            "GET",
            base + r"/tables/(?P<full_name>[^/]+)",
            lambda req: self.table(req.path_params["full_name"]).as_dict(),
        )

    # -- disk ------------------------------------------------------------------------------------
    def _registry(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        folder = self.warehouse / REGISTRY_DIR / "catalogs"
        if folder.is_dir():
            for f in folder.glob("*.json"):
                try:
                    out[f.stem] = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
        return out

    def _database(self, catalog: str, schema: str) -> str:
        return schema if catalog == DEFAULT_CATALOG else f"{catalog}{SEPARATOR}{schema}"

    def _database_dir(self, database: str) -> Path:
        return self.warehouse if database == "default" else self.warehouse / f"{database}.db"

    def _schemas_on_disk(self, catalog: str) -> list[str]:
        registered = set(self._registry())
        schemas = {"default"} if catalog == DEFAULT_CATALOG else set()
        if self.warehouse.is_dir():
            for entry in self.warehouse.iterdir():
                if not (entry.is_dir() and entry.name.endswith(".db")):
                    continue
                database = entry.name[:-3].lower()
                prefix, sep, rest = database.partition(SEPARATOR)
                owner, schema = (prefix, rest) if sep and rest and prefix in registered else (DEFAULT_CATALOG, database)
                if owner == catalog:
                    schemas.add(schema)
        return sorted(schemas)

    # -- catalogs --------------------------------------------------------------------------------
    def catalogs(self) -> list[uc_api.CatalogInfo]:
        registry = self._registry()
        return [self._catalog_info(DEFAULT_CATALOG, {})] + [
            self._catalog_info(n, registry[n]) for n in sorted(registry)
        ]

    def catalog(self, name: str) -> uc_api.CatalogInfo:
        name = name.lower()
        if name == DEFAULT_CATALOG:
            return self._catalog_info(name, {})
        doc = self._registry().get(name)
        if doc is None:
            raise _not_found("CATALOG_DOES_NOT_EXIST", f"Catalog '{name}' does not exist.")
        return self._catalog_info(name, doc)

    def _catalog_info(self, name: str, doc: dict) -> uc_api.CatalogInfo:
        created = int(doc.get("created_at") or _ms(self.warehouse))
        return uc_api.CatalogInfo(
            name=name,
            full_name=name,
            owner=LOCAL_USER,
            comment=doc.get("comment"),
            catalog_type=uc_api.CatalogType.MANAGED_CATALOG,
            isolation_mode=uc_api.CatalogIsolationMode.OPEN,
            metastore_id=METASTORE_ID,
            created_at=created,
            created_by=LOCAL_USER,
            updated_at=created,
            updated_by=LOCAL_USER,
            storage_root=self.warehouse.as_uri(),
            securable_type=uc_api.SecurableType.CATALOG,
            browse_only=False,
        )

    # -- schemas ---------------------------------------------------------------------------------
    def _list_schemas(self, req: Request) -> dict:
        catalog = _q(req, "catalog_name")
        if not catalog:
            raise invalid("Missing required field: catalog_name")
        self.catalog(catalog)
        infos = [self._schema_info(catalog.lower(), s) for s in self._schemas_on_disk(catalog.lower())]
        return uc_api.ListSchemasResponse(schemas=infos).as_dict()

    def schema(self, full_name: str) -> uc_api.SchemaInfo:
        catalog, schema = _split_full_name(full_name, 2, "schema")
        self.catalog(catalog)
        if schema not in self._schemas_on_disk(catalog):
            raise _not_found("SCHEMA_DOES_NOT_EXIST", f"Schema '{catalog}.{schema}' does not exist.")
        return self._schema_info(catalog, schema)

    def _schema_info(self, catalog: str, schema: str) -> uc_api.SchemaInfo:
        folder = self._database_dir(self._database(catalog, schema))
        created = _ms(folder)
        return uc_api.SchemaInfo(
            name=schema,
            catalog_name=catalog,
            full_name=f"{catalog}.{schema}",
            owner=LOCAL_USER,
            catalog_type=uc_api.CatalogType.MANAGED_CATALOG,
            metastore_id=METASTORE_ID,
            created_at=created,
            created_by=LOCAL_USER,
            updated_at=created,
            updated_by=LOCAL_USER,
            storage_location=folder.as_uri(),
            schema_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"schema:{catalog}.{schema}")),
            browse_only=False,
        )

    # -- tables ----------------------------------------------------------------------------------
    def _list_tables(self, req: Request) -> dict:
        catalog, schema = _q(req, "catalog_name"), _q(req, "schema_name")
        if not catalog:
            raise invalid("Missing required field: catalog_name")
        if not schema:
            raise invalid("Missing required field: schema_name")
        self.schema(f"{catalog}.{schema}")
        catalog, schema = catalog.lower(), schema.lower()
        omit_columns = (_q(req, "omit_columns") or "").lower() == "true"
        folder = self._database_dir(self._database(catalog, schema))
        names = sorted(p.name.lower() for p in folder.iterdir() if _is_table_dir(p) and not p.name.endswith(".db"))
        infos = [self._table_info(catalog, schema, n, with_columns=not omit_columns) for n in names]
        return uc_api.ListTablesResponse(tables=infos).as_dict()

    def table(self, full_name: str) -> uc_api.TableInfo:
        catalog, schema, name = _split_full_name(full_name, 3, "table")
        try:
            self.schema(f"{catalog}.{schema}")
        except ApiError as exc:
            if exc.error_code == "CATALOG_DOES_NOT_EXIST":
                raise
            raise _not_found("TABLE_DOES_NOT_EXIST", f"Table '{catalog}.{schema}.{name}' does not exist.") from None
        path = self._database_dir(self._database(catalog, schema)) / name
        if name.endswith(".db") or not _is_table_dir(path):
            raise _not_found("TABLE_DOES_NOT_EXIST", f"Table '{catalog}.{schema}.{name}' does not exist.")
        return self._table_info(catalog, schema, name, with_columns=True)

    def table_dir(self, full_name: str) -> Path:
        """Where an existing table's files are (call `table` first to get its not-found errors)."""
        catalog, schema, name = _split_full_name(full_name, 3, "table")
        return self._database_dir(self._database(catalog, schema)) / name

    def delta_snapshot(self, table_dir: Path) -> DeltaSnapshot | None:
        """The Delta table's latest snapshot; None for a table that is not Delta. Raises DeltaLogError
        for a Delta table whose log has no version yet or is damaged."""
        return self._snapshots.get(table_dir) if is_delta_table(table_dir) else None

    def _table_info(self, catalog: str, schema: str, name: str, *, with_columns: bool) -> uc_api.TableInfo:
        database = self._database(catalog, schema)
        path = self._database_dir(database) / name
        st = os.stat(path)
        info = uc_api.TableInfo(
            name=name,
            catalog_name=catalog,
            schema_name=schema,
            full_name=f"{catalog}.{schema}.{name}",
            table_type=uc_api.TableType.MANAGED,
            data_source_format=uc_api.DataSourceFormat.PARQUET,
            storage_location=path.as_uri(),
            owner=LOCAL_USER,
            metastore_id=METASTORE_ID,
            created_at=int(st.st_ctime * 1000),
            created_by=LOCAL_USER,
            updated_at=int(st.st_mtime * 1000),
            updated_by=LOCAL_USER,
            table_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"table:{catalog}.{schema}.{name}")),
            browse_only=False,
        )
        delta: DeltaSnapshot | None = None
        if is_delta_table(path):
            info.data_source_format = uc_api.DataSourceFormat.DELTA
            try:
                delta = self.delta_snapshot(path)
            except DeltaLogError:
                delta = None  # no commit yet (or a damaged log): a Delta table without its details
        if delta is not None:
            info.comment = delta.description
            info.properties = delta_properties(delta)
            info.created_at = delta.created_time or info.created_at
            info.updated_at = delta.last_commit_timestamp or info.updated_at
            if with_columns and delta.schema is not None:
                info.columns = columns_from_snapshot(
                    {"schema": delta.schema, "partition_columns": list(delta.partition_columns)}
                )
        if with_columns and info.columns is None:
            snapshot = self.warehouse / REGISTRY_DIR / "columns" / database / f"{name}.json"
            try:
                info.columns = columns_from_snapshot(json.loads(snapshot.read_text()))
            except (OSError, ValueError):
                info.columns = None  # written by a task that has not finished yet
        return info
