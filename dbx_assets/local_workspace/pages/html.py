"""Shared HTML: the page frame, inline CSS, state badges, times and durations."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from ..http.http_types import Response

# Spark's default spark.redaction.regex: values of matching keys are hidden on the pages.
SECRET_KEY = re.compile(r"(?i)secret|password|token|access[._]?key|credential|api[._]?key")
REDACTED = "*********(redacted)"

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f272d;background:#f6f7f9}
a{color:#2272b4;text-decoration:none}a:hover{text-decoration:underline}
header.top{background:#1b3139;color:#fff;padding:8px 20px;display:flex;align-items:center;gap:18px}
header.top a{color:#fff}header.top .brand{font-weight:600;font-size:15px}
header.top form{margin-left:auto}header.top button{background:none;border:1px solid #8aa;color:#fff;border-radius:4px;cursor:pointer}
main{padding:14px 24px 40px;max-width:1400px}
.crumbs{color:#5f7281;font-size:13px;margin-bottom:4px}.crumbs a{color:#5f7281}
h1{font-size:22px;margin:2px 0 10px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:16px;margin:26px 0 8px}
.card{background:#fff;border:1px solid #dde3e8;border-radius:6px;padding:12px 16px;margin:8px 0}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px}.kv dt{color:#5f7281}.kv dd{margin:0}
table.grid{border-collapse:collapse;background:#fff;width:100%}
table.grid th,table.grid td{border:1px solid #dde3e8;padding:5px 8px;text-align:left;vertical-align:top}
table.grid th{background:#f0f3f5;font-weight:600}
table.data td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;white-space:pre}
table.data th small{display:block;color:#5f7281;font-weight:400;font-family:ui-monospace,monospace}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12.5px;font-weight:600;color:#fff;white-space:nowrap}
.s-success{background:#1b873f}.s-failed{background:#c8312b}.s-running{background:#2272b4}.s-pending{background:#75818c}
.s-skipped{background:#d98a00}.s-canceled{background:#4d5862}
pre{background:#f3f5f7;border:1px solid #e1e6ea;border-radius:4px;padding:8px 10px;overflow:auto;max-height:480px;margin:6px 0;
 font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
pre.err{background:#fdf0ef;border-color:#f0c3bf;color:#8c1d18}
.cell{background:#fff;border:1px solid #dde3e8;border-radius:6px;margin:10px 0;overflow:hidden}
.cell.failed{border-color:#c8312b;box-shadow:0 0 0 1px #c8312b}
.cell-head{display:flex;gap:10px;align-items:center;padding:4px 10px;background:#f0f3f5;font-size:12.5px;color:#5f7281}
.cell-head b{color:#1f272d}.cell-body{padding:4px 10px 8px}.cell pre.src{background:#fbfcfd}
.out-label{font-size:12px;color:#5f7281;margin-top:6px}
.note{color:#8a5a00;font-size:12.5px}.muted{color:#5f7281}
.login{max-width:420px;margin:60px auto;background:#fff;border:1px solid #dde3e8;border-radius:8px;padding:24px}
.login input[type=password]{width:100%;padding:8px;margin:6px 0 12px;border:1px solid #b8c2cb;border-radius:4px}
.login button{background:#2272b4;color:#fff;border:0;padding:8px 18px;border-radius:4px;cursor:pointer}
.login-msg{color:#8c1d18}
.pager{margin:8px 0;display:flex;gap:14px}
svg text{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
svg a:hover rect.node{stroke-width:2.5}
.legend{display:flex;gap:14px;font-size:12px;color:#5f7281;margin:2px 0 6px}
.legend i{display:inline-block;width:18px;height:10px;margin-right:4px;vertical-align:middle;border-radius:2px}
"""

