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
* The catalog registry is one JSON file per catalog under `<warehouse>/_unity_catalog/catalogs`
  (a `_` dir, which Spark and the catalog sync ignore), so it survives clusters and restarts
  and concurrent `CREATE CATALOG`s need no lock.

This module is the pure part (names, SQL text, error text; no Spark); `uc_patches.py` installs
it into pyspark.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CATALOG = "main"
DEFAULT_CATALOG_ALIASES = frozenset({"main", "hive_metastore", "spark_catalog"})
SEPARATOR = "__"
# `parquet.`/x`` and friends read files; their "database" is a format, not a schema.
_FILE_FORMATS = frozenset({"parquet", "csv", "json", "orc", "text", "delta", "avro", "binaryfile"})
_CATALOG_NAME = re.compile(r"^[a-z0-9_]+$")
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
# Catalog registry
# ---------------------------------------------------------------------------------------


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


_active_registry: CatalogRegistry | None = None  # set by uc_patches.install_uc_patches in a task process


def set_active_registry(registry: CatalogRegistry | None) -> None:
    global _active_registry
    _active_registry = registry


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


def spark_table_name(name: str, ctx: Context) -> str:
    """A table name as passed to spark.table / saveAsTable / tableExists, in Spark's terms."""
    mapped = ctx.table(split_name(name))
    return name if mapped is None else ".".join(quote(p) for p in mapped)


def spark_database_name(name: str, ctx: Context) -> str:
    mapped = ctx.database(split_name(name))
    return name if mapped is None else quote(mapped)


# ---------------------------------------------------------------------------------------
# SQL text
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """Run `text` on Spark. `show_tables_in` names the database a SHOW TABLES lists, whose
    `namespace` column should read as the UC schema."""

    text: str
    show_tables_in: str | None = None
    creates_database: str | None = None


@dataclass(frozen=True)
class CreateCatalog:
    name: str
    if_not_exists: bool
    comment: str | None


@dataclass(frozen=True)
class DropCatalog:
    name: str
    if_exists: bool
    cascade: bool


@dataclass(frozen=True)
class UseCatalog:
    name: str


@dataclass(frozen=True)
class ShowCatalogs:
    pattern: str | None


@dataclass(frozen=True)
class ShowSchemas:
    catalog: str
    pattern: str | None


@dataclass(frozen=True)
class DescribeCatalog:
    name: str


Plan = Sql | CreateCatalog | DropCatalog | UseCatalog | ShowCatalogs | ShowSchemas | DescribeCatalog

_NAME = r"(?:`(?:[^`]|``)*`|[A-Za-z0-9_]+)(?:\s*\.\s*(?:`(?:[^`]|``)*`|[A-Za-z0-9_]+))*"
_LIKE = r"(?:\s+(?:LIKE\s+)?'(?P<pattern>[^']*)')?"
_CATALOG_STATEMENTS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"CREATE\s+CATALOG(?P<ine>\s+IF\s+NOT\s+EXISTS)?\s+(?P<name>" + _NAME + r")"
            r"(?:\s+(?:MANAGED\s+LOCATION\s+'[^']*'\s*)?COMMENT\s+'(?P<comment>(?:[^']|'')*)')?.*",
            re.I | re.S,
        ),
        "create",
    ),
    (
        re.compile(
            r"DROP\s+CATALOG(?P<ie>\s+IF\s+EXISTS)?\s+(?P<name>" + _NAME + r")(?:\s+(?P<mode>CASCADE|RESTRICT))?", re.I
        ),
        "drop",
    ),
    (re.compile(r"(?:USE|SET)\s+CATALOG\s+(?P<name>" + _NAME + r"|'[^']*')", re.I), "use"),
    (re.compile(r"SHOW\s+CATALOGS" + _LIKE, re.I), "show_catalogs"),
    (
        re.compile(
            r"SHOW\s+(?:SCHEMAS|DATABASES|NAMESPACES)(?:\s+(?:IN|FROM)\s+(?P<name>" + _NAME + r"))?" + _LIKE, re.I
        ),
        "show_schemas",
    ),
    (re.compile(r"(?:DESCRIBE|DESC)\s+CATALOG(?:\s+EXTENDED)?\s+(?P<name>" + _NAME + r")", re.I), "describe_catalog"),
]
# Statements sqlglot keeps as an opaque Command: the name after the prefix is rewritten in place.
_SCHEMA_PREFIXES = re.compile(
    r"^\s*(?P<prefix>SHOW\s+(?:TABLES|VIEWS|FUNCTIONS|TABLE\s+EXTENDED)\s+(?:IN|FROM)\s+)(?P<name>" + _NAME + ")", re.I
)
_TABLE_PREFIXES = re.compile(
    r"^\s*(?P<prefix>(?:SHOW\s+(?:COLUMNS\s+(?:IN|FROM)|CREATE\s+TABLE|TBLPROPERTIES|PARTITIONS)|MSCK\s+REPAIR\s+TABLE|"
    r"(?:UN)?CACHE\s+(?:LAZY\s+)?TABLE(?:\s+IF\s+EXISTS)?)\s+)(?P<name>" + _NAME + ")",
    re.I,
)
# sqlglot keeps it as a Command too; dbt-spark runs it after each incremental insert.
_RECOVER_PARTITIONS = re.compile(
    r"^\s*(?P<prefix>ALTER\s+TABLE\s+)(?P<name>" + _NAME + r")(?=\s+RECOVER\s+PARTITIONS\b)", re.I
)
_SHOW_TABLES = re.compile(r"^\s*SHOW\s+TABLES\b(?P<rest>(?!\s+(?:IN|FROM)\b).*)$", re.I | re.S)


