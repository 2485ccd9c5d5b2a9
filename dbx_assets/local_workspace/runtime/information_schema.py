"""Unity Catalog's INFORMATION_SCHEMA for SQL run in a task process (dbt-databricks asks it which
relations exist, their columns, tags and constraints).

Spark 3.5 has no information schema, so a statement naming `system.information_schema.<view>`
(every catalog) or `<catalog>.information_schema.<view>` (that catalog) has each such name replaced
by a temporary view built for that statement from the local catalog, in Unity Catalog terms
(uc_names.py): `main.analytics.orders`, never Spark's database. Only the schemas (and tables) the
statement's `= '<literal>'` filters name are read, so a lookup of one relation reads one schema;
the statement's own WHERE still decides the rows. Tags, column masks, row filters and key
constraints do not exist locally: those views are empty, with Databricks' columns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .uc_names import DEFAULT_CATALOG, DEFAULT_CATALOG_ALIASES, quote

SYSTEM_CATALOG = "system"
LOCAL_OWNER = "local"
_IDENT = r"(?:`(?P<{0}q>[^`]+)`|(?P<{0}>[A-Za-z_][A-Za-z0-9_]*))"
_REFERENCE = re.compile(
    r"(?:" + _IDENT.format("catalog") + r"\s*\.\s*)?"
    r"(?:`information_schema`|\binformation_schema)\s*\.\s*" + _IDENT.format("view"),
    re.I,
)
_LITERAL_FILTER = r"\b(?:\w+\.)?{0}\s*=\s*'(?P<value>[^']*)'"
_SCHEMA_FILTER = re.compile(_LITERAL_FILTER.format("(?:table_schema|schema_name)"), re.I)
_TABLE_FILTER = re.compile(_LITERAL_FILTER.format("table_name"), re.I)

_S = "STRING"
# Databricks' columns (docs: sql/language-manual/information-schema/*), in their order.
VIEW_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "catalogs": [("catalog_name", _S), ("catalog_owner", _S), ("comment", _S), ("created", "TIMESTAMP"),
                 ("created_by", _S), ("last_altered", "TIMESTAMP"), ("last_altered_by", _S)],
    "schemata": [("catalog_name", _S), ("schema_name", _S), ("schema_owner", _S), ("comment", _S),
                 ("created", "TIMESTAMP"), ("created_by", _S), ("last_altered", "TIMESTAMP"), ("last_altered_by", _S)],
    "tables": [("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("table_type", _S),
               ("is_insertable_into", _S), ("commit_action", _S), ("table_owner", _S), ("comment", _S),
               ("created", "TIMESTAMP"), ("created_by", _S), ("last_altered", "TIMESTAMP"), ("last_altered_by", _S),
               ("data_source_format", _S), ("storage_path", _S), ("storage_sub_directory", _S)],
    "views": [("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("view_definition", _S),
              ("check_option", _S), ("is_updatable", _S), ("is_insertable_into", _S), ("sql_path", _S),
              ("is_materialized", "BOOLEAN")],
    "columns": [("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("column_name", _S),
                ("ordinal_position", "INT"), ("column_default", _S), ("is_nullable", _S), ("full_data_type", _S),
                ("data_type", _S), ("character_maximum_length", "BIGINT"), ("character_octet_length", "BIGINT"),
                ("numeric_precision", "INT"), ("numeric_precision_radix", "INT"), ("numeric_scale", "INT"),
                ("datetime_precision", "INT"), ("interval_type", _S), ("interval_precision", "INT"),
                ("maximum_cardinality", "BIGINT"), ("is_identity", _S), ("identity_generation", _S),
                ("identity_start", _S), ("identity_increment", _S), ("identity_maximum", _S),
                ("identity_minimum", _S), ("identity_cycle", _S), ("is_generated", _S),
                ("generation_expression", _S), ("is_system_time_period_start", _S),
                ("is_system_time_period_end", _S), ("system_time_period_timestamp_generation", _S),
                ("is_updatable", _S), ("partition_index", "INT"), ("comment", _S)],
    "table_tags": [("catalog_name", _S), ("schema_name", _S), ("table_name", _S), ("tag_name", _S), ("tag_value", _S)],
    "column_tags": [("catalog_name", _S), ("schema_name", _S), ("table_name", _S), ("column_name", _S),
                    ("tag_name", _S), ("tag_value", _S)],
    "column_masks": [("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("column_name", _S),
                     ("mask_catalog", _S), ("mask_schema", _S), ("mask_name", _S), ("using_columns", _S)],
    "row_filters": [("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("filter_catalog", _S),
                    ("filter_schema", _S), ("filter_name", _S), ("target_columns", _S)],
    "table_constraints": [("constraint_catalog", _S), ("constraint_schema", _S), ("constraint_name", _S),
                          ("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("constraint_type", _S),
                          ("is_deferrable", _S), ("initially_deferred", _S), ("enforced", _S), ("comment", _S)],
    "key_column_usage": [("constraint_catalog", _S), ("constraint_schema", _S), ("constraint_name", _S),
                         ("table_catalog", _S), ("table_schema", _S), ("table_name", _S), ("column_name", _S),
                         ("ordinal_position", "INT"), ("position_in_unique_constraint", "INT")],
    "referential_constraints": [("constraint_catalog", _S), ("constraint_schema", _S), ("constraint_name", _S),
                                ("unique_constraint_catalog", _S), ("unique_constraint_schema", _S),
                                ("unique_constraint_name", _S), ("match_option", _S), ("update_rule", _S),
                                ("delete_rule", _S)],
}  # fmt: skip


def catalog_name(name: str) -> str:
    """A catalog as Unity Catalog lists it: the aliases of the default catalog are `main`."""
    return DEFAULT_CATALOG if name.lower() in DEFAULT_CATALOG_ALIASES else name.lower()


class UnknownInformationSchemaView(LookupError):
    def __init__(self, view: str):
        super().__init__(
            f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `information_schema`.`{view}` cannot be found locally; "
            f"the local workspace answers {', '.join(sorted(VIEW_COLUMNS))}. SQLSTATE: 42P01"
        )


@dataclass(frozen=True)
class Reference:
    start: int
    end: int
    catalog: str  # `system`: every catalog
    view: str


def references(text: str, default_catalog: str) -> list[Reference]:
    """Every `[catalog.]information_schema.<view>` in `text` (a bare one means the current catalog)."""
    found = []
    for m in _REFERENCE.finditer(text):
        catalog = (m.group("catalogq") or m.group("catalog") or default_catalog).lower()
        found.append(Reference(m.start(), m.end(), catalog, (m.group("viewq") or m.group("view")).lower()))
    return found


@dataclass(frozen=True)
class Scope:
    """Which catalogs, schemas and tables a statement can need (None: any)."""

    catalogs: tuple[str, ...]
    schemas: frozenset[str] | None
    tables: frozenset[str] | None

    def wants_schema(self, schema: str) -> bool:
        return self.schemas is None or schema.lower() in self.schemas

    def wants_table(self, table: str) -> bool:
        return self.tables is None or table.lower() in self.tables


def scope_of(text: str, catalog: str, all_catalogs: Iterable[str]) -> Scope:
    schemas = {m.group("value").lower() for m in _SCHEMA_FILTER.finditer(text)}
    tables = {m.group("value").lower() for m in _TABLE_FILTER.finditer(text)}
    catalogs = tuple(sorted(all_catalogs)) if catalog == SYSTEM_CATALOG else (catalog,)
    return Scope(catalogs, frozenset(schemas) or None, frozenset(tables) or None)


@dataclass(frozen=True)
class Relation:
    catalog: str
    schema: str
    name: str
    kind: str  # MANAGED | EXTERNAL | VIEW
    provider: str | None
    owner: str
    comment: str | None
    created: datetime | None
    location: str | None
    view_text: str | None


def parse_table_information(text: str) -> dict[str, str]:
    """`SHOW TABLE EXTENDED`'s `information` text as key -> value (a view's text may span lines)."""
    out: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        head, sep, value = line.partition(": ")
        if sep and head and not head.startswith((" ", "|")) and head[0].isupper():
            key = head
            out[key] = value
        elif key == "View Text" or key == "View Original Text":
            out[key] += "\n" + line
    return out


def _created(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.replace(" UTC ", " "), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None


class InformationSchema:
    """Builds the views over one SparkSession whose `sql` takes Unity Catalog names (uc_patches.py)."""

    def __init__(self, spark: Any, catalogs: Callable[[], Iterable[str]]):
        self.spark = spark
        self._catalogs = catalogs

    def all_catalogs(self) -> list[str]:
        return sorted({DEFAULT_CATALOG, *self._catalogs()})

    @contextmanager
    def rewritten(self, text: str, default_catalog: str = DEFAULT_CATALOG) -> Iterator[str]:
        """`text` with each information_schema view replaced by a temporary view, dropped after."""
        refs = references(text, default_catalog)
        if not refs:
            yield text
            return
        names: dict[tuple[str, str], str] = {}
        try:
            for ref in refs:
                if (ref.catalog, ref.view) not in names:
                    df = self.view(ref.view, scope_of(text, catalog_name(ref.catalog), self.all_catalogs()))
                    name = f"_dbx_information_schema_{ref.view}_{uuid.uuid4().hex[:12]}"
                    df.createOrReplaceTempView(name)
                    names[(ref.catalog, ref.view)] = name
            for ref in sorted(refs, key=lambda r: r.start, reverse=True):
                text = text[: ref.start] + names[(ref.catalog, ref.view)] + text[ref.end :]
            yield text
        finally:
            for name in names.values():
                self.spark.catalog.dropTempView(name)

    def view(self, view: str, scope: Scope) -> Any:
        columns = VIEW_COLUMNS.get(view)
        if columns is None:
            raise UnknownInformationSchemaView(view)
        rows: list[tuple] = []
        if view == "catalogs":
            rows = [(c, LOCAL_OWNER, None, None, LOCAL_OWNER, None, LOCAL_OWNER) for c in scope.catalogs]
        elif view == "schemata":
            rows = [
                (c, s, LOCAL_OWNER, None, None, LOCAL_OWNER, None, LOCAL_OWNER)
                for c in scope.catalogs
                for s in self.schemas(c)
                if scope.wants_schema(s)
            ]
        elif view == "tables":
            rows = [self._table_row(r) for r in self.relations(scope)]
        elif view == "views":
            rows = [
                (r.catalog, r.schema, r.name, r.view_text, "NONE", "NO", "NO", None, False)
                for r in self.relations(scope)
                if r.kind == "VIEW"
            ]
        elif view == "columns":
            rows = [row for r in self.relations(scope) for row in self._column_rows(r)]
        schema = ", ".join(f"{quote(n)} {t}" for n, t in columns)
        return self.spark.createDataFrame(rows, schema)

    def schemas(self, catalog: str) -> list[str]:
        return [row[0] for row in self.spark.sql(f"SHOW SCHEMAS IN {quote(catalog)}").collect()]

    def relations(self, scope: Scope) -> list[Relation]:
        found = []
        for catalog in scope.catalogs:
            for schema in self.schemas(catalog):
                if not scope.wants_schema(schema):
                    continue
                listing = self.spark.sql(f"SHOW TABLE EXTENDED IN {quote(catalog)}.{quote(schema)} LIKE '*'")
                for row in listing.collect():
                    if row["isTemporary"] or not scope.wants_table(row["tableName"]):
                        continue
                    info = parse_table_information(row["information"])
                    kind = info.get("Type", "MANAGED").upper()
                    found.append(
                        Relation(
                            catalog=catalog,
                            schema=schema,
                            name=row["tableName"],
                            kind=kind if kind in ("MANAGED", "EXTERNAL", "VIEW") else "MANAGED",
                            provider=info.get("Provider"),
                            owner=info.get("Owner") or LOCAL_OWNER,
                            comment=info.get("Comment"),
                            created=_created(info.get("Created Time")),
                            location=info.get("Location"),
                            view_text=info.get("View Text"),
                        )
                    )
        return found

    @staticmethod
    def _table_row(r: Relation) -> tuple:
        view = r.kind == "VIEW"
        return (
            r.catalog, r.schema, r.name, r.kind, "NO" if view else "YES", "PRESERVE", r.owner, r.comment,
            r.created, LOCAL_OWNER, r.created, LOCAL_OWNER,
            None if view else (r.provider or "delta").upper(), None if view else r.location, None,
        )  # fmt: skip

    def _column_rows(self, r: Relation) -> list[tuple]:
        name = ".".join(quote(p) for p in (r.catalog, r.schema, r.name))
        rows = []
        for i, field in enumerate(self.spark.table(name).schema.fields):
            full = field.dataType.simpleString()
            base = re.split(r"[<(]", full, maxsplit=1)[0].upper()
            precision = getattr(field.dataType, "precision", None)
            scale = getattr(field.dataType, "scale", None)
            comment = field.metadata.get("comment") if field.metadata else None
            rows.append(
                (r.catalog, r.schema, r.name, field.name, i, None, "YES" if field.nullable else "NO", full, base,
                 None, None, precision, 10 if precision is not None else None, scale, None, None, None, None,
                 "NO", None, None, None, None, None, None, "NO", None, "NO", "NO", None, "YES", None, comment)
            )  # fmt: skip
        return rows
