"""The table an asset writes, as Dagster's standard table metadata read from the workspace.

After a task succeeds: `dagster/table_name`, `dagster/column_schema` (from Unity Catalog's
`tables.get(full_name)` columns) and `dagster/row_count`. The row count comes from the table's
statistics (`spark.sql.statistics.numRows` in its properties, present after `ANALYZE TABLE ...
COMPUTE STATISTICS` or predictive optimization) at no extra cost; without them, from one
`SELECT COUNT(*)` through the SQL Statement Execution API on the deploy target's SQL warehouse
(which starts that warehouse if it is stopped; on a Delta table it answers from the log's file
statistics). Nothing here fails an asset: a missing table, a missing warehouse or a failed count
becomes a warning entry on the event instead.

For a Delta table, from the same `tables.get`: `delta_version`, the table version the step found
right after the task (Unity Catalog's `delta.lastUpdateVersion`), `delta_commit_timestamp`, when
that version was committed (`delta.lastCommitTimestamp`), and `delta_time_travel`, the query that
reads exactly that version (`SELECT * FROM ... VERSION AS OF n`): each materialization on the
asset's page names the table version it left. A writer committing to the same table between the
task's end and that read would be credited with its version; the commit time shows it.

Dagster 1.13 keeps `TableMetadataSet` out of its public namespace, so the entries use its
documented keys directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from dbx_assets.integration.jobs.model import WorkflowDefinitionError

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.catalog import ColumnInfo, TableInfo

TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"
ROW_COUNT_SOURCE = "databricks_row_count_source"
TABLE_WARNING = "databricks_table_warning"
DELTA_VERSION = "delta_version"
DELTA_COMMIT_TIMESTAMP = "delta_commit_timestamp"
DELTA_TIME_TRAVEL = "delta_time_travel"

CATALOG_PLACEHOLDER = "{catalog}"
STATISTICS_ROW_COUNT = "spark.sql.statistics.numRows"
LAST_UPDATE_VERSION = "delta.lastUpdateVersion"  # what Unity Catalog reports for a Delta table
LAST_COMMIT_TIMESTAMP = "delta.lastCommitTimestamp"  # ms since the epoch
COUNT_WAIT = "30s"  # the Statement Execution API's longest synchronous wait is 50 s

_PART = re.compile(r"^(?:\{catalog\}|[A-Za-z0-9_][A-Za-z0-9_-]*)$")


def validate_table_name(template: str, where: str) -> None:
    """At definitions load: `catalog.schema.table`, where the catalog may be `{catalog}` (the deploy
    target's catalog)."""
    parts = template.split(".")
    placeholders = [p for p in parts if CATALOG_PLACEHOLDER in p]
    if len(parts) != 3 or not all(_PART.match(p) for p in parts) or placeholders not in ([], [parts[0]]):
        raise WorkflowDefinitionError(
            f"{where}: table '{template}' is not a Unity Catalog name. Use catalog.schema.table, e.g. "
            f"'{CATALOG_PLACEHOLDER}.silver.orders' ({CATALOG_PLACEHOLDER} is the deploy target's catalog) "
            "or 'main.silver.orders'."
        )


def resolve_table_name(template: str, catalog: str | None) -> str | None:
    """The full name for the deploy target's catalog; None when it needs a catalog and none is set."""
    if CATALOG_PLACEHOLDER not in template:
        return template
    return template.replace(CATALOG_PLACEHOLDER, catalog) if catalog else None


def column_schema(columns: list[ColumnInfo]) -> dg.TableSchema:
    ordered = sorted(columns, key=lambda c: c.position if c.position is not None else 0)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name or "",
                type=c.type_text or (c.type_name.value if c.type_name else "unknown"),
                description=c.comment,
            )
            for c in ordered
        ]
    )


def statistics_row_count(table: TableInfo) -> int | None:
    value = (table.properties or {}).get(STATISTICS_ROW_COUNT)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _int_property(table: TableInfo, key: str) -> int | None:
    try:
        return int((table.properties or {})[key])
    except (KeyError, TypeError, ValueError):
        return None


def delta_version_metadata(full_name: str, table: TableInfo) -> dict[str, Any]:
    """For a table Unity Catalog reports as Delta: the version it is at, when that version was committed, and
    the query that reads exactly that version. Nothing for other tables."""
    from databricks.sdk.service.catalog import DataSourceFormat

    if table.data_source_format != DataSourceFormat.DELTA:
        return {}
    version = _int_property(table, LAST_UPDATE_VERSION)
    if version is None:
        return {}
    quoted = ".".join(f"`{part}`" for part in full_name.split("."))
    metadata: dict[str, Any] = {
        DELTA_VERSION: dg.MetadataValue.int(version),
        DELTA_TIME_TRAVEL: dg.MetadataValue.text(f"SELECT * FROM {quoted} VERSION AS OF {version}"),
    }
    committed = _int_property(table, LAST_COMMIT_TIMESTAMP)
    if committed is not None:
        metadata[DELTA_COMMIT_TIMESTAMP] = dg.MetadataValue.timestamp(committed / 1000)
    return metadata


