"""Inline SVG: the task graph (columns by dependency depth) and the timeline (one bar per task run)."""

from __future__ import annotations

import time
from collections.abc import Callable

from .html import STATE_COLORS, e, fmt_duration, state_of

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 190, 46, 56, 14, 10


def depths(tasks: list[dict]) -> dict[str, int]:
    """Longest path from a root: a task sits one column right of its deepest dependency."""
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    memo: dict[str, int] = {}

    def depth(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key in memo:
            return memo[key]
        if key in seen:  # a cycle cannot be created through the API; never loop on one anyway
            return 0
        parents = [p for p in deps.get(key, []) if p in deps]
        memo[key] = 0 if not parents else 1 + max(depth(p, seen | {key}) for p in parents)
        return memo[key]

    return {k: depth(k) for k in deps}


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def task_graph(tasks: list[dict], href: Callable[[dict], str]) -> str:
    if not tasks:
        return '<p class="muted">No tasks.</p>'
    depth = depths(tasks)
    columns: dict[int, list[dict]] = {}
    for t in tasks:
        columns.setdefault(depth[t["task_key"]], []).append(t)
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, t in enumerate(members):
            pos[t["task_key"]] = (PAD + col * (NODE_W + COL_GAP), PAD + row * (NODE_H + ROW_GAP))
    width = PAD * 2 + (max(columns) + 1) * (NODE_W + COL_GAP) - COL_GAP
    height = PAD * 2 + max(len(m) for m in columns.values()) * (NODE_H + ROW_GAP) - ROW_GAP
    edges = []
    for t in tasks:
        x2, y2 = pos[t["task_key"]]
        for d in t.get("depends_on") or []:
            if d["task_key"] not in pos:
                continue
            x1, y1 = pos[d["task_key"]]
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + ex) / 2
            edges.append(
                f'<path class="edge" data-from="{e(d["task_key"])}" data-to="{e(t["task_key"])}" '
                f'd="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex - 6},{ey}" fill="none" stroke="#9aa7b2" '
                f'stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    nodes = []
    for t in tasks:
        x, y = pos[t["task_key"]]
        cls, label = state_of(t)
        color = STATE_COLORS[cls]
        took = _task_took(t)
        nodes.append(
            f'<a href="{e(href(t))}" class="task-node" data-task="{e(t["task_key"])}" data-state="{e(label)}">'
            f"<title>{e(t['task_key'])}: {e(label)}{' · ' + took if took else ''}</title>"
            f'<rect class="node" x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="#fff" stroke="{color}" stroke-width="1.5"/>'
            f'<rect x="{x}" y="{y}" width="6" height="{NODE_H}" rx="3" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y + 19}" font-size="13" font-weight="600" fill="#1f272d">{e(_short(t["task_key"], 24))}</text>'
            f'<circle cx="{x + 18}" cy="{y + 33}" r="4" fill="{color}"/>'
            f'<text x="{x + 27}" y="{y + 37}" font-size="11.5" fill="{color}">{e(label)}{" · " + e(took) if took else ""}</text></a>'
        )
    return (
        f'<svg class="task-graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Task graph"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#9aa7b2"/></marker></defs>'
        f"{''.join(edges)}{''.join(nodes)}</svg>"
    )


def _task_took(t: dict) -> str:
    start, end = t.get("start_time") or 0, t.get("end_time") or 0
    if not start:
        return ""
    return fmt_duration((end or time.time() * 1000) - start)


LABEL_W, BAR_W, ROW_H, AXIS_H = 230, 760, 26, 22


def timeline(rows: list[tuple[str, dict, str]], now_ms: int | None = None) -> str:
    """rows: (label, task run document, link). Setup (waiting for the cluster) is its own hatched segment."""
    now = now_ms or int(time.time() * 1000)
    started = [t for _, t, _ in rows if t.get("start_time")]
    if not started:
        return '<p class="muted">No task has started yet.</p>'
    t0 = min(t["start_time"] for t in started)
    t1 = max((t.get("end_time") or now) for t in started)
    span = max(t1 - t0, 1000)

    def x(ms: float) -> float:
        return LABEL_W + (ms - t0) / span * BAR_W

    height = AXIS_H + len(rows) * ROW_H + 6
    width = LABEL_W + BAR_W + 70
    ticks = []
    step = _tick_step(span)
    k = 0
    while k * step <= span:
        tx = x(t0 + k * step)
        ticks.append(
            f'<line x1="{tx:.1f}" y1="{AXIS_H - 4}" x2="{tx:.1f}" y2="{height}" stroke="#edf0f2"/>'
            f'<text x="{tx:.1f}" y="{AXIS_H - 8}" font-size="11" fill="#5f7281" text-anchor="middle">{fmt_duration(k * step)}</text>'
        )
        k += 1
    bars = []
    for i, (label, t, link) in enumerate(rows):
        y = AXIS_H + i * ROW_H + 4
        cls, state_label = state_of(t)
        color = STATE_COLORS[cls]
        bars.append(
            f'<text x="{LABEL_W - 8}" y="{y + 13}" font-size="12" text-anchor="end" fill="#1f272d">{e(_short(label, 34))}</text>'
        )
        start = t.get("start_time") or 0
        if not start:
            bars.append(
                f'<text x="{LABEL_W + 4}" y="{y + 13}" font-size="11" fill="#75818c">{e(state_label)} (not started)</text>'
            )
            continue
        end = t.get("end_time") or now
        setup_end = min(start + (t.get("setup_duration") or 0), end)
        run_from = setup_end
        total = fmt_duration(end - start)
        parts = [
            f"<title>{e(label)}: {e(state_label)} · {total} (cluster setup {fmt_duration(setup_end - start)}, "
            f"running {fmt_duration(end - run_from)})</title>"
        ]
        if setup_end > start:
            parts.append(
                f'<rect class="bar-setup" x="{x(start):.1f}" y="{y}" width="{max(x(setup_end) - x(start), 1):.1f}" '
                f'height="17" fill="url(#setup)" stroke="#9aa7b2" stroke-width="0.6"/>'
            )
        parts.append(
            f'<rect class="bar-run" data-state="{e(state_label)}" x="{x(run_from):.1f}" y="{y}" '
            f'width="{max(x(end) - x(run_from), 2):.1f}" height="17" fill="{color}" rx="2"/>'
        )
        parts.append(f'<text x="{x(end) + 5:.1f}" y="{y + 13}" font-size="11" fill="#5f7281">{total}</text>')
        bars.append(
            f'<a href="{e(link)}" class="timeline-row" data-task-run="{e(t.get("run_id"))}">{"".join(parts)}</a>'
        )
    legend = (
        '<div class="legend"><span><i style="background:repeating-linear-gradient(45deg,#cfd6dc 0 3px,#f3f5f7 3px 6px);'
        'border:1px solid #9aa7b2"></i>waiting for the cluster (setup)</span>'
        + "".join(
            f'<span><i style="background:{STATE_COLORS[c]}"></i>{n}</span>'
            for c, n in (
                ("success", "succeeded"),
                ("failed", "failed"),
                ("running", "running"),
                ("skipped", "skipped"),
                ("canceled", "canceled"),
            )
        )
        + "</div>"
    )
    return (
        f'{legend}<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Timeline"><defs><pattern id="setup" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f5f7"/><rect width="3" height="6" fill="#cfd6dc"/>'
        f"</pattern></defs>{''.join(ticks)}{''.join(bars)}</svg>"
    )


def _tick_step(span_ms: int) -> int:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span_ms / (step * 1000) <= 8:
            return step * 1000
    return 7200 * 1000
