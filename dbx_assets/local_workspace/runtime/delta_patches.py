"""`from delta.tables import DeltaTable` with Databricks' names and paths, in the task process only.

Delta's Python API hands names and paths straight to the JVM, past the patches on pyspark's
readers and `spark.sql`: `DeltaTable.forName(spark, "dev.sales.orders")` needs the UC name in
Spark's terms (uc_names.py) and `DeltaTable.forPath(spark, "dbfs:/x")` or `/Volumes/...` the
path in the state dir (path_rewrite.py), as the table builders' `tableName` and `location` do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import uc_names as uc
from .path_rewrite import PathMapper
from .uc_patches import UcSession


def install_delta_patches(session: UcSession, mapper: PathMapper) -> None:
    """Patch delta.tables in this process. Idempotent; a no-op where delta-spark is not installed."""
    try:
        from delta.tables import DeltaTable, DeltaTableBuilder
    except ImportError:  # pragma: no cover - delta-spark is part of the local extra
        return
    if getattr(DeltaTable.forName, "_dbx_patched", False):
        return

    def name(value: Any) -> Any:
        return uc.spark_table_name(value, session.context()) if isinstance(value, str) else value

    def path(value: Any) -> Any:
        return mapper.spark(value) if isinstance(value, str) else value

    def identifier(value: Any) -> Any:  # convertToDelta: "parquet.`dbfs:/x`" or a table name
        if not isinstance(value, str):
            return value
        mapped = mapper.sql(value)
        return mapped if mapped != value or "`" in value else name(value)

    def class_method(method: Any, mapping: Callable[[Any], Any]) -> classmethod:
        fn = method.__func__

        @functools.wraps(fn)
        def patched(cls: Any, sparkSession: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(cls, sparkSession, mapping(target), *args, **kwargs)

        guarded = session.guarded(patched)
        guarded._dbx_patched = True  # type: ignore[attr-defined]
        return classmethod(guarded)

    def builder_method(fn: Callable, mapping: Callable[[Any], Any]) -> Callable:
        @functools.wraps(fn)
        def patched(self: Any, value: Any) -> Any:
            return fn(self, mapping(value))

        return patched

    DeltaTable.forName = class_method(DeltaTable.forName, name)  # type: ignore[method-assign,assignment]
    DeltaTable.forPath = class_method(DeltaTable.forPath, path)  # type: ignore[method-assign,assignment]
    DeltaTable.isDeltaTable = class_method(DeltaTable.isDeltaTable, path)  # type: ignore[method-assign,assignment]
    DeltaTable.convertToDelta = class_method(DeltaTable.convertToDelta, identifier)  # type: ignore[method-assign,assignment]
    DeltaTableBuilder.tableName = builder_method(DeltaTableBuilder.tableName, name)  # type: ignore[method-assign]
    DeltaTableBuilder.location = builder_method(DeltaTableBuilder.location, path)  # type: ignore[method-assign]
