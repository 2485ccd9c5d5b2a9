"""SQL text with Unity Catalog names, for `spark.sql` in a task process: catalog-level
statements (CREATE/DROP/USE/SHOW/DESCRIBE CATALOG, SHOW SCHEMAS) become plans that uc_patches.py
carries out; any other statement gets every table and schema name in Spark's terms (uc_names.py),
edited in place so the rest of the text stays byte for byte. sqlglot parses; nothing runs here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .uc_names import DEFAULT_CATALOG, DEFAULT_CATALOG_ALIASES, Context, quote, split_name

# `parquet.`/x`` and friends read files; their "database" is a format, not a schema.
_FILE_FORMATS = frozenset({"parquet", "csv", "json", "orc", "text", "delta", "avro", "binaryfile"})


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
    r"(?:UN)?CACHE\s+(?:LAZY\s+)?TABLE(?:\s+IF\s+EXISTS)?|"
    # Delta's own statements, which sqlglot does not parse (it reads DETAIL as a table name).
    r"DESC(?:RIBE)?\s+(?:DETAIL|HISTORY)|RESTORE(?:\s+TABLE)?|OPTIMIZE|VACUUM|CONVERT\s+TO\s+DELTA|REORG\s+TABLE|"
    r"GENERATE\s+\w+\s+FOR\s+TABLE)\s+)(?P<name>" + _NAME + ")",
    re.I,
)
# Databricks' time travel shorthand, `t@v3` and `t@20240101123000000` (yyyyMMddHHmmssSSS), which
# open-source Delta does not parse: VERSION AS OF / TIMESTAMP AS OF. String literals are skipped.
_AT_VERSION = re.compile(
    r"""(?P<literal>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?<=[\w`])@(?:[vV](?P<version>\d+)|(?P<ts>\d{17}))\b"""
)
# Delta's change data feed names its table in a string: table_changes('c.s.t', 1).
_TABLE_CHANGES = re.compile(r"\btable_changes\s*\(\s*(?P<quote>['\"])(?P<name>[^'\"]+)(?P=quote)", re.I)
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
    if "@" in text:
        text = _time_travel_shorthand(text)
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
        if m and not _is_file_reference(split_name(m.group("name"))):
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
    return _rewrite_parsed(_table_changes_names(text, ctx), ctx, mask_braces)


def _time_travel_shorthand(text: str) -> str:
    def repl(m: re.Match) -> str:
        if m.group("literal") is not None:
            return m.group(0)
        if m.group("version") is not None:
            return f" VERSION AS OF {int(m.group('version'))}"
        t = m.group("ts")
        return f" TIMESTAMP AS OF '{t[:4]}-{t[4:6]}-{t[6:8]} {t[8:10]}:{t[10:12]}:{t[12:14]}.{t[14:]}'"

    return _AT_VERSION.sub(repl, text)


def _table_changes_names(text: str, ctx: Context) -> str:
    def repl(m: re.Match) -> str:
        mapped = ctx.table(split_name(m.group("name")))
        if mapped is None:
            return m.group(0)
        name = ".".join(quote(p) for p in mapped)
        return m.group(0)[: m.start("name") - m.start(0)] + name + m.group(0)[m.end("name") - m.start(0) :]

    return _TABLE_CHANGES.sub(repl, text) if "table_changes" in text.lower() else text


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
