"""Share tables between clusters through the warehouse dir.

Each cluster's JVM has its own in-memory catalog (Derby's metastore allows one JVM at a
time), but all clusters write tables under one warehouse dir: Delta tables (the default, as on
Databricks), and parquet or other file tables where a statement says so. Before a task runs,
this makes the cluster's catalog match the dir: databases for `<db>.db` dirs, tables written
elsewhere registered (as MANAGED, so DROP deletes them as usual), tables rewritten elsewhere
re-registered (their schema may have changed), vanished ones dropped, databases whose dir
vanished (DROP SCHEMA elsewhere) dropped.

A Delta table's catalog entry is only its name and location: Delta reads the table's schema and
files from its `_delta_log` at every query, so commits made by other clusters are seen without
re-registering; only a dir replaced by a new one (DROP and CREATE elsewhere) is. Commits from
several clusters to one table are made safe by the log store (delta_log_store.py).

External tables (`CREATE TABLE ... LOCATION '<path>'` outside the warehouse) are recorded at the
end of the task that created them in `<warehouse>/_unity_catalog/external/<db>/<table>.json`
(location and format) and registered from there on the other clusters; DROP TABLE removes the
record (not the data, as for any external table).

Unity Catalog schemas of catalogs other than `main` are databases `<catalog>__<schema>`
(uc_names.py), so they sync like any other. After a task, each table's columns are written
to `<warehouse>/_unity_catalog/columns/<db>/<table>.json`, so the Unity Catalog REST API can
describe tables without a JVM (no pyarrow to read parquet footers in this environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .sample_data import CATALOG as SAMPLES_CATALOG
from .uc_catalogs import registry_dir

_SIGNATURE_CONF = "spark.dbx.local.tableSignature."
_EXTERNAL_CONF = "spark.dbx.local.externalTable."  # external tables this cluster has seen recorded


def _is_table_dir(path: Path) -> bool:
    if not path.is_dir() or path.name.startswith(("_", ".")):
        return False
    return any(not p.name.startswith(".") for p in path.iterdir())


def _has_partition_dirs(path: Path) -> bool:
    return any(child.is_dir() and "=" in child.name for child in path.iterdir())


def _is_delta(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def _signature(path: Path) -> str:
    """What identifies the version of a table dir this catalog registered. A Delta table is
    registered once per dir (its log tells every reader the rest); a file table again whenever
    its dir changes."""
    st = os.stat(path)
    if _is_delta(path):
        return f"{st.st_ino}:delta"
    return f"{st.st_ino}:{st.st_mtime_ns}"


def _on_disk(warehouse: Path) -> dict[str, dict[str, Path]]:
    tables: dict[str, dict[str, Path]] = {"default": {}}
    if not warehouse.is_dir():
        return tables
    for entry in warehouse.iterdir():
        if entry.is_dir() and entry.name.endswith(".db"):
            tables[entry.name[:-3].lower()] = {t.name.lower(): t for t in entry.iterdir() if _is_table_dir(t)}
        elif _is_table_dir(entry):
            tables["default"][entry.name.lower()] = entry
    return tables


def _set_table_type(spark: Any, db: str, table: str, kind: str) -> None:
    # The in-memory catalog offers no "register existing managed table", so flip the stored
    # CatalogTable's type in place (a case-class val, settable by reflection).
    jvm = spark._jvm
    stored = spark._jsparkSession.sharedState().externalCatalog().getTable(db, table)
    field = stored.getClass().getDeclaredField("tableType")
    field.setAccessible(True)
    field.set(stored, getattr(jvm.org.apache.spark.sql.catalyst.catalog.CatalogTableType, kind)())


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sync_catalog(spark: Any, warehouse: Path) -> list[str]:
    """Make the cluster's catalog match `warehouse`. Returns warnings (tables it could not register)."""
    warnings: list[str] = []
    disk = _on_disk(warehouse)
    conf = spark.conf
    known_dbs = {row[0].lower() for row in spark.sql("SHOW DATABASES").collect()}
    for db in known_dbs - set(disk):
        location = _database_location(spark, db)
        if location is not None and _under(location, warehouse) and not Path(location).exists():
            spark.sql(f"DROP DATABASE IF EXISTS {_quote(db)} CASCADE")  # dropped by another cluster
    for db, tables in disk.items():
        if db not in known_dbs:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quote(db)}")
        registered = {
            row["tableName"].lower()
            for row in spark.sql(f"SHOW TABLES IN {_quote(db)}").collect()
            if not row["isTemporary"]
        }
        for name, path in tables.items():
            qualified = f"{_quote(db)}.{_quote(name)}"
            key = f"{_SIGNATURE_CONF}{db}.{name}"
            sig = _signature(path)
            if name in registered:
                seen = conf.get(key, None)
                if seen is None or seen == sig:
                    conf.set(key, sig)
                    spark.catalog.refreshTable(f"{db}.{name}")
                    continue
                # Rewritten by another cluster: forget our copy (without deleting the data).
                _set_table_type(spark, db, name, "EXTERNAL")
                spark.sql(f"DROP TABLE IF EXISTS {qualified}")
            try:
                fmt = "delta" if _is_delta(path) else "parquet"
                spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING {fmt} LOCATION '{path.as_uri()}'")
                if fmt == "parquet" and _has_partition_dirs(path):
                    # Registering infers partition columns but not the partitions themselves.
                    spark.sql(f"ALTER TABLE {qualified} RECOVER PARTITIONS")
                _set_table_type(spark, db, name, "MANAGED")
                conf.set(key, sig)
            except Exception as exc:  # e.g. a half-written dir or non-parquet files
                warnings.append(f"table {db}.{name} at {path} could not be registered: {str(exc).splitlines()[0]}")
        for name in registered - set(tables):
            location = _location(spark, db, name)
            if location is not None and _under(location, warehouse) and not Path(location).exists():
                _set_table_type(spark, db, name, "EXTERNAL")
                spark.sql(f"DROP TABLE IF EXISTS {_quote(db)}.{_quote(name)}")
    warnings += _sync_external_tables(spark, warehouse, known_dbs | set(disk))
    return warnings


