"""SQL cells as Databricks runs them: a SQL notebook's cells and a Python notebook's `%sql` cells.

- A cell holds several statements: split on `;` outside strings, quoted identifiers and comments.
  Each runs in turn; the last statement's result is the cell's result (shown, and `_sqldf`).
- Widgets: `CREATE WIDGET TEXT|DROPDOWN|COMBOBOX|MULTISELECT name DEFAULT 'v' [CHOICES SELECT ...]`
  defines a widget (its value is the task's parameter of that name if passed, else the default);
  `REMOVE WIDGET name` removes it.
- Parameters, all filled from the widgets (the task's base parameters and job parameters first):
  named parameter markers `:name`, bound through Spark's `spark.sql(text, args=...)` (as strings,
  as Databricks binds widget values); `IDENTIFIER(:catalog || '.' || :schema || '.' || :table)`,
  folded into the name before Spark sees it (so three-level names resolve like any other); and
  the legacy `${name}` / `$name` text substitution (`\\$` keeps a literal `$`). A `::` cast, a
  `:` inside a string or comment and Databricks' `column:path` JSON syntax are not markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ----------------------------------------------------------------------------------- scanning
def _segments(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) spans of `text`: 'code', 'string' ('...' or "..."), 'quoted' (`...`),
    'comment' (-- to end of line, /* */ nested as Spark nests them)."""
    out: list[tuple[str, int, int]] = []
    i, n, start = 0, len(text), 0

    def flush(kind: str, end: int) -> None:
        nonlocal start
        if end > start:
            out.append((kind, start, end))
        start = end

    while i < n:
        ch = text[i]
        if ch in "'\"`":
            flush("code", i)
            j = i + 1
            while j < n:
                if text[j] == "\\" and ch != "`":
                    j += 2
                    continue
                if text[j] == ch:
                    if ch == "`" and j + 1 < n and text[j + 1] == "`":  # `` inside a quoted identifier
                        j += 2
                        continue
                    break
                j += 1
            i = min(j + 1, n)
            flush("quoted" if ch == "`" else "string", i)
        elif text.startswith("--", i):
            flush("code", i)
            end = text.find("\n", i)
            i = n if end < 0 else end
            flush("comment", i)
        elif text.startswith("/*", i):
            flush("code", i)
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            flush("comment", i)
        else:
            i += 1
    flush("code", n)
    return out


def split_sql(text: str) -> list[str]:
    """The statements of a cell: split on `;` outside strings, quoted identifiers and comments.
    `--` comments are dropped, `/* */` ones kept (a hint like /*+ BROADCAST(t) */ matters); a piece
    that is only comments and blanks is no statement."""
    statements: list[str] = []
    buf: list[str] = []
    meaningful = False
    for kind, start, end in _segments(text):
        piece = text[start:end]
        if kind == "comment" and piece.startswith("--"):
            continue
        if kind != "code":
            buf.append(piece)
            meaningful = meaningful or kind != "comment"
            continue
        parts = piece.split(";")
        for k, part in enumerate(parts):
            if k:
                if meaningful:
                    statements.append("".join(buf).strip())
                buf, meaningful = [], False
            buf.append(part)
            meaningful = meaningful or bool(part.strip())
    if meaningful:
        statements.append("".join(buf).strip())
    return statements


# ----------------------------------------------------------------------------------- parameters
def substitute_legacy(text: str, value_of: Callable[[str], str | None]) -> str:
    """`${name}` and `$name` -> the widget's value, in code, strings and quoted names (as Databricks
    did; not in comments). Names without a value stay as written (Spark's own `${conf}` substitution may know them)."""

    def replace(piece: str) -> str:
        def one(m: re.Match) -> str:
            if m.group(0).startswith("\\"):
                return m.group(0)  # \$ is a literal dollar (Spark unescapes it in strings)
            name = m.group(1) or m.group(2)
            value = value_of(name)
            return m.group(0) if value is None else value

        return re.sub(r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, piece)

    return "".join(text[s:e] if kind == "comment" else replace(text[s:e]) for kind, s, e in _segments(text))


def find_markers(text: str) -> list[tuple[str, int, int]]:
    """Named parameter markers `:name` outside strings and comments: (name, start, end)."""
    found = []
    for kind, s, e in _segments(text):
        if kind != "code":
            continue
        i = s
        while i < e:
            if text[i] != ":":
                i += 1
                continue
            if i + 1 < len(text) and text[i + 1] == ":":  # a `::` cast
                i += 2
                continue
            before = text[i - 1] if i > 0 else " "
            if before.isalnum() or before in "_`)]":  # `col:path` (Databricks' JSON path), not a marker
                i += 1
                continue
            m = _IDENT.match(text, i + 1, e)
            if m:
                found.append((m.group(0), i, m.end()))
                i = m.end()
            else:
                i += 1
    return found


_QUALIFIED_NAME = re.compile(r"(?:\w+|`(?:[^`]|``)+`)(?:\.(?:\w+|`(?:[^`]|``)+`))*")


