"""The ingestion patches of a task process, installed after the path and Unity Catalog patches:
Auto Loader (auto_loader.py), read_files / COPY INTO / streaming tables (read_files.py), and
Databricks' sample data (sample_data.py: generated once per workspace, registered per cluster)."""

from __future__ import annotations

import functools
import time
from typing import Any


def install_ingestion_patches(spark: Any, mapper: Any, paths: Any) -> None:
    from .auto_loader import install_auto_loader_patches
    from .read_files import install_read_files_patches

    install_auto_loader_patches(mapper)
    install_read_files_patches(spark, mapper, paths.warehouse)
    started = time.monotonic()
    try:
        install_samples(spark, paths)
    except Exception as exc:  # sample data is a convenience: never fail a task for it
        print(f"WARNING: sample data unavailable: {type(exc).__name__}: {exc}", flush=True)
    elapsed = time.monotonic() - started
    if elapsed > 0.5:
        print(f"[local runtime] sample data ready in {elapsed:.2f} s", flush=True)


def install_samples(spark: Any, paths: Any) -> None:
    from pyspark.sql import DataFrameWriter
    from pyspark.sql.streaming import DataStreamWriter

    from .sample_data import ReadOnlySamples, ensure_generated, refuses_table, register
    from .uc_catalogs import CatalogRegistry

    root = ensure_generated(paths.state_dir, paths.dbfs)
    register(spark, root, CatalogRegistry(paths.warehouse))
    if getattr(DataFrameWriter.saveAsTable, "_dbx_samples", False):
        return

    def refusing(fn: Any) -> Any:
        @functools.wraps(fn)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            name = args[0] if args else kwargs.get("name", kwargs.get("tableName"))
            if refuses_table(name):
                raise ReadOnlySamples(
                    f"[PERMISSION_DENIED] The catalog 'samples' is read-only: cannot write {name}. "
                    "Write to a catalog of your own, e.g. main."
                )
            return fn(self, *args, **kwargs)

        patched._dbx_samples = True  # type: ignore[attr-defined]
        return patched

    DataFrameWriter.saveAsTable = refusing(DataFrameWriter.saveAsTable)  # type: ignore[method-assign]
    DataFrameWriter.insertInto = refusing(DataFrameWriter.insertInto)  # type: ignore[method-assign]
    DataStreamWriter.toTable = refusing(DataStreamWriter.toTable)  # type: ignore[method-assign]