# (css class, human label) per state, as the Databricks UI words them.
_RESULT = {
    "SUCCESS": ("success", "Succeeded"),
    "SUCCESS_WITH_FAILURES": ("success", "Succeeded with failures"),
    "FAILED": ("failed", "Failed"),
    "TIMEDOUT": ("failed", "Timed out"),
    "CANCELED": ("canceled", "Canceled"),
    "UPSTREAM_FAILED": ("skipped", "Upstream failed"),
    "UPSTREAM_CANCELED": ("skipped", "Upstream canceled"),
    "EXCLUDED": ("skipped", "Excluded"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": ("skipped", "Skipped"),
    "DISABLED": ("skipped", "Disabled"),
}
_LIFE = {
    "PENDING": ("pending", "Pending"),
    "QUEUED": ("pending", "Queued"),
    "BLOCKED": ("pending", "Blocked"),
    "RUNNING": ("running", "Running"),
    "TERMINATING": ("running", "Terminating"),
    "INTERNAL_ERROR": ("failed", "Internal error"),
    "SKIPPED": ("skipped", "Skipped"),
    "WAITING_FOR_RETRY": ("pending", "Waiting for retry"),
    "TERMINATED": ("canceled", "Terminated"),
}
STATE_COLORS = {
    "success": "#1b873f",
    "failed": "#c8312b",
    "running": "#2272b4",
    "pending": "#75818c",
    "skipped": "#d98a00",
    "canceled": "#4d5862",
}
ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def state_of(doc: dict) -> tuple[str, str]:
    """(css class, label) of a run or task run document."""
    st = doc.get("state") or {}
    life, result = st.get("life_cycle_state", ""), st.get("result_state")
    if life in ACTIVE or not result:
        return _LIFE.get(life, ("pending", life.title() or "Unknown"))
    if life == "INTERNAL_ERROR":
        return _LIFE["INTERNAL_ERROR"]
    return _RESULT.get(result, ("canceled", result.title()))


def is_active(doc: dict) -> bool:
    return (doc.get("state") or {}).get("life_cycle_state") in ACTIVE


def badge(doc: dict) -> str:
    cls, label = state_of(doc)
    return f'<span class="badge s-{cls}" data-state="{e(label)}">{e(label)}</span>'


def fmt_time(ms: int | None) -> str:
    if not ms:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: int | float | None) -> str:
    if ms is None or ms < 0:
        return "—"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s}s"
    h, m = divmod(m, 60)
    return f"{h}h {m}m"


def fmt_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def kv(rows: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML already."""
    return '<dl class="kv">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def redact_map(values: dict[str, Any] | None) -> dict[str, str]:
    return {k: (REDACTED if SECRET_KEY.search(k) else str(v)) for k, v in (values or {}).items()}


def text_block(
    text: str, total_bytes: int | None = None, *, cls: str = "", tail: bool = False, limit: int = 256 * 1024
) -> str:
    """A <pre> of output; over `limit` characters it is cut (the head, or the tail for logs) and says so."""
    size = total_bytes if total_bytes is not None else len(text.encode("utf-8", "replace"))
    note = ""
    if len(text) > limit:
        text = text[-limit:] if tail else text[:limit]
        note = f'<div class="note">Output truncated: showing the {"last" if tail else "first"} {fmt_size(limit)} of {fmt_size(size)}.</div>'
    elif total_bytes is not None and total_bytes > len(text.encode("utf-8", "replace")):
        note = f'<div class="note">Output truncated: showing the first {fmt_size(len(text.encode()))} of {fmt_size(total_bytes)}.</div>'
    return f'{note}<pre class="{e(cls)}">{e(text)}</pre>'


def layout(
    title: str, body: str, *, crumbs: list[tuple[str, str]], refresh: int | None = None, logged_in: bool = False
) -> str:
    crumb_html = " › ".join(f'<a href="{e(href)}">{e(label)}</a>' if href else e(label) for label, href in crumbs)
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    logout = '<form method="post" action="/logout"><button type="submit">Log out</button></form>' if logged_in else ""
    live = (
        '<span class="muted" style="color:#b9d4e6">● live: this page refreshes while the run is active</span>'
        if refresh
        else ""
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{e(title)} · Local Databricks</title>'
        f'<meta name="referrer" content="no-referrer"><style>{CSS}</style></head><body>'
        f'<header class="top"><a class="brand" href="/">◆ Local Databricks workspace</a><a href="/">Jobs &amp; runs</a>'
        f'<a href="/#clusters">Compute</a>{live}{logout}</header>'
        f"<main>{f'<div class=crumbs>{crumb_html}</div>' if crumb_html else ''}{body}</main></body></html>"
    )


def html_response(page: str, status: int = 200) -> Response:
    return Response(
        status,
        page.encode("utf-8"),
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        },
    )