# dbt prefixes every statement with a `/* {"app": "dbt", ...} */` comment.
_LEADING_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*(?:\n|$)\s*)*", re.S)


def _strip(text: str) -> str:
    return _LEADING_COMMENTS.sub("", text).strip().rstrip(";").strip()


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith("'") and name.endswith("'"):
        return name[1:-1]
    return ".".join(split_name(name))


def plan_sql(text: str, ctx: Context, *, mask_braces: bool = False) -> Plan:
    """What to do for one `spark.sql` text: a catalog-level statement handled here, or Spark
    SQL with every table and schema name in Spark's terms. Raises UcNameError for names in
    unknown catalogs. Text that is not one of those is returned unchanged (byte for byte)."""
    stripped = _strip(text)
    for pattern, kind in _CATALOG_STATEMENTS:
        m = pattern.fullmatch(stripped)
        if m:
            return _catalog_plan(kind, m, ctx)
    m = _SHOW_TABLES.match(stripped)
    if m:  # SHOW TABLES [LIKE x] in the current schema
        return Sql(text, show_tables_in=ctx.current_database if ctx.current_catalog != DEFAULT_CATALOG else None)
    body = len(_LEADING_COMMENTS.match(text).group(0))  # type: ignore[union-attr]  # it matches "" too
    for pattern, is_table in ((_SCHEMA_PREFIXES, False), (_TABLE_PREFIXES, True), (_RECOVER_PARTITIONS, True)):
        m = pattern.match(text[body:])
        if m:
            parts = split_name(m.group("name"))
            mapped = ctx.table(parts) if is_table else ctx.database(parts)
            if mapped is None:
                new_name = m.group("name")
            elif isinstance(mapped, str):  # a database
                new_name = quote(mapped)
            else:  # [database, table]
                new_name = ".".join(quote(p) for p in mapped)
            new_text = text[: body + m.start("name")] + new_name + text[body + m.end("name") :]
            # SHOW TABLES and SHOW TABLE EXTENDED both answer with a `namespace` column.
            shows = m.group("prefix").upper().split()[:2] in (["SHOW", "TABLES"], ["SHOW", "TABLE"])
            # Only names that were mapped read back as UC schemas (dbt-spark reads `namespace` as it asked).
            db = mapped if shows and isinstance(mapped, str) else None
            return Sql(new_text, show_tables_in=db.lower() if db else None)
    return _rewrite_parsed(text, ctx, mask_braces)


def _catalog_plan(kind: str, m: re.Match, ctx: Context) -> Plan:
    name = _unquote(m.group("name")).lower() if m.groupdict().get("name") else None
    if kind == "create":
        comment = m.group("comment")
        return CreateCatalog(name or "", bool(m.group("ine")), comment.replace("''", "'") if comment else None)
    if kind == "drop":
        return DropCatalog(name or "", bool(m.group("ie")), (m.group("mode") or "").upper() == "CASCADE")
    if kind == "use":
        return UseCatalog(ctx.check_catalog(name or ""))
    if kind == "show_catalogs":
        return ShowCatalogs(m.group("pattern"))
    if kind == "show_schemas":
        catalog = ctx.check_catalog(name) if name else ctx.current_catalog
        return ShowSchemas(DEFAULT_CATALOG if catalog in DEFAULT_CATALOG_ALIASES else catalog, m.group("pattern"))
    return DescribeCatalog(ctx.check_catalog(name or ""))


