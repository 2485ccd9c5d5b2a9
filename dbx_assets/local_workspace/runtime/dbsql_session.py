"""databricks-sql-connector's `connect()` over the cluster's SparkSession, so dbt-databricks runs
its own macros on the local cluster (a dbt task process only; `install()` replaces
`databricks.sql.connect` in this process).

dbt-databricks drives the connector through a small part of DB-API 2.0 (its handle.py and
connections.py): `connect(server_hostname=, http_path=, catalog=, schema=, session_configuration=,
...)`, `connection.cursor()/close()/get_session_id_hex()`, `cursor.execute(sql, params)` with
inline `%s` parameters (seeds), `fetchone/fetchmany/fetchall`, `description`, `query_id`,
`schemas()`/`tables()` (its hive_metastore path), `close()/cancel()`. Each statement here is one
`spark.sql` on the session, which takes Unity Catalog names (uc_patches.py); information_schema
views are answered from the local catalog (information_schema.py). Errors are the connector's own
`ServerOperationError`, which dbt-databricks turns into a database error with Spark's message.

The session is the cluster's, shared by every thread and task: `catalog` is honoured for this
process (two-level names mean it, as dbt-databricks' connection catalog does), while `schema` and
`session_configuration` are not applied (dbt qualifies every name; a SET would leak into other
tasks). `SET spark.databricks.clusterUsageTags.sparkVersion` answers the Databricks Runtime that
local Spark 3.5 with Delta 3.3 matches, so dbt-databricks picks the SQL that runtime accepts.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .information_schema import InformationSchema, Scope
from .information_schema import catalog_name as uc_catalog

# Spark 3.5 + Delta 3.x is Databricks Runtime 15.4 LTS' engine.
LOCAL_DBR_VERSION = "15.4.x-scala2.12"
DBR_VERSION_KEY = "spark.databricks.clusterUsageTags.sparkVersion"
_SET_KEY = re.compile(r"^\s*SET\s+(?P<key>[\w.]+)\s*;?\s*$", re.I)
_LEADING_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*(?:\n|$)\s*)*", re.S)


def _server_error(message: str) -> Exception:
    from databricks.sql.exc import ServerOperationError

    return ServerOperationError(message)


def _render_inline(operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None) -> str:
    """The connector's own inline rendering (`use_inline_params`), which dbt-databricks asks for."""
    if not parameters:
        return operation
    from databricks.sql.utils import ParamEscaper, inject_parameters

    return inject_parameters(operation, ParamEscaper().escape_args(parameters))


