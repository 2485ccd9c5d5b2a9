"""The Unity Catalog catalogs that exist locally besides `main`: one JSON file per catalog under
`<warehouse>/_unity_catalog/catalogs` (a `_` dir, which Spark and the catalog sync ignore), so
the registry survives clusters and restarts and concurrent `CREATE CATALOG`s need no lock.
A task process has one active registry (set by uc_patches.py), which dbt's schema checks.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .uc_names import (
    DEFAULT_CATALOG_ALIASES,
    SEPARATOR,
    catalog_exists,
    invalid_catalog_name,
    no_such_catalog,
    spark_database,
)

_CATALOG_NAME = re.compile(r"^[a-z0-9_]+$")


def registry_dir(warehouse: Path) -> Path:
    return warehouse / "_unity_catalog"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    comment: str | None = None
    created_at: int = 0  # epoch ms


class CatalogRegistry:
    """Catalogs other than `main`, one JSON file each; read from disk on every call, because
    tasks on other clusters create catalogs while this one runs."""

    def __init__(self, warehouse: Path):
        self.dir = registry_dir(warehouse) / "catalogs"

    def entries(self) -> dict[str, CatalogEntry]:
        out: dict[str, CatalogEntry] = {}
        try:
            files = list(self.dir.iterdir())
        except FileNotFoundError:
            return out
        for f in files:
            if f.suffix != ".json" or f.name.startswith("."):
                continue
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            out[f.stem] = CatalogEntry(f.stem, doc.get("comment"), int(doc.get("created_at", 0)))
        return out

    def names(self) -> frozenset[str]:
        return frozenset(self.entries())

    def create(self, name: str, comment: str | None = None) -> bool:
        """Register `name`; False if it already existed."""
        validate_catalog_name(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = json.dumps({"name": name, "comment": comment, "created_at": int(time.time() * 1000)})
        tmp = self.dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"  # unique per writer, threads included
        tmp.write_text(doc)
        try:
            os.link(tmp, self.dir / f"{name}.json")  # atomic create-if-absent
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def drop(self, name: str) -> None:
        (self.dir / f"{name}.json").unlink(missing_ok=True)


def validate_catalog_name(name: str) -> None:
    if name in DEFAULT_CATALOG_ALIASES:
        raise catalog_exists(name)
    if not _CATALOG_NAME.match(name):
        raise invalid_catalog_name(name, "use lowercase letters, digits and underscores")
    if SEPARATOR in name or name.endswith("_"):
        # c__s is how schema s of catalog c is stored; a `__` in c would make that ambiguous.
        raise invalid_catalog_name(name, f"it may not contain '{SEPARATOR}' or end with '_'")


_active_registry: CatalogRegistry | None = None  # set by uc_patches.install_uc_patches in a task process


def set_active_registry(registry: CatalogRegistry | None) -> None:
    global _active_registry
    _active_registry = registry


def active_registry() -> CatalogRegistry | None:
    return _active_registry


def dbt_schema(catalog: str | None, schema: str) -> str:
    """The schema a generated dbt-spark profile gets so models land in `catalog.schema`. The
    catalog must exist (as on Databricks) when a registry is active (in a task process)."""
    if not catalog:
        return schema
    catalog = catalog.lower()
    if (
        catalog not in DEFAULT_CATALOG_ALIASES
        and _active_registry is not None
        and catalog not in _active_registry.names()
    ):
        raise no_such_catalog(catalog)
    return spark_database(catalog, schema)
