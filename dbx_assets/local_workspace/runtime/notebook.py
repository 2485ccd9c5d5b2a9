"""Databricks notebooks (SOURCE in Python or SQL, IPYNB): parse into cells, run them in one namespace."""

from __future__ import annotations

import ast
import linecache
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .notebook_formats import RUNNABLE_LANGUAGES, NotebookFormatError, read_notebook
from .sql_cells import run_sql_cell, split_sql

__all__ = ["Cell", "CellFailed", "MalformedNotebook", "UnsupportedNotebookLanguage", "parse", "run_cells", "split_sql"]

CellKind = Literal["python", "sql", "md", "skip", "run", "pip", "sh", "fs"]
MAGIC_KINDS = ("run", "pip", "sh", "fs")  # cells run by runtime/magics.py


class MalformedNotebook(ValueError):
    pass


class UnsupportedNotebookLanguage(MalformedNotebook):
    """A Scala or R notebook: local clusters run Python and SQL notebooks."""


@dataclass(frozen=True)
class Cell:
    number: int  # 1-based, as shown in the Databricks UI
    kind: CellKind
    source: str


def parse(source: str, path: str = "notebook", language: str | None = None) -> list[Cell]:
    """The cells of a notebook in SOURCE (any language's header) or IPYNB format. `language` is the
    workspace's word for it when the content cannot say (an R notebook has Python's header)."""
    try:
        notebook = read_notebook(source, language, path)
    except NotebookFormatError as exc:
        raise MalformedNotebook(str(exc)) from None
    if notebook.language not in RUNNABLE_LANGUAGES:
        raise UnsupportedNotebookLanguage(
            f"local clusters run Python and SQL notebooks; {path} is {notebook.language}. "
            "Run it on a Databricks workspace, or port it to Python or SQL."
        )
    default: CellKind = "sql" if notebook.language == "SQL" else "python"
    return [_cell(i, cell.text, default) for i, cell in enumerate(notebook.cells, start=1)]


def _cell(number: int, text: str, default: CellKind) -> Cell:
    lines = text.split("\n")
    first = next((line.strip() for line in lines if line.strip()), "")
    if not first.startswith("%"):
        return Cell(number, default, text)
    magic, _, rest = first.partition(" ")
    remaining = text.split(first, 1)[1]
    code = (rest + remaining) if rest else remaining
    if magic == "%sql":
        return Cell(number, "sql", code)
    if magic in ("%md", "%md-sandbox"):
        return Cell(number, "md", code)
    if magic == "%python":
        return Cell(number, "python", code)
    if magic in ("%run", "%pip", "%sh", "%fs"):
        return Cell(number, magic[1:], code.strip("\n") if magic != "%sh" else code)  # type: ignore[arg-type]
    raise MalformedNotebook(
        f"Cell {number} uses {magic}, which the local workspace does not support "
        "(only %python, %sql, %md, %run, %pip, %sh and %fs)."
    )


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
                dbutils = namespace.get("dbutils")
                result = run_sql_cell(cell.source, spark, getattr(dbutils, "widgets", None))
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