def fold_identifiers(text: str, value_of: Callable[[str], str | None]) -> str:
    """`IDENTIFIER(<string literals and :markers joined by ||>)` -> the name it spells, when every
    marker has a value and the result is a plain (possibly `quoted`, dotted) name. Anything else
    is left for Spark to evaluate."""
    out, pos = [], 0
    for m in re.finditer(r"\bIDENTIFIER\s*\(", text, flags=re.IGNORECASE):
        if m.start() < pos or not _in_code(text, m.start()):
            continue
        close = _closing_paren(text, m.end())
        if close is None:
            continue
        name = _constant_string(text[m.end() : close], value_of)
        if name is None or not _QUALIFIED_NAME.fullmatch(name):
            continue
        out.append(text[pos : m.start()] + name)
        pos = close + 1
    return "".join(out) + text[pos:]


def _in_code(text: str, index: int) -> bool:
    return any(kind == "code" and s <= index < e for kind, s, e in _segments(text))


def _closing_paren(text: str, start: int) -> int | None:
    depth = 1
    for kind, s, e in _segments(text[start:]):
        if kind != "code":
            continue
        for k in range(s, e):
            ch = text[start + k]
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                return start + k
    return None


def _constant_string(expr: str, value_of: Callable[[str], str | None]) -> str | None:
    """The value of `'a' || :b || "c"`, or None when it is anything else."""
    parts: list[str] = []
    for kind, s, e in _segments(expr):
        piece = expr[s:e]
        if kind == "string":
            parts.append(_unquote(piece))
        elif kind == "code":
            tokens = [t for t in re.split(r"(\|\||\s+)", piece) if t and not t.isspace()]
            for token in tokens:
                if token == "||":
                    continue
                m = re.fullmatch(r":([A-Za-z_][A-Za-z0-9_]*)", token)
                value = value_of(m.group(1)) if m else None
                if value is None:
                    return None
                parts.append(value)
        else:
            return None
    return "".join(parts)


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


# ----------------------------------------------------------------------------------- widgets
@dataclass(frozen=True)
class WidgetStatement:
    action: str  # "create" or "remove"
    kind: str  # TEXT, DROPDOWN, COMBOBOX, MULTISELECT ("" for remove)
    name: str
    default: str = ""
    choices: str | None = None  # the query giving the choices


_CREATE_WIDGET = re.compile(
    r"CREATE\s+WIDGET\s+(?P<kind>TEXT|DROPDOWN|COMBOBOX|MULTISELECT)\s+(?P<name>`[^`]+`|\w+)"
    r"(?:\s+DEFAULT\s+(?P<default>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\"]+))?"
    r"(?:\s+CHOICES\s+(?P<choices>.+))?",
    re.IGNORECASE | re.DOTALL,
)
_REMOVE_WIDGET = re.compile(r"REMOVE\s+WIDGET\s+(?P<name>`[^`]+`|\w+)", re.IGNORECASE)


def widget_statement(statement: str) -> WidgetStatement | None:
    text = _strip_comments(statement).strip()
    m = _CREATE_WIDGET.fullmatch(text)
    if m:
        default = m.group("default") or ""
        if default[:1] in ("'", '"'):
            default = _unquote(default)
        return WidgetStatement(
            "create", m.group("kind").upper(), m.group("name").strip("`"), default, m.group("choices")
        )
    m = _REMOVE_WIDGET.fullmatch(text)
    if m:
        return WidgetStatement("remove", "", m.group("name").strip("`"))
    return None


def _strip_comments(text: str) -> str:
    return "".join(text[s:e] for kind, s, e in _segments(text) if kind != "comment")


# ----------------------------------------------------------------------------------- running
def widget_value(widgets: Any, name: str) -> str | None:
    """The widget's value (passed parameter, else its default), None if there is none."""
    if widgets is None:
        return None
    try:
        return str(widgets.get(name))
    except Exception:
        return None


def run_sql_cell(text: str, spark: Any, widgets: Any = None) -> Any:
    """Run a SQL cell's statements in order; returns the last one's DataFrame (None when the last
    statement was a widget statement or there was none)."""
    result = None
    for statement in split_sql(text):
        result = run_statement(statement, spark, widgets)
    return result


def run_statement(statement: str, spark: Any, widgets: Any = None) -> Any:
    def value_of(name: str) -> str | None:
        return widget_value(widgets, name)

    statement = substitute_legacy(statement, value_of)
    widget = widget_statement(statement)
    if widget is not None:
        _apply_widget(widget, spark, widgets)
        return None
    statement = fold_identifiers(statement, value_of)
    names = {name for name, _, _ in find_markers(statement)}
    if not names:
        return spark.sql(statement)
    args = {name: value for name in sorted(names) if (value := value_of(name)) is not None}
    return spark.sql(statement, args=args)  # an unbound marker is Spark's UNBOUND_SQL_PARAMETER


def _apply_widget(widget: WidgetStatement, spark: Any, widgets: Any) -> None:
    if widgets is None:
        raise RuntimeError(f"{widget.action.upper()} WIDGET needs a notebook's dbutils.widgets")
    if widget.action == "remove":
        widgets.remove(widget.name)
        return
    if widget.kind == "TEXT":
        widgets.text(widget.name, widget.default)
        return
    choices: list[str] = []
    if widget.choices:
        rows = run_statement(widget.choices, spark, widgets).collect()
        choices = [str(row[0]) for row in rows]
    define = {"DROPDOWN": widgets.dropdown, "COMBOBOX": widgets.combobox, "MULTISELECT": widgets.multiselect}
    define[widget.kind](widget.name, widget.default, choices)
