"""Install Unity Catalog names (uc_names.py) into pyspark, in the task process only.

`spark.sql`, `spark.table`, `spark.read.table`, `saveAsTable`, `insertInto`, `writeTo`,
streaming `toTable`/`table` and the `spark.catalog` methods that take names see
`catalog.schema.table`, translate it to Spark's database, and turn Spark's errors back into
UC names. Catalog-level statements (CREATE/DROP/USE/SHOW/DESCRIBE CATALOG, SHOW SCHEMAS) are
answered here, since Spark's session catalog has no such thing.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import uc_catalogs, uc_sql
from . import uc_names as uc


def _analysis_error(error_class: str | None, text: str, like: Any = None) -> Exception:
    from pyspark.errors.exceptions.captured import AnalysisException

    if like is not None:  # keep Spark's class, cause, stack trace and error class; only the text changes
        cls: Any = type(like)
        err = cls.__new__(cls)  # not __init__: it insists on desc xor origin
        err.__dict__.update(like.__dict__)
        err.desc = text
        return err

    class UnityCatalogAnalysisException(AnalysisException):
        # Raised before Spark saw the name, so there is no JVM exception behind it.
        def getErrorClass(self) -> str | None:
            return error_class

        def __str__(self) -> str:
            return self.desc or ""

    return UnityCatalogAnalysisException(desc=text, stackTrace="")


class UcSession:
    """The name context of one task process: reads Spark's current database and the registry
    on each use (other tasks and clusters change them)."""

    def __init__(self, spark: Any, warehouse: Path):
        self.spark = spark
        self.warehouse = warehouse
        self.registry = uc_catalogs.CatalogRegistry(warehouse)
        self._current_database: Callable[[], str] = lambda: spark._jsparkSession.catalog().currentDatabase()

    def context(self) -> uc.Context:
        current = uc.process_current_database() or self._current_database().lower()
        return uc.Context(current, self.registry.names())

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, uc.UcNameError):
            return _analysis_error(exc.error_class, str(exc))
        from pyspark.errors.exceptions.captured import CapturedException

        if isinstance(exc, CapturedException) and exc.desc:
            text = uc.uc_error_text(exc.desc, self.registry.names())
            if text != exc.desc:
                return _analysis_error(None, text, like=exc)
        return exc

    def guarded(self, fn: Callable) -> Callable:
        """`fn` with UC errors raised as Spark AnalysisExceptions and Spark errors in UC names."""

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                translated = self.translate(exc)
                if translated is exc:
                    raise
                raise translated from None

        return call

    # -- catalog statements -----------------------------------------------------------------
    def run_plan(self, plan: uc_sql.Plan, run_sql: Callable[[str], Any]) -> Any:
        spark = self.spark
        if isinstance(plan, uc_sql.Sql):
            df = run_sql(plan.text)
            if plan.creates_database:
                self._mkdir_database(plan.creates_database)
            if plan.show_tables_in and "namespace" in df.columns:
                from pyspark.sql import functions as F

                _, schema = uc.uc_schema(plan.show_tables_in, self.registry.names())
                df = df.withColumn(
                    "namespace",
                    F.when(F.col("namespace") == plan.show_tables_in, F.lit(schema)).otherwise(F.col("namespace")),
                )
            return df
        if isinstance(plan, uc_sql.CreateCatalog):
            exists = plan.name in uc.DEFAULT_CATALOG_ALIASES or not self.registry.create(plan.name, plan.comment)
            if exists and not plan.if_not_exists:
                raise uc.catalog_exists(plan.name)
            self._ensure_database(uc.spark_database(plan.name, "default"), run_sql)
            return spark.createDataFrame([], "x STRING").select()  # Databricks returns an empty result
        if isinstance(plan, uc_sql.DropCatalog):
            return self._drop_catalog(plan, run_sql)
        if isinstance(plan, uc_sql.UseCatalog):
            self._ensure_database(uc.spark_database(plan.name, "default"), run_sql)
            run_sql(f"USE {uc.quote(uc.spark_database(plan.name, 'default'))}")
            return spark.createDataFrame([], "x STRING").select()
        if isinstance(plan, uc_sql.ShowCatalogs):
            names = sorted({uc.DEFAULT_CATALOG, *self.registry.names()})
            rows = [(n,) for n in names if plan.pattern is None or _like(n, plan.pattern)]
            return spark.createDataFrame(rows, "catalog STRING")
        if isinstance(plan, uc_sql.ShowSchemas):
            schemas = self.schemas(plan.catalog, run_sql)
            found = [(s,) for s in schemas if plan.pattern is None or _like(s, plan.pattern)]
            return spark.createDataFrame(found, "databaseName STRING")
        if isinstance(plan, uc_sql.DescribeCatalog):
            entry = self.registry.entries().get(plan.name)
            name = plan.name if plan.name not in uc.DEFAULT_CATALOG_ALIASES else uc.DEFAULT_CATALOG
            info = [("Catalog Name", name), ("Comment", (entry.comment if entry else None) or ""), ("Owner", "local")]
            return spark.createDataFrame(info, "info_name STRING, info_value STRING")
        raise TypeError(plan)

    def schemas(self, catalog: str, run_sql: Callable[[str], Any]) -> list[str]:
        catalogs = self.registry.names()
        out = []
        for row in run_sql("SHOW DATABASES").collect():
            owner, schema = uc.uc_schema(row[0], catalogs)
            if owner == catalog:
                out.append(schema)
        return sorted(out)

    def _ensure_database(self, database: str, run_sql: Callable[[str], Any]) -> None:
        run_sql(f"CREATE DATABASE IF NOT EXISTS {uc.quote(database)}")
        self._mkdir_database(database)

    def _mkdir_database(self, database: str) -> None:
        # Other clusters (catalog_sync) and the UC API find schemas by their dirs, even empty ones.
        if database.lower() != "default":  # `default` is the warehouse root itself
            (self.warehouse / f"{database.lower()}.db").mkdir(parents=True, exist_ok=True)

    def _drop_catalog(self, plan: uc_sql.DropCatalog, run_sql: Callable[[str], Any]) -> Any:
        if plan.name in uc.DEFAULT_CATALOG_ALIASES:
            raise uc.UcNameError("UC_COMMAND_NOT_SUPPORTED", f"The catalog '{plan.name}' cannot be dropped.", "0AKUC")
        if plan.name not in self.registry.names():
            if plan.if_exists:
                return self.spark.createDataFrame([], "x STRING").select()
            raise uc.no_such_catalog(plan.name)
        schemas = self.schemas(plan.name, run_sql)
        non_empty = [
            s
            for s in schemas
            if s != "default" or run_sql(f"SHOW TABLES IN {uc.quote(uc.spark_database(plan.name, s))}").count()
        ]
        if non_empty and not plan.cascade:
            raise uc.UcNameError(
                "CATALOG_NOT_EMPTY",
                f"Cannot drop catalog '{plan.name}' because it contains schemas "
                f"({', '.join(non_empty)}). Use DROP CATALOG ... CASCADE.",
                "2BP01",
            )
        current = self._current_database().lower()
        for schema in schemas:
            database = uc.spark_database(plan.name, schema)
            if current == database:
                run_sql("USE default")
            run_sql(f"DROP DATABASE IF EXISTS {uc.quote(database)} CASCADE")
        self.registry.drop(plan.name)
        return self.spark.createDataFrame([], "x STRING").select()


def _like(name: str, pattern: str) -> bool:
    # Databricks' SHOW ... LIKE: `*` any chars, `|` alternatives, case-insensitive.
    return any(fnmatch.fnmatch(name.lower(), p.strip().lower()) for p in pattern.split("|"))


def install_uc_patches(spark: Any, warehouse: Path) -> UcSession:
    """Patch pyspark in this process. Idempotent; install after the path patches so
    `spark.sql` rewrites names first, then paths."""
    from pyspark.sql import Catalog, DataFrame, DataFrameReader, DataFrameWriter, SparkSession
    from pyspark.sql.streaming import DataStreamReader, DataStreamWriter

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to Command" is not news
    session = UcSession(spark, warehouse)
    uc_catalogs.set_active_registry(session.registry)
    if getattr(SparkSession.sql, "_dbx_uc_patched", False):
        return session

    orig_sql = SparkSession.sql

    def sql(self: Any, sqlQuery: Any, args: Any = None, **kwargs: Any) -> Any:
        if not isinstance(sqlQuery, str):
            return orig_sql(self, sqlQuery, args, **kwargs)
        plan = uc_sql.plan_sql(sqlQuery, session.context(), mask_braces=bool(kwargs))
        return session.run_plan(plan, lambda text: orig_sql(self, text, args, **kwargs))

    patched_sql = session.guarded(functools.wraps(orig_sql)(sql))
    patched_sql._dbx_uc_patched = True  # type: ignore[attr-defined]
    patched_sql._dbx_patched = getattr(orig_sql, "_dbx_patched", False)  # type: ignore[attr-defined]
    SparkSession.sql = patched_sql  # type: ignore[method-assign]

    def table_arg(fn: Callable, key: str, database_arg: str | None = None) -> Callable:
        """Map the first positional (or `key`) argument as a table name."""

        @functools.wraps(fn)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            ctx = session.context()
            if args and isinstance(args[0], str):
                args = (uc.spark_table_name(args[0], ctx), *args[1:])
            elif isinstance(kwargs.get(key), str):
                kwargs[key] = uc.spark_table_name(kwargs[key], ctx)
            if database_arg is not None:
                if len(args) > 1 and isinstance(args[1], str):
                    args = (args[0], uc.spark_database_name(args[1], ctx), *args[2:])
                elif isinstance(kwargs.get(database_arg), str):
                    kwargs[database_arg] = uc.spark_database_name(kwargs[database_arg], ctx)
            return fn(self, *args, **kwargs)

        return session.guarded(patched)

    def database_arg(fn: Callable, key: str) -> Callable:
        @functools.wraps(fn)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            ctx = session.context()
            if args and isinstance(args[0], str):
                args = (uc.spark_database_name(args[0], ctx), *args[1:])
            elif isinstance(kwargs.get(key), str):
                kwargs[key] = uc.spark_database_name(kwargs[key], ctx)
            return fn(self, *args, **kwargs)

        return session.guarded(patched)

    SparkSession.table = table_arg(SparkSession.table, "tableName")  # type: ignore[method-assign]
    DataFrameReader.table = table_arg(DataFrameReader.table, "tableName")  # type: ignore[method-assign]
    DataFrameWriter.saveAsTable = table_arg(DataFrameWriter.saveAsTable, "name")  # type: ignore[method-assign]
    DataFrameWriter.insertInto = table_arg(DataFrameWriter.insertInto, "tableName")  # type: ignore[method-assign]
    DataFrame.writeTo = table_arg(DataFrame.writeTo, "table")  # type: ignore[method-assign]
    DataStreamReader.table = table_arg(DataStreamReader.table, "tableName")  # type: ignore[method-assign]
    DataStreamWriter.toTable = table_arg(DataStreamWriter.toTable, "tableName")  # type: ignore[method-assign]
    for name in (
        "getTable",
        "refreshTable",
        "recoverPartitions",
        "cacheTable",
        "uncacheTable",
        "isCached",
        "createTable",
    ):
        setattr(Catalog, name, table_arg(getattr(Catalog, name), "tableName"))
    Catalog.tableExists = table_arg(Catalog.tableExists, "tableName", database_arg="dbName")  # type: ignore[method-assign]
    Catalog.listColumns = table_arg(Catalog.listColumns, "tableName", database_arg="dbName")  # type: ignore[method-assign]
    Catalog.listTables = database_arg(Catalog.listTables, "dbName")  # type: ignore[method-assign]
    Catalog.databaseExists = database_arg(Catalog.databaseExists, "dbName")  # type: ignore[method-assign]
    Catalog.getDatabase = database_arg(Catalog.getDatabase, "dbName")  # type: ignore[method-assign]
    Catalog.setCurrentDatabase = database_arg(Catalog.setCurrentDatabase, "dbName")  # type: ignore[method-assign]

    def current_catalog(self: Any) -> str:
        return session.context().current_catalog

    def set_current_catalog(self: Any, catalogName: str) -> None:
        self._sparkSession.sql(f"USE CATALOG {uc.quote(catalogName)}")

    def current_database(self: Any) -> str:
        return session.context().current_schema

    def list_catalogs(self: Any, pattern: str | None = None) -> list:
        from pyspark.sql.catalog import CatalogMetadata

        names = sorted({uc.DEFAULT_CATALOG, *session.registry.names()})
        return [CatalogMetadata(name=n, description=None) for n in names if pattern is None or _like(n, pattern)]

    Catalog.currentCatalog = current_catalog  # type: ignore[method-assign]
    Catalog.setCurrentCatalog = set_current_catalog  # type: ignore[method-assign]
    Catalog.currentDatabase = current_database  # type: ignore[method-assign]
    Catalog.listCatalogs = list_catalogs  # type: ignore[method-assign]
    return session
