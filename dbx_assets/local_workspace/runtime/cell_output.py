"""Per-cell output of a notebook task, for the run page: OUTPUT_DIR/cells.json.

The task process tees its stdout/stderr into the cell that is running and records what
`display()` shows (DataFrames as tables: column names and types, the first rows). Only the
task's own (top-level) cells are cells here: output of a `%run` or a child notebook lands in
the cell that started it, as the Databricks UI shows it. The file is rewritten when a cell
ends, so a page shows a running notebook's progress; text goes through the secret
redactor first, so a secret the notebook read never reaches the page.

Shape: {"cells": [{"number", "kind", "source", "stdout", "stdout_bytes", "stdout_truncated",
"tables": [{"columns": [{"name", "type"}], "rows": [[...]], "truncated"}], "error", "error_trace",
"state": "done" | "running" | "failed"}], "exit_value"?}.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .contract import TaskInvocation, TaskOutcome

CELLS_FILE = "cells.json"
MAX_ROWS = 100  # rows of a displayed table kept, as the UI shows by default
MAX_TABLES = 20  # tables kept per cell
MAX_STDOUT = 64 * 1024  # characters of a cell's output kept (the first ones; the size is recorded)
MAX_CELL_VALUE = 1000  # characters of one table value


class CellRecorder:
    def __init__(self) -> None:
        self._path: Path | None = None
        self._top: list[Any] = []  # the task's own Cell objects (compared by identity)
        self._cells: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._quiet = 0  # >0 while display() prints its text form: that belongs to the log only
        self.redact: Callable[[str], str] = lambda s: s
        self.exit_value: str | None = None

    # -- wiring (task_process) -------------------------------------------------------------------
    def start(self, output_dir: Path, cells: list[Any], redact: Callable[[str], str] | None = None) -> None:
        self._path = Path(output_dir) / CELLS_FILE
        self._top = list(cells)
        if redact is not None:
            self.redact = redact
        sys.stdout = _Tee(sys.stdout, self)
        sys.stderr = _Tee(sys.stderr, self)
        self._save()

    def track(self, cells: list[Any]) -> _TrackedCells:
        """`cells` for run_cells: iterating it marks each cell as started."""
        return _TrackedCells(cells, self)

    def cell_started(self, cell: Any) -> None:
        if not any(cell is c for c in self._top):
            return  # a %run / child notebook cell: its output stays in the cell that ran it
        with self._lock:
            self._close_current("done")
            self._current = {
                "number": cell.number,
                "kind": cell.kind,
                "source": cell.source,
                "stdout": "",
                "stdout_bytes": 0,
                "stdout_truncated": False,
                "tables": [],
                "state": "running",
            }
            self._cells.append(self._current)
        self._save()

    def cell_failed(self, error: str, trace: str) -> None:
        """The running top-level cell failed (also when a cell it %ran did)."""
        with self._lock:
            if self._current is not None:
                self._current.update(error=error, error_trace=trace, state="failed")
        self.finish()

    def finish(self, exit_value: str | None = None) -> None:
        with self._lock:
            if exit_value is not None:
                self.exit_value = exit_value
            self._close_current("done")
        self._save()

    # -- what cells produce ------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self._quiet or self._current is None or not text:
            return
        with self._lock:
            cur = self._current
            if cur is None:
                return
            cur["stdout_bytes"] += len(text.encode("utf-8", "replace"))
            room = MAX_STDOUT - len(cur["stdout"])
            if room > 0:
                cur["stdout"] += text[:room]
            if len(text) > room:
                cur["stdout_truncated"] = True

    @contextlib.contextmanager
    def displaying(self, obj: Any) -> Iterator[None]:
        """Around display(): a table is recorded, and its text form goes to the log only."""
        try:
            table = table_of(obj)
        except Exception as exc:  # never fail the user's cell because of the run page
            table = None
            print(
                f"[local runtime] could not record the displayed value: {type(exc).__name__}: {exc}",
                file=sys.__stderr__,
            )
        if table is None:
            yield
            return
        with self._lock:
            if self._current is not None and len(self._current["tables"]) < MAX_TABLES:
                self._current["tables"].append(table)
            self._quiet += 1
        try:
            yield
        finally:
            with self._lock:
                self._quiet -= 1

    # -- internals -----------------------------------------------------------------------------------
    def _close_current(self, state: str) -> None:
        if self._current is not None and self._current["state"] == "running":
            self._current["state"] = state
        self._current = None

    def _save(self) -> None:
        if self._path is None:
            return
        with self._lock:
            doc: dict[str, Any] = {"cells": [self._redacted(c) for c in self._cells]}
            if self.exit_value is not None:
                doc["exit_value"] = self.redact(self.exit_value)
            data = json.dumps(doc, default=str)
        tmp = self._path.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_text(data)
            os.replace(tmp, self._path)
        except OSError:
            pass  # the run page is best effort; the task's outcome is what counts

    def _redacted(self, cell: dict[str, Any]) -> dict[str, Any]:
        out = dict(cell)
        for key in ("stdout", "error", "error_trace"):
            if out.get(key):
                out[key] = self.redact(out[key])
        out["tables"] = [
            dict(t, rows=[[self.redact(v) if isinstance(v, str) else v for v in row] for row in t["rows"]])
            for t in cell["tables"]
        ]
        return out


class _TrackedCells(list):
    """A list whose iteration tells the recorder which cell runs (run_cells loops over it)."""

    def __init__(self, cells: list[Any], recorder: CellRecorder):
        super().__init__(cells)
        self._recorder = recorder

    def __iter__(self) -> Iterator[Any]:
        for cell in list.__iter__(self):
            self._recorder.cell_started(cell)
            yield cell


class _Tee:
    """sys.stdout/stderr: everything still goes to the task's log; a copy goes to the running cell."""

    def __init__(self, stream: TextIO, recorder: CellRecorder):
        self._stream = stream
        self._recorder = recorder

    def write(self, text: str) -> int:
        self._recorder.write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def table_of(obj: Any) -> dict[str, Any] | None:
    """A displayed value as {columns, rows, truncated}, or None when it is not a table."""
    if hasattr(obj, "_jdf") and hasattr(obj, "schema"):  # a PySpark DataFrame
        columns = [{"name": f.name, "type": f.dataType.simpleString()} for f in obj.schema.fields]
        rows = [list(r) for r in obj.limit(MAX_ROWS + 1).collect()]
    elif hasattr(obj, "dtypes") and hasattr(obj, "head") and hasattr(obj, "columns"):  # pandas
        columns = [{"name": str(c), "type": str(t)} for c, t in zip(obj.columns, obj.dtypes, strict=True)]
        rows = [list(r) for r in obj.head(MAX_ROWS + 1).itertuples(index=False)]
    else:
        return None
    return {
        "columns": columns,
        "rows": [[_json_value(v) for v in r] for r in rows[:MAX_ROWS]],
        "truncated": len(rows) > MAX_ROWS,
    }


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime, decimal.Decimal)):
        return str(value)
    text = (
        value
        if isinstance(value, str)
        else repr(value)
        if not hasattr(value, "asDict")
        else json.dumps(value.asDict(), default=str)
    )
    return text if len(text) <= MAX_CELL_VALUE else text[:MAX_CELL_VALUE] + "…"


RECORDER = CellRecorder()


def recorded(invocation: TaskInvocation, cells: list[Any], run: Callable[[list[Any]], TaskOutcome]) -> TaskOutcome:
    """Run a task; for a notebook, record its cells' output into OUTPUT_DIR/cells.json as they run."""
    if invocation.kind != "notebook":
        return run(cells)
    from .secrets import REDACTOR

    RECORDER.start(invocation.output_dir, cells, redact=lambda s: REDACTOR.redact(s) or "")
    outcome = run(RECORDER.track(cells))
    if outcome.result_state == "FAILED" and outcome.error:
        RECORDER.cell_failed(outcome.error, outcome.error_trace or "")  # the cell that was running
    else:
        RECORDER.finish(outcome.notebook_result)
    return outcome