def external_tables_dir(warehouse: Path) -> Path:
    return registry_dir(warehouse) / "external"


def external_table_records(warehouse: Path) -> dict[tuple[str, str], dict]:
    """(database, table) -> {"location": <path>, "format": <provider>} of every recorded external table."""
    records: dict[tuple[str, str], dict] = {}
    root = external_tables_dir(warehouse)
    if not root.is_dir():
        return records
    for db_dir in root.iterdir():
        if not db_dir.is_dir():
            continue
        for f in db_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                records[(db_dir.name, f.stem)] = json.loads(f.read_text())
    return records


def _sync_external_tables(spark: Any, warehouse: Path, databases: set[str]) -> list[str]:
    """Register external tables other clusters recorded; drop those whose record another cluster removed."""
    warnings: list[str] = []
    conf = spark.conf
    records = external_table_records(warehouse)
    external = spark._jsparkSession.sharedState().externalCatalog()
    for (db, name), record in records.items():
        key = f"{_EXTERNAL_CONF}{db}.{name}"
        if conf.get(key, None) == record.get("location") or _is_sample_database(db):
            continue
        if not external.databaseExists(db):
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quote(db)}")
        qualified = f"{_quote(db)}.{_quote(name)}"
        location = Path(str(record.get("location")))
        try:
            if external.tableExists(db, name) and _location(spark, db, name) != str(location):
                _set_table_type(spark, db, name, "EXTERNAL")
                spark.sql(f"DROP TABLE IF EXISTS {qualified}")  # replaced elsewhere by a table at another location
            fmt = str(record.get("format") or "delta")
            spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING {fmt} LOCATION '{location.as_uri()}'")
            conf.set(key, str(location))
        except Exception as exc:
            warnings.append(
                f"external table {db}.{name} at {location} could not be registered: {str(exc).splitlines()[0]}"
            )
    for db in databases:
        for name in _external_tables_here(spark, db, warehouse):
            key = f"{_EXTERNAL_CONF}{db}.{name}"
            if (db, name) not in records and conf.get(key, None) is not None:
                spark.sql(f"DROP TABLE IF EXISTS {_quote(db)}.{_quote(name)}")  # dropped by another cluster
                conf.unset(key)
    return warnings


def _is_sample_database(db: str) -> bool:
    """The `samples` catalog's databases: every cluster registers their tables itself, with their
    schemas (sample_data.register); a bare record here would register them schemaless first."""
    return db.lower().startswith(f"{SAMPLES_CATALOG}__")


