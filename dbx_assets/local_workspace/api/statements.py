"""SQL Statement Execution API subset on the local warehouse: `SELECT COUNT(*) FROM <table>`.

The server holds no JVM, so it runs the one statement a client needs to learn a table's size
without Spark. A Delta table is counted from its log's statistics, as Databricks answers a COUNT(*)
on Delta from them: `numRecords` of each live file less the rows its deletion vector removes, and
for a live file without statistics its parquet footer (engine/delta_log.py); when the log no longer
says which files are live the statement fails rather than guess. Any other table is counted from the
parquet footers of its files (engine/parquet_footer.py). Any other statement FAILS the way a SQL
error does on Databricks (HTTP
200, `status.state` FAILED, `status.error`), saying what the local warehouse runs. Results use
the documented inline JSON_ARRAY shape (values as strings); a stopped warehouse is started, as
Databricks starts one a statement is sent to. Responses are built from the SDK's dataclasses.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict

from databricks.sdk.service import sql

from ..engine.delta_log import DeltaLogError, count_rows
from ..engine.errors import ApiError, invalid
from ..engine.parquet_footer import NotParquet, table_row_count
from ..engine.warehouses import Warehouses
from ..http.server import Dispatcher, Request
from .unity_catalog import DEFAULT_CATALOG, UnityCatalog

_IDENT = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_COUNT = re.compile(
    rf"^\s*SELECT\s+COUNT\s*\(\s*(?:\*|1)\s*\)\s+FROM\s+(?P<name>{_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}})\s*;?\s*$",
    re.IGNORECASE,
)
_KEPT = 1000  # statements kept for statements/{id} (results are tiny)


def _parts(name: str) -> list[str]:
    return [p.strip().strip("`").lower() for p in re.findall(_IDENT, name)]


class StatementExecution:
    def __init__(self, warehouses: Warehouses, unity_catalog: UnityCatalog):
        self.warehouses = warehouses
        self.unity_catalog = unity_catalog
        self._done: OrderedDict[str, sql.StatementResponse] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, d: Dispatcher) -> None:
        base = "/api/2.0/sql/statements"
        d.route("POST", base + "/?", self._execute)
        d.route("GET", base + r"/(?P<id>[^/]+)", lambda req: self._get(req.path_params["id"]).as_dict())
        d.route("POST", base + r"/(?P<id>[^/]+)/cancel", lambda req: self._cancel(req.path_params["id"]))

    def _execute(self, req: Request) -> dict:
        body = req.json()
        statement, warehouse_id = body.get("statement"), body.get("warehouse_id")
        if not statement:
            raise invalid("Missing required field: statement")
        if not warehouse_id:
            raise invalid("Missing required field: warehouse_id")
        if body.get("format", "JSON_ARRAY") != "JSON_ARRAY" or body.get("disposition", "INLINE") != "INLINE":
            raise invalid("The local SQL warehouse returns results as format JSON_ARRAY, disposition INLINE only.")
        self.warehouses.ensure_started(str(warehouse_id))  # unknown id: 404, as the warehouses API says
        response = self._run(str(statement), body.get("catalog") or DEFAULT_CATALOG, body.get("schema") or "default")
        with self._lock:
            self._done[response.statement_id or ""] = response
            while len(self._done) > _KEPT:
                self._done.popitem(last=False)
        return response.as_dict()

    def _run(self, statement: str, catalog: str, schema: str) -> sql.StatementResponse:
        statement_id = str(uuid.uuid4())
        match = _COUNT.match(statement)
        if match is None:
            return _failed(
                statement_id,
                "The local SQL warehouse runs only `SELECT COUNT(*) FROM <table>` (it has no Spark of its own); "
                "run other SQL in a notebook or dbt task.",
            )
        parts = _parts(match["name"])
        full_name = ".".join([catalog.lower(), schema.lower()][: 3 - len(parts)] + parts)
        try:
            self.unity_catalog.table(full_name)
            table_dir = self.unity_catalog.table_dir(full_name)
            delta = self.unity_catalog.delta_snapshot(table_dir)
            rows = count_rows(delta, table_dir) if delta is not None else table_row_count(table_dir)
        except ApiError:
            return _failed(
                statement_id,
                f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{'`.`'.join(full_name.split('.'))}` cannot be found.",
                sql_state="42P01",
            )
        except DeltaLogError as exc:
            return _failed(
                statement_id,
                f"Cannot count Delta table {full_name} from its log: {exc}",
                code=sql.ServiceErrorCode.IO_ERROR,
            )
        except (OSError, NotParquet) as exc:
            return _failed(statement_id, f"Cannot read table {full_name}: {exc}", code=sql.ServiceErrorCode.IO_ERROR)
        return sql.StatementResponse(
            statement_id=statement_id,
            status=sql.StatementStatus(state=sql.StatementState.SUCCEEDED),
            manifest=sql.ResultManifest(
                format=sql.Format.JSON_ARRAY,
                schema=sql.ResultSchema(
                    column_count=1,
                    columns=[
                        sql.ColumnInfo(
                            name="count(1)", type_name=sql.ColumnInfoTypeName.LONG, type_text="BIGINT", position=0
                        )
                    ],
                ),
                total_chunk_count=1,
                chunks=[sql.BaseChunkInfo(chunk_index=0, row_offset=0, row_count=1)],
                total_row_count=1,
                truncated=False,
            ),
            result=sql.ResultData(chunk_index=0, row_offset=0, row_count=1, data_array=[[str(rows)]]),
        )

    def _get(self, statement_id: str) -> sql.StatementResponse:
        with self._lock:
            found = self._done.get(statement_id)
        if found is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist.")
        return found

    def _cancel(self, statement_id: str) -> dict:
        self._get(statement_id)  # statements finish before they are answered: nothing left to cancel
        return {}


def _failed(
    statement_id: str,
    message: str,
    *,
    code: sql.ServiceErrorCode = sql.ServiceErrorCode.BAD_REQUEST,
    sql_state: str | None = None,
) -> sql.StatementResponse:
    return sql.StatementResponse(
        statement_id=statement_id,
        status=sql.StatementStatus(
            state=sql.StatementState.FAILED,
            error=sql.ServiceError(error_code=code, message=message),
            sql_state=sql_state,
        ),
    )
