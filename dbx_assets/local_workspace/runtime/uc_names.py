"""Unity Catalog three-level names (`catalog.schema.table`) on a local Spark 3.5 cluster.

Spark 3.5 has no Unity Catalog plugin offline, so a (catalog, schema) pair is mapped onto one
Spark database and names are rewritten in the task process before Spark sees them:

* `main` (the workspace's default catalog), `hive_metastore` and `spark_catalog` map a schema
  `s` to the plain database `s`. Tables written with two-level names before Unity Catalog
  (`sales.orders`, the warehouse's `sales.db/orders`) are therefore `main.sales.orders`, and
  notebooks moving from two- to three-level names one at a time keep seeing the same tables.
  On a real workspace `hive_metastore` is a separate legacy catalog; locally it is an alias of
  `main` (in SQL and the Python API only; the Unity Catalog REST API lists `main`), because
  there is one local metastore and a notebook that names `hive_metastore.s.t` wants the table
  the legacy two-level name `s.t` meant. A project that keeps *different* tables under the same
  schema name in `main` and `hive_metastore` is the one case this does not model.
* Any other catalog `c` (created with `CREATE CATALOG c`) maps schema `s` to database `c__s`.
  Catalog names may not contain `__` or end in `_`, so the mapping can be read back: a database
  `c__s` belongs to `c` when `c` is a registered catalog, and to `main` otherwise.
* A two-level name `s.t` means `<current catalog>.s.t`, as on Unity Catalog. The current
  catalog is not separate state: it is the catalog of Spark's current database (`USE CATALOG
  dev` is `USE dev__default`), so it stays right however the shared session was left.

This module is the name mapping (names, error text; no Spark, no files); the catalogs that exist
are uc_catalogs.py, SQL text is rewritten by uc_sql.py, and uc_patches.py installs all of it into
pyspark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_CATALOG = "main"
DEFAULT_CATALOG_ALIASES = frozenset({"main", "hive_metastore", "spark_catalog"})
SEPARATOR = "__"
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UcNameError(Exception):
    """An error Databricks reports with an error class (`[NO_SUCH_CATALOG_EXCEPTION] ...`)."""

    def __init__(self, error_class: str, message: str, sqlstate: str):
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sqlstate}")
        self.error_class = error_class


def no_such_catalog(name: str) -> UcNameError:
    return UcNameError(
        "NO_SUCH_CATALOG_EXCEPTION",
        f"The catalog '{name}' was not found. Please verify the catalog name and then retry the query or command again.",
        "42704",
    )


def catalog_exists(name: str) -> UcNameError:
    return UcNameError("CATALOG_ALREADY_EXISTS", f"Catalog '{name}' already exists.", "42P04")


def invalid_catalog_name(name: str, why: str) -> UcNameError:
    return UcNameError(
        "INVALID_SCHEMA_OR_RELATION_NAME", f"`{name}` is not a valid catalog name locally: {why}.", "42602"
    )


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------


def spark_database(catalog: str, schema: str) -> str:
    """The Spark database holding UC schema `catalog.schema`."""
    catalog, schema = catalog.lower(), schema.lower()
    if catalog in DEFAULT_CATALOG_ALIASES:
        return schema
    return f"{catalog}{SEPARATOR}{schema}"


def uc_schema(database: str, catalogs: Iterable[str]) -> tuple[str, str]:
    """(catalog, schema) of a Spark database: `dev__s` -> ("dev", "s") when dev is registered."""
    database = database.lower()
    prefix, sep, rest = database.partition(SEPARATOR)
    if sep and rest and prefix in set(catalogs):
        return prefix, rest
    return DEFAULT_CATALOG, database


def split_name(name: str) -> list[str]:
    """`a.`b.c`.d` -> ["a", "b.c", "d"] (backticks quote, `` is a literal backtick)."""
    parts: list[str] = []
    current: list[str] = []
    i, quoted = 0, False
    while i < len(name):
        ch = name[i]
        if quoted:
            if ch == "`" and name[i + 1 : i + 2] == "`":
                current.append("`")
                i += 1
            elif ch == "`":
                quoted = False
            else:
                current.append(ch)
        elif ch == "`":
            quoted = True
        elif ch == ".":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current).strip())
    return parts


def quote(part: str) -> str:
    return part if _PLAIN_IDENTIFIER.match(part) else "`" + part.replace("`", "``") + "`"


@dataclass(frozen=True)
class Context:
    """What resolving a name needs: Spark's current database and the registered catalogs."""

    current_database: str
    catalogs: frozenset[str] = field(default_factory=frozenset)

    @property
    def current_catalog(self) -> str:
        return uc_schema(self.current_database, self.catalogs)[0]

    @property
    def current_schema(self) -> str:
        return uc_schema(self.current_database, self.catalogs)[1]

    def check_catalog(self, catalog: str) -> str:
        catalog = catalog.lower()
        if catalog not in DEFAULT_CATALOG_ALIASES and catalog not in self.catalogs:
            raise no_such_catalog(catalog)
        return catalog

    def database(self, parts: list[str]) -> str | None:
        """A schema reference (`s` or `c.s`) as a Spark database; None if it needs no change."""
        if len(parts) == 2:
            return spark_database(self.check_catalog(parts[0]), parts[1])
        if len(parts) == 1 and self.current_catalog != DEFAULT_CATALOG:
            return spark_database(self.current_catalog, parts[0])
        return None

    def table(self, parts: list[str]) -> list[str] | None:
        """A table reference as Spark's [database, table]; None if it needs no change
        (one part: Spark resolves it in the current database, which is already mapped)."""
        if len(parts) == 3:
            return [spark_database(self.check_catalog(parts[0]), parts[1]), parts[2]]
        if len(parts) == 2 and self.current_catalog != DEFAULT_CATALOG:
            return [spark_database(self.current_catalog, parts[0]), parts[1]]
        return None