def _plain(value: Any) -> Any:
    from pyspark.sql import Row

    if isinstance(value, Row):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class SessionCursor:
    """One statement at a time, its rows fetched eagerly (dbt reads them all anyway)."""

    arraysize = 10000

    def __init__(self, connection: SessionConnection):
        self.connection = connection
        self.open = True
        self.query_id: str | None = None
        self.description: list[tuple] | None = None
        self.rowcount = -1
        self._rows: list[tuple] = []
        self._next = 0

    # -- statements --------------------------------------------------------------------------
    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None, **_: Any):
        self._check_open()
        self.query_id = str(uuid.uuid4())
        text = _render_inline(operation, parameters)
        answered = self._answer_locally(text)
        if answered is not None:
            columns, rows = answered
            self._set_result([(c, "string", None, None, None, None, True) for c in columns], rows)
            return self
        spark = self.connection.spark
        try:
            with self.connection.information_schema.rewritten(text, self.connection.catalog) as rewritten:
                df = spark.sql(rewritten)
                rows = [tuple(_plain(v) for v in row) for row in df.collect()]
                fields = df.schema.fields
        except Exception as exc:
            raise _server_error(_message(exc)) from exc
        description = [
            (
                f.name,
                f.dataType.typeName(),
                None,
                None,
                getattr(f.dataType, "precision", None),
                getattr(f.dataType, "scale", None),
                f.nullable,
            )
            for f in fields
        ]
        self._set_result(description, rows)
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Any]) -> SessionCursor:
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
        return self

    def _answer_locally(self, text: str) -> tuple[list[str], list[tuple]] | None:
        body = _LEADING_COMMENTS.sub("", text)
        m = _SET_KEY.match(body)
        if m and m.group("key").lower() == DBR_VERSION_KEY.lower():
            return ["key", "value"], [(DBR_VERSION_KEY, LOCAL_DBR_VERSION)]
        return None

    def _set_result(self, description: list[tuple], rows: list[tuple]) -> None:
        self.description = description or None
        self._rows = rows
        self._next = 0
        self.rowcount = len(rows)

    # -- metadata calls (the connector's Thrift metadata operations) ---------------------------
    def schemas(self, catalog_name: str | None = None, schema_name: str | None = None) -> SessionCursor:
        catalog = uc_catalog(catalog_name or self.connection.catalog)
        found = [
            (s, catalog)
            for s in self.connection.information_schema.schemas(catalog)
            if schema_name is None or _like(s, schema_name)
        ]
        self._set_result([("TABLE_SCHEM", "string", None, None, None, None, False),
                          ("TABLE_CATALOG", "string", None, None, None, None, True)], found)  # fmt: skip
        return self

    def tables(
        self,
        catalog_name: str | None = None,
        schema_name: str | None = None,
        table_name: str | None = None,
        table_types: Sequence[str] | None = None,
    ) -> SessionCursor:
        schema_info = self.connection.information_schema
        scope = Scope(
            (uc_catalog(catalog_name or self.connection.catalog),),
            frozenset({schema_name.lower()}) if schema_name else None,
            None,
        )
        rows = [
            (r.catalog, r.schema, r.name, "VIEW" if r.kind == "VIEW" else "TABLE", r.comment or "")
            for r in schema_info.relations(scope)
            if (table_name is None or _like(r.name, table_name))
            and (not table_types or ("VIEW" if r.kind == "VIEW" else "TABLE") in table_types)
        ]
        names = ["TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS"]
        self._set_result([(n, "string", None, None, None, None, True) for n in names], rows)
        return self

    # -- results -----------------------------------------------------------------------------
    def fetchone(self) -> tuple | None:
        self._check_open()
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        self._check_open()
        size = self.arraysize if size is None else size
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    def fetchall(self) -> list[tuple]:
        self._check_open()
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple]:
        while (row := self.fetchone()) is not None:
            yield row

    # -- lifecycle ---------------------------------------------------------------------------
    def cancel(self) -> None:
        """Statements run synchronously on the caller's thread; nothing is in flight to cancel."""

    def close(self) -> None:
        self.open = False
        self._rows = []

    def _check_open(self) -> None:
        if not self.open:
            from databricks.sql.exc import CursorAlreadyClosedError

            raise CursorAlreadyClosedError("Cursor is not open")

    def __enter__(self) -> SessionCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SessionConnection:
    def __init__(self, spark: Any, catalog: str, information_schema: InformationSchema):
        self.spark = spark
        self.catalog = catalog
        self.information_schema = information_schema
        self.open = True
        self._session_id = uuid.uuid4()

    def cursor(self, *args: Any, **kwargs: Any) -> SessionCursor:
        if not self.open:
            from databricks.sql.exc import InterfaceError

            raise InterfaceError("Cannot create cursor from closed connection")
        return SessionCursor(self)

    def get_session_id_hex(self) -> str:
        return self._session_id.hex

    def commit(self) -> None:
        """Every statement commits by itself (as on Databricks)."""

    def rollback(self) -> None:
        """No transactions to roll back (as on Databricks)."""

    def close(self) -> None:
        self.open = False

    def __enter__(self) -> SessionConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _like(name: str, pattern: str) -> bool:
    # The connector's metadata patterns: SQL LIKE (`%`, `_`), case-insensitive.
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.I) is not None


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    # py4j errors carry the JVM stack trace after the message; dbt shows the first lines only.
    return text.split("\n\tat ", 1)[0].strip() or type(exc).__name__


_install_lock = threading.Lock()


def connect(
    server_hostname: str | None = None,
    http_path: str | None = None,
    *,
    catalog: str | None = None,
    schema: str | None = None,
    session_configuration: Mapping[str, Any] | None = None,
    **_: Any,
) -> SessionConnection:
    """What `databricks.sql.connect` returns, on this process's SparkSession."""
    from pyspark.sql import SparkSession

    from . import uc_catalogs
    from .uc_names import set_process_catalog

    spark = SparkSession.builder.getOrCreate()  # the attached cluster session in a task process
    name = (catalog or "main").lower()
    set_process_catalog(name)  # two-level names mean the connection's catalog, as on Databricks
    registry = uc_catalogs.active_registry()

    return SessionConnection(spark, name, InformationSchema(spark, lambda: registry.names() if registry else ()))


def install() -> None:
    """Make `databricks.sql.connect` (what dbt-databricks calls) open session connections here.

    dbt-databricks also probes `https://<host>/.well-known/databricks-config` once per process to
    route SPOG workspaces; nothing is routed here, so the probe answers "not a SPOG host" without
    the request."""
    with _install_lock:
        try:
            import databricks.sql
        except ImportError:  # no dbt-databricks here: only `type: spark` profiles can run
            return
        if databricks.sql.connect is connect:
            return
        databricks.sql.connect = connect  # type: ignore[assignment]
        try:
            from dbt.adapters.databricks.spog import probe
        except ImportError:  # an adapter release without the probe
            return
        probe.probe_host = lambda host: probe.HostMetadata(host_type=None)