def _external_tables_here(spark: Any, db: str, warehouse: Path) -> dict[str, tuple[str, str]]:
    """name -> (location, provider) of this catalog's external tables in `db` outside the warehouse."""
    external = spark._jsparkSession.sharedState().externalCatalog()
    out: dict[str, tuple[str, str]] = {}
    if not external.databaseExists(db) or _is_sample_database(db):
        return out
    tables = external.getTablesByName(db, external.listTables(db))
    for i in range(tables.size()):
        table = tables.apply(i)
        if table.tableType().name() != "EXTERNAL" or table.storage().locationUri().isEmpty():
            continue
        location = spark._jvm.java.io.File(table.storage().locationUri().get()).getPath()
        if _under(location, warehouse):
            continue
        provider = table.provider().getOrElse(None) if not table.provider().isEmpty() else None
        out[table.identifier().table().lower()] = (location, (provider or "delta").lower())
    return out


def record_external_tables(spark: Any, warehouse: Path) -> None:
    """After a task: record this catalog's external tables for the other clusters, and forget the
    ones the task dropped."""
    conf = spark.conf
    records = external_table_records(warehouse)
    root = external_tables_dir(warehouse)
    here: set[tuple[str, str]] = set()
    databases = spark._jsparkSession.sharedState().externalCatalog().listDatabases()
    for i in range(databases.size()):
        db = str(databases.apply(i)).lower()
        for name, (location, fmt) in _external_tables_here(spark, db, warehouse).items():
            here.add((db, name))
            conf.set(f"{_EXTERNAL_CONF}{db}.{name}", location)
            if records.get((db, name)) != {"location": location, "format": fmt}:
                path = root / db / f"{name}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"location": location, "format": fmt}))
                os.replace(tmp, path)
    for db, name in set(records) - here:
        key = f"{_EXTERNAL_CONF}{db}.{name}"
        if conf.get(key, None) is not None:  # this cluster had it, and the task dropped it
            (root / db / f"{name}.json").unlink(missing_ok=True)
            conf.unset(key)


def remember_table_versions(spark: Any, warehouse: Path) -> None:
    """After a task: record the on-disk version of every table this cluster knows, so a
    table the task itself (re)wrote is not mistaken for one rewritten by another cluster."""
    conf = spark.conf
    with contextlib.suppress(Exception):  # best effort, like the snapshots below
        record_external_tables(spark, warehouse)
    for db, tables in _on_disk(warehouse).items():
        try:
            registered = {row["tableName"].lower() for row in spark.sql(f"SHOW TABLES IN {_quote(db)}").collect()}
        except Exception:  # the database is not in this cluster's catalog
            continue
        for name in tables.keys() & registered:
            sig = _signature(tables[name])
            conf.set(f"{_SIGNATURE_CONF}{db}.{name}", sig)
            with contextlib.suppress(Exception):  # a table being dropped meanwhile; the next task writes it
                write_columns_snapshot(spark, warehouse, db, name, sig)


def columns_snapshot_path(warehouse: Path, db: str, table: str) -> Path:
    return registry_dir(warehouse) / "columns" / db / f"{table}.json"


def write_columns_snapshot(spark: Any, warehouse: Path, db: str, table: str, signature: str) -> bool:
    """Record the table's Spark schema unless the snapshot already matches this version."""
    path = columns_snapshot_path(warehouse, db, table)
    try:
        if json.loads(path.read_text()).get("signature") == signature:
            return False
    except (OSError, ValueError):
        pass
    stored = spark._jsparkSession.sharedState().externalCatalog().getTable(db, table)
    partitions = [p for p in str(stored.partitionColumnNames().mkString("\n")).split("\n") if p]
    doc = {
        "signature": signature,
        "schema": json.loads(stored.schema().json()),
        "partition_columns": partitions,
        "written_at": int(time.time() * 1000),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return True


def _location(spark: Any, db: str, table: str) -> str | None:
    stored = spark._jsparkSession.sharedState().externalCatalog().getTable(db, table)
    uri = stored.storage().locationUri()
    if uri.isEmpty():
        return None
    return spark._jvm.java.io.File(uri.get()).getPath()


def _database_location(spark: Any, db: str) -> str | None:
    try:
        uri = spark._jsparkSession.sharedState().externalCatalog().getDatabase(db).locationUri()
    except Exception:
        return None
    return spark._jvm.java.io.File(uri).getPath()


def _under(location: str, root: Path) -> bool:
    root_s = str(root.resolve())
    return location == root_s or location.startswith(root_s + "/")
