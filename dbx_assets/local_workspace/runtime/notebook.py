"""Databricks SOURCE-format notebooks: parse into cells, run them in one namespace."""

from __future__ import annotations

import ast
import linecache
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
CellKind = Literal["python", "sql", "md", "skip", "run", "pip", "sh"]
MAGIC_KINDS = ("run", "pip", "sh")  # cells run by runtime/magics.py


class MalformedNotebook(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    number: int  # 1-based, as shown in the Databricks UI
    kind: CellKind
    source: str


def parse(source: str, path: str = "notebook") -> list[Cell]:
    lines = source.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise MalformedNotebook(
            f"{path} is not a Databricks SOURCE-format notebook: its first line must be {HEADER!r}."
        )
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.strip() == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(line)
    return [_cell(i, chunk) for i, chunk in enumerate(chunks, start=1)]


def _cell(number: int, lines: list[str]) -> Cell:
    lines = [line for line in lines if not line.startswith("# DBTITLE")]
    body = [line for line in lines if line.strip()]
    if body and all(line.startswith("# MAGIC") for line in body):
        text = [line[len("# MAGIC ") :] if line.startswith("# MAGIC ") else line[len("# MAGIC") :] for line in lines]
        first = next(t for t in text if t.strip()).strip()
        magic, _, rest = first.partition(" ")
        remaining = "\n".join(text).split(first, 1)[1]
        code = (rest + remaining) if rest else remaining
        if magic == "%sql":
            return Cell(number, "sql", code)
        if magic in ("%md", "%md-sandbox"):
            return Cell(number, "md", code)
        if magic == "%python":
            return Cell(number, "python", code)
        if magic in ("%run", "%pip", "%sh"):
            return Cell(number, magic[1:], code.strip("\n") if magic != "%sh" else code)  # type: ignore[arg-type]
        raise MalformedNotebook(
            f"Cell {number} uses {magic}, which the local workspace does not support (only %python, %sql, %md, %run, %pip and %sh)."
        )
    return Cell(number, "python", "\n".join(lines))


def split_sql(text: str) -> list[str]:
    """Split on `;` outside quotes and comments."""
    statements, buf, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            buf.append(ch)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    statements.append("".join(buf))
    return [s.strip() for s in statements if s.strip()]


class CellFailed(Exception):
    def __init__(self, cell: Cell, exc: BaseException, trace: str):
        super().__init__(f"Cell {cell.number} failed: {one_line(exc)}")
        self.cell, self.exc, self.trace = cell, exc, trace


def one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _cell_filename(cell: Cell) -> str:
    return f"<notebook cell {cell.number}>"


def run_cells(
    cells: list[Cell],
    namespace: dict[str, Any],
    spark: Any,
    display: Callable[[Any], None],
    magic: Callable[[Cell], None] | None = None,
) -> None:
    """Run cells in order; raises CellFailed with a traceback limited to notebook code.
    NotebookExit (a BaseException) passes through untouched. `magic` runs %run/%pip/%sh cells."""
    for cell in cells:
        if cell.kind in ("md", "skip") or not cell.source.strip():
            continue
        try:
            if cell.kind in MAGIC_KINDS:
                if magic is None:
                    raise NotImplementedError(f"%{cell.kind} needs the notebook task runtime")
                magic(cell)
            elif cell.kind == "sql":
                result = None
                for statement in split_sql(cell.source):
                    result = spark.sql(statement)
                if result is not None:
                    namespace["_sqldf"] = result
                    if result.columns:
                        display(result)
            else:
                _exec_python(cell, namespace, display)
        except Exception as exc:
            raise CellFailed(cell, exc, _notebook_trace(exc)) from exc


def _exec_python(cell: Cell, namespace: dict[str, Any], display: Callable[[Any], None]) -> None:
    filename = _cell_filename(cell)
    # Register the source so tracebacks show the notebook's lines.
    linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
    tree = ast.parse(cell.source, filename)
    last_expr = tree.body[-1] if tree.body else None
    if isinstance(last_expr, ast.Expr):
        tree.body.pop()
    else:
        last_expr = None
    exec(compile(tree, filename, "exec"), namespace)
    if last_expr is not None:  # like a notebook, show the value of a trailing expression
        value = eval(compile(ast.Expression(last_expr.value), filename, "eval"), namespace)
        if value is not None:
            display(value)


def _notebook_trace(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<notebook cell"):
        tb = tb.tb_next
    if tb is None:  # e.g. a SyntaxError: no notebook frame, the exception itself says where
        tb = None
    return "".join(traceback.format_exception(type(exc), exc, tb))