@dataclass
class TableFacts:
    """What one read found: metadata entries for the event, and warnings to log."""

    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.metadata[TABLE_WARNING] = "; ".join(self.warnings)


class TableMetadataReader:
    """Reads tables for one step. `warehouse_id` is called at most once, and only when a table has
    no statistics (resolving a warehouse may itself call the workspace)."""

    def __init__(self, client: WorkspaceClient, warehouse_id: Callable[[], str | None]):
        self._client = client
        self._warehouse_id = warehouse_id
        self._warehouse: tuple[str | None, str | None] | None = None  # (id, why none)

    def read(self, full_name: str) -> TableFacts:
        from databricks.sdk.errors import DatabricksError, NotFound

        facts = TableFacts(metadata={TABLE_NAME: full_name})
        try:
            table = self._client.tables.get(full_name)
        except NotFound:
            facts.warn(
                f"Table {full_name} does not exist in Unity Catalog after the task: check the name the notebook "
                "writes and the asset's `table`."
            )
            return facts
        except DatabricksError as err:
            facts.warn(f"Could not read table {full_name} from Unity Catalog: {err}")
            return facts
        if table.columns:
            facts.metadata[COLUMN_SCHEMA] = column_schema(table.columns)
        facts.metadata.update(delta_version_metadata(full_name, table))
        rows = statistics_row_count(table)
        if rows is not None:
            facts.metadata[ROW_COUNT] = rows
            facts.metadata[ROW_COUNT_SOURCE] = f"table statistics ({STATISTICS_ROW_COUNT})"
            return facts
        self._count_rows(full_name, facts)
        return facts

    def _count_rows(self, full_name: str, facts: TableFacts) -> None:
        from databricks.sdk.errors import DatabricksError
        from databricks.sdk.service.sql import ExecuteStatementRequestOnWaitTimeout, StatementState

        warehouse_id, why_none = self._resolve_warehouse()
        if warehouse_id is None:
            facts.warn(f"No row count for {full_name}: it has no statistics and {why_none}")
            return
        quoted = ".".join(f"`{part}`" for part in full_name.split("."))
        try:
            answer = self._client.statement_execution.execute_statement(
                statement=f"SELECT COUNT(*) FROM {quoted}",
                warehouse_id=warehouse_id,
                wait_timeout=COUNT_WAIT,
                on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CANCEL,
            )
        except DatabricksError as err:
            facts.warn(f"No row count for {full_name}: the count on SQL warehouse {warehouse_id} failed: {err}")
            return
        state = answer.status.state if answer.status else None
        data = answer.result.data_array if answer.result else None
        if state != StatementState.SUCCEEDED or not data or not data[0]:
            error = answer.status.error.message if answer.status and answer.status.error else None
            facts.warn(
                f"No row count for {full_name}: the count on SQL warehouse {warehouse_id} ended "
                f"{state.value if state else 'without a state'}{f': {error}' if error else ''}"
            )
            return
        facts.metadata[ROW_COUNT] = int(data[0][0])
        facts.metadata[ROW_COUNT_SOURCE] = f"SELECT COUNT(*) on SQL warehouse {warehouse_id}"

    def _resolve_warehouse(self) -> tuple[str | None, str | None]:
        if self._warehouse is None:
            try:
                warehouse_id = self._warehouse_id()
                self._warehouse = (warehouse_id, None if warehouse_id else "no SQL warehouse is configured")
            except Exception as err:  # e.g. several warehouses and none chosen: say so, keep the asset
                self._warehouse = (None, f"no SQL warehouse could be chosen ({err})")
        return self._warehouse


def with_table_metadata(events: list[Any], reader: TableMetadataReader, log: Callable[[str], None]) -> list[Any]:
    """Materializations that name their table (`dagster/table_name`) get its columns and row count.
    The tables are read at once (a dbt task's models all end together; one read each would add up)."""

    def table_of(event: Any) -> str | None:
        name = event.metadata.get(TABLE_NAME) if isinstance(event, dg.MaterializeResult) and event.metadata else None
        return name if isinstance(name, str) else None

    names = sorted({name for event in events if (name := table_of(event)) is not None})
    if len(names) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="table-metadata") as pool:
            read = dict(zip(names, pool.map(reader.read, names), strict=True))
    else:
        read = {name: reader.read(name) for name in names}
    out = []
    for event in events:
        name = table_of(event)
        if name is None:
            out.append(event)
            continue
        facts = read[name]
        for warning in facts.warnings:
            log(f"Asset {event.asset_key.to_user_string() if event.asset_key else '?'}: {warning}")
        out.append(_with_metadata(event, facts.metadata))
    return out


def _with_metadata(event: dg.MaterializeResult, extra: Mapping[str, Any]) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=event.asset_key,
        metadata={**(event.metadata or {}), **extra},
        check_results=event.check_results,
        data_version=event.data_version,
        tags=event.tags,
    )
