"""A task run's output: notebook cells (printed text, displayed tables, the failing cell's
error and trace, the exit value), dbt's commands, log and artifacts, a Python file's stdout/stderr."""

from __future__ import annotations

from .data import PageData
from .html import e, fmt_size, is_active, text_block

TABLE_ROWS_SHOWN = 100


def task_output(data: PageData, task: dict) -> str:
    tid = task["run_id"]
    outcome = data.outcome(tid)
    if task.get("dbt_task"):
        return _dbt(data, task, outcome)
    if task.get("notebook_task"):
        return _notebook(data, task, outcome)
    return _python(data, task, outcome)


def _error(outcome: dict) -> str:
    if not outcome.get("error") and not outcome.get("error_trace"):
        return ""
    trace = outcome.get("error_trace") or ""
    return (
        f'<div class="card task-error"><b>Error</b>{text_block(outcome.get("error") or "", cls="err")}'
        + (
            f"<details open><summary>Trace</summary>{text_block(trace, cls='err', tail=True)}</details>"
            if trace
            else ""
        )
        + "</div>"
    )


def _logs(data: PageData, tid: int, outcome: dict, title: str, open_: bool) -> str:
    log = data.log(tid)
    if log is not None:
        text, size = log
        block = text_block(text, size, tail=True)
    elif outcome.get("logs"):
        block = text_block(outcome["logs"], tail=True)
        if outcome.get("logs_truncated"):
            block = '<div class="note">The task\'s log was truncated by the runtime.</div>' + block
    else:
        return ""
    return f'<details class="logs"{" open" if open_ else ""}><summary>{e(title)}</summary>{block}</details>'


def _pending(task: dict) -> str:
    return '<p class="muted">The task has not produced output yet.</p>' if is_active(task) else ""


def _notebook(data: PageData, task: dict, outcome: dict) -> str:
    tid = task["run_id"]
    recorded = data.cells(tid)
    parts = []
    failed_cell = False
    if recorded is not None:
        cells = recorded.get("cells") or []
        for cell in cells:
            if not (cell.get("source") or "").strip():
                continue
            failed_cell = failed_cell or bool(cell.get("error"))
            parts.append(_cell(cell))
        if not cells:
            parts.append(_pending(task) or '<p class="muted">No cell ran.</p>')
        elif cells[-1].get("error"):
            parts.append(
                f'<p class="muted">The run stopped at cell {e(cells[-1]["number"])}; later cells did not run.</p>'
            )
    else:
        parts.append(_pending(task))
    exit_value = outcome.get("notebook_result")
    if exit_value is None and recorded is not None:
        exit_value = recorded.get("exit_value")
    if exit_value is not None:
        note = " (truncated)" if outcome.get("notebook_result_truncated") else ""
        parts.append(
            f'<div class="card exit-value"><b>Notebook exit value{note}</b>{text_block(str(exit_value))}</div>'
        )
    if not failed_cell:
        parts.append(_error(outcome))
    parts.append(_logs(data, tid, outcome, "Driver log of this task (stdout / stderr)", open_=recorded is None))
    return "".join(parts)


def _cell(cell: dict) -> str:
    state = cell.get("state") or "done"
    head = (
        f'<div class="cell-head"><b>Cmd {e(cell.get("number"))}</b><span>{e(cell.get("kind"))}</span>'
        + ('<span style="color:#2272b4">● running</span>' if state == "running" else "")
        + ('<span style="color:#c8312b;font-weight:600">✗ failed</span>' if cell.get("error") else "")
        + "</div>"
    )
    body = [text_block(cell.get("source") or "", cls="src")]
    if cell.get("stdout"):
        body.append('<div class="out-label">Output</div>')
        body.append(
            text_block(cell["stdout"], cell.get("stdout_bytes") if cell.get("stdout_truncated") else None, cls="stdout")
        )
    for table in cell.get("tables") or []:
        body.append(_table(table))
    if cell.get("error"):
        body.append(f'<div class="out-label">Error</div>{text_block(cell["error"], cls="err")}')
        if cell.get("error_trace"):
            body.append(
                f"<details open><summary>Trace</summary>{text_block(cell['error_trace'], cls='err', tail=True)}</details>"
            )
    cls = "cell failed" if cell.get("error") else "cell"
    return f'<div class="{cls}" data-cell="{e(cell.get("number"))}">{head}<div class="cell-body">{"".join(body)}</div></div>'


def _table(table: dict) -> str:
    cols = table.get("columns") or []
    rows = (table.get("rows") or [])[:TABLE_ROWS_SHOWN]
    head = "".join(f"<th>{e(c.get('name'))}<small>{e(c.get('type'))}</small></th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{'<i class=muted>null</i>' if v is None else e(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    note = (
        f"Showing the first {len(rows)} rows."
        if table.get("truncated")
        else f"{len(rows)} row{'s' if len(rows) != 1 else ''}."
    )
    return (
        f'<div class="out-label">Table ({len(cols)} column{"s" if len(cols) != 1 else ""})</div>'
        f'<div style="overflow:auto;max-height:420px"><table class="grid data display-table"><tr>{head}</tr>{body}</table></div>'
        f'<div class="muted" style="font-size:12px">{e(note)}</div>'
    )


def _dbt(data: PageData, task: dict, outcome: dict) -> str:
    tid = task["run_id"]
    commands = (task.get("dbt_task") or {}).get("commands") or []
    parts = ['<div class="card"><b>dbt commands</b><pre>' + e("\n".join(commands)) + "</pre>"]
    if outcome.get("dbt_artifacts_dir"):
        parts.append(
            f'<p><a class="artifacts" href="{e(data.artifacts_link(tid))}">Download dbt artifacts (target/: '
            f"run_results.json, manifest.json)</a></p>"
        )
    parts.append("</div>")
    parts.append(_error(outcome))
    parts.append(_logs(data, tid, outcome, "dbt output (stdout / stderr)", open_=True))
    dbt_log = data.log(tid, "dbt_logs/dbt.log")
    if dbt_log is not None:
        text, size = dbt_log
        parts.append(
            f'<details class="logs"><summary>dbt.log ({e(fmt_size(size))})</summary>{text_block(text, size, tail=True)}</details>'
        )
    if len(parts) == 3 and not outcome:
        parts.append(_pending(task))
    return "".join(parts)


def _python(data: PageData, task: dict, outcome: dict) -> str:
    logs = _logs(data, task["run_id"], outcome, "stdout / stderr", open_=True)
    return _error(outcome) + (logs or _pending(task) or '<p class="muted">The task printed nothing.</p>')