_process_catalog: str | None = None  # set by a dbt task process: the dbt task's catalog


def set_process_catalog(catalog: str | None) -> None:
    """Make two-level names in this task process mean `<catalog>.schema.table`, whatever the
    cluster's shared session was left in: what a dbt task's `catalog` does on Databricks, where
    dbt-databricks qualifies models and sources alike with the target's catalog."""
    global _process_catalog
    _process_catalog = catalog.lower() if catalog and catalog.lower() not in DEFAULT_CATALOG_ALIASES else None


def process_current_database() -> str | None:
    """The current database names resolve against in this process, when a task fixed its catalog."""
    return spark_database(_process_catalog, "default") if _process_catalog else None


def spark_table_name(name: str, ctx: Context) -> str:
    """A table name as passed to spark.table / saveAsTable / tableExists, in Spark's terms."""
    mapped = ctx.table(split_name(name))
    return name if mapped is None else ".".join(quote(p) for p in mapped)


def spark_database_name(name: str, ctx: Context) -> str:
    mapped = ctx.database(split_name(name))
    return name if mapped is None else quote(mapped)


# ---------------------------------------------------------------------------------------
# Error text
# ---------------------------------------------------------------------------------------

_BACKTICKED_DB = re.compile(r"`spark_catalog`\.|`([^`]+)`")


def uc_error_text(message: str, catalogs: Iterable[str]) -> str:
    """Spark's error text with databases named as UC schemas: `dev__s` -> `dev`.`s`,
    `spark_catalog`. -> `main`."""
    names = frozenset(catalogs)

    def repl(m: re.Match) -> str:
        if m.group(1) is None:
            return f"`{DEFAULT_CATALOG}`."
        catalog, schema = uc_schema(m.group(1), names)
        return f"`{catalog}`.`{schema}`" if catalog != DEFAULT_CATALOG else m.group(0)

    return _BACKTICKED_DB.sub(repl, message)
