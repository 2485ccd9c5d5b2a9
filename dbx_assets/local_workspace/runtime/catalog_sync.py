"""Share tables between clusters through the warehouse dir.

Each cluster's JVM has its own in-memory catalog (Derby's metastore allows one JVM at a
time), but all clusters write tables as parquet under one warehouse dir. Before a task
runs, this makes the cluster's catalog match the dir: databases for `<db>.db` dirs, tables
written elsewhere registered (as MANAGED, so DROP deletes them as usual), tables rewritten
elsewhere re-registered (their schema may have changed), vanished ones dropped, databases
whose dir vanished (DROP SCHEMA elsewhere) dropped.

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

from .uc_catalogs import registry_dir

_SIGNATURE_CONF = "spark.dbx.local.tableSignature."


def _is_table_dir(path: Path) -> bool:
    if not path.is_dir() or path.name.startswith(("_", ".")):
        return False
    return any(not p.name.startswith(".") for p in path.iterdir())


def _has_partition_dirs(path: Path) -> bool:
    return any(child.is_dir() and "=" in child.name for child in path.iterdir())


def _signature(path: Path) -> str:
    st = os.stat(path)
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
                spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING parquet LOCATION '{path.as_uri()}'")
                if _has_partition_dirs(path):
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
    return warnings


def remember_table_versions(spark: Any, warehouse: Path) -> None:
    """After a task: record the on-disk version of every table this cluster knows, so a
    table the task itself (re)wrote is not mistaken for one rewritten by another cluster."""
    conf = spark.conf
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