def _mask(text: str) -> str:
    # pyspark fills `{name}` placeholders later; same-length underscores keep offsets valid.
    return re.sub(r"\{[^{}]*\}", lambda m: "_" * len(m.group(0)), text)


def _rewrite_parsed(text: str, ctx: Context, mask_braces: bool) -> Plan:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    source = _mask(text) if mask_braces else text
    try:
        statements = [s for s in sqlglot.parse(source, read="spark") if s is not None]
    except SqlglotError:
        return Sql(text)  # not ours to judge: Spark reports its own syntax errors
    edits: list[tuple[int, int, str]] = []
    creates: str | None = None
    for statement in statements:
        schema_level = _is_schema_statement(statement)
        for table in statement.find_all(exp.Table):
            idents = [table.args.get(k) for k in ("catalog", "db", "this")]
            if not all(i is None or isinstance(i, exp.Identifier) for i in idents):
                continue  # range(3), IDENTIFIER('...'), a.b.c.d: left to Spark
            present = [i for i in idents if i is not None and i.name != ""]
            parts = [i.name for i in present]
            if not parts or _is_file_reference(parts):
                continue
            if schema_level and table.parent is statement:
                db = ctx.database(parts)
                new = None if db is None else [db]
                if isinstance(statement, exp.Create):
                    creates = db or parts[-1]
            else:
                new = ctx.table(parts)
            if new is None:
                continue
            span = _span(present)
            if span is None:
                return Sql(_regenerate(statements, ctx))
            edits.append((span[0], span[1], ".".join(quote(p) for p in new)))
    edits.extend(_current_catalog_edits(source, ctx))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end + 1 :]
    return Sql(text, creates_database=creates)


def _is_schema_statement(statement: object) -> bool:
    from sqlglot import exp

    if isinstance(statement, exp.Use):
        kind = statement.args.get("kind")
        return kind is None or kind.name.upper() in ("SCHEMA", "DATABASE", "NAMESPACE")
    if isinstance(statement, (exp.Create, exp.Drop, exp.Describe)):
        return str(statement.args.get("kind") or "").upper() in ("SCHEMA", "DATABASE")
    return False


def _is_file_reference(parts: list[str]) -> bool:
    return len(parts) == 2 and parts[0].lower() in _FILE_FORMATS and ("/" in parts[1] or ":" in parts[1])


def _span(identifiers: list) -> tuple[int, int] | None:
    metas = [i.meta for i in identifiers]
    if not all("start" in m and "end" in m for m in metas):
        return None
    return min(m["start"] for m in metas), max(m["end"] for m in metas)


def _regenerate(statements: list, ctx: Context) -> str:
    # Only when sqlglot kept no token positions: rename in the tree and print it again.
    from sqlglot import exp

    out = []
    for statement in statements:
        statement = statement.copy()
        for table in statement.find_all(exp.Table):
            parts = [
                table.args[k].name for k in ("catalog", "db", "this") if isinstance(table.args.get(k), exp.Identifier)
            ]
            new = ctx.table(parts) if len(parts) > 1 and not _is_file_reference(parts) else None
            if new:
                table.set("catalog", None)
                table.set("db", exp.to_identifier(new[0]))
        out.append(statement.sql(dialect="spark"))
    return ";\n".join(out)


def _current_catalog_edits(source: str, ctx: Context) -> list[tuple[int, int, str]]:
    """`current_catalog()` reads `spark_catalog` on Spark; make it the UC catalog (and
    current_schema()/current_database() the UC schema outside `main`)."""
    from sqlglot.dialects.spark import Spark
    from sqlglot.tokens import TokenType

    lowered = source.lower()
    if "current_" not in lowered:
        return []
    values = {"current_catalog": ctx.current_catalog}
    if ctx.current_catalog != DEFAULT_CATALOG:
        values.update(current_schema=ctx.current_schema, current_database=ctx.current_schema)
    try:
        tokens = Spark().tokenize(source)
    except Exception:
        return []
    edits = []
    for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if a.text.lower() in values and b.token_type == TokenType.L_PAREN and c.token_type == TokenType.R_PAREN:
            edits.append((a.start, c.end, "'" + values[a.text.lower()] + "'"))
    return edits


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
