"""The workspace's front page (jobs, recent runs newest first, paged; compute) and the cluster page."""

from __future__ import annotations

import json

from .data import PageData
from .html import badge, e, fmt_duration, fmt_time, is_active, kv, layout, redact_map, state_of
from .run import job_href, run_href

PAGE_SIZE = 25


def index_page(data: PageData, page: int, job_id: int | None) -> str:
    jobs = data.jobs()
    runs = data.runs(job_id)
    pages = max(1, (len(runs) + PAGE_SIZE - 1) // PAGE_SIZE)
    page = min(max(page, 1), pages)
    shown = runs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    latest: dict[int, dict] = {}
    for r in data.runs():
        if r.get("job_id") is not None:
            latest.setdefault(r["job_id"], r)
    job_rows = "".join(
        f'<tr><td><a href="{job_href(j["job_id"])}">{e(j["settings"].get("name") or "Untitled")}</a></td><td>{e(j["job_id"])}</td>'
        f"<td>{len(j['settings'].get('tasks') or [])}</td><td>{e(fmt_time(j.get('created_time')))}</td>"
        f"<td>{_latest(latest.get(j['job_id']))}</td></tr>"
        for j in jobs
    )
    run_rows = "".join(_run_row(r) for r in shown)
    base = f"/?job_id={job_id}&" if job_id is not None else "/?"
    pager = (
        '<div class="pager">'
        + (f'<a href="{base}page={page - 1}">‹ Newer</a>' if page > 1 else "")
        + f'<span class="muted">Page {page} of {pages} · {len(runs)} runs</span>'
        + (f'<a href="{base}page={page + 1}">Older ›</a>' if page < pages else "")
        + "</div>"
    )
    title = "Runs"
    if job_id is not None:
        job = next((j for j in jobs if j["job_id"] == job_id), None)
        title = f'Runs of {e((job or {}).get("settings", {}).get("name") or job_id)} <a class="muted" style="font-size:13px" href="/">(all jobs)</a>'
    clusters = data.clusters()[:20]
    cluster_rows = "".join(
        f'<tr><td><a href="/compute/clusters/{e(c["cluster_id"])}">{e(c.get("cluster_name") or c["cluster_id"])}</a></td>'
        f"<td>{e(c.get('cluster_source'))}</td><td>{e(c.get('state'))}</td><td>{e(fmt_time(c.get('start_time')))}</td>"
        f"<td>{e((c.get('termination_reason') or {}).get('code') or '')}</td></tr>"
        for c in clusters
    )
    body = (
        f'<h1>Jobs</h1><table class="grid jobs"><tr><th>Name</th><th>Job ID</th><th>Tasks</th><th>Created</th><th>Last run</th></tr>'
        f"{job_rows or '<tr><td colspan=5 class=muted>No jobs yet.</td></tr>'}</table>"
        f'<h2 id="runs">{title}</h2>{pager}<table class="grid runs"><tr><th>Run</th><th>Job</th><th>Trigger</th><th>Started</th>'
        f"<th>Duration</th><th>Status</th><th>Tasks</th></tr>{run_rows or '<tr><td colspan=7 class=muted>No runs yet.</td></tr>'}</table>{pager}"
        f'<h2 id="clusters">Compute (latest {len(clusters)})</h2><table class="grid"><tr><th>Cluster</th><th>Source</th><th>State</th>'
        f"<th>Started</th><th>Termination</th></tr>{cluster_rows or '<tr><td colspan=5 class=muted>No clusters yet.</td></tr>'}</table>"
    )
    active = any(is_active(r) for r in shown)
    return layout("Jobs & runs", body, crumbs=[], refresh=5 if active else None, logged_in=True)


def _latest(run: dict | None) -> str:
    if run is None:
        return '<span class="muted">never run</span>'
    return f'<a href="{e(run_href(run))}">run {e(run["run_id"])}</a> {badge(run)}'


def _run_row(r: dict) -> str:
    counts: dict[str, int] = {}
    for t in r.get("tasks") or []:
        label = state_of(t)[1]
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{n} {label.lower()}" for label, n in counts.items())
    start, end = r.get("start_time") or 0, r.get("end_time") or 0
    trigger = {"JOB_RUN": "Run now", "SUBMIT_RUN": "One-time"}.get(r.get("run_type", ""), r.get("run_type", ""))
    if any(h.get("type") == "REPAIR" for h in r.get("repair_history") or []):
        trigger += " · repaired"
    job = f'<a href="{job_href(r["job_id"])}">{e(r["job_id"])}</a>' if r.get("job_id") is not None else "—"
    return (
        f'<tr data-run="{e(r["run_id"])}"><td><a href="{e(run_href(r))}">{e(r.get("run_name") or "Run")} · {e(r["run_id"])}</a></td>'
        f"<td>{job}</td><td>{e(trigger)}</td><td>{e(fmt_time(start))}</td><td>{e(fmt_duration(end - start) if start and end else '—')}</td>"
        f"<td>{badge(r)}</td><td>{e(summary)}</td></tr>"
    )


def cluster_page(data: PageData, c: dict) -> str:
    reason = c.get("termination_reason") or {}
    tags = c.get("custom_tags") or {}
    run_link = ""
    if tags.get("JobRunId"):
        run = data.run(int(tags["JobRunId"])) if str(tags["JobRunId"]).isdigit() else None
        if run is not None:
            run_link = f'<a href="{e(run_href(run))}">{e(run.get("run_name") or "Run")} · run {e(run["run_id"])}</a>'
    details = kv(
        [
            ("Cluster ID", e(c["cluster_id"])),
            (
                "State",
                e(c.get("state"))
                + (f' <span class="muted">{e(c.get("state_message"))}</span>' if c.get("state_message") else ""),
            ),
            ("Source", e(c.get("cluster_source"))),
            ("Job run", run_link or "—"),
            ("Spark version", e(c.get("spark_version"))),
            ("Node type", f"{e(c.get('node_type_id') or '—')}, {e(c.get('num_workers', 0))} workers"),
            ("Started", e(fmt_time(c.get("start_time")))),
            ("Terminated", e(fmt_time(c.get("terminated_time")))),
            ("Termination reason", e(f"{reason.get('code')} ({reason.get('type')})") if reason else "—"),
            ("Created by", e(c.get("creator_user_name"))),
        ]
    )
    spec = {
        k: c[k]
        for k in (
            "spark_version",
            "node_type_id",
            "num_workers",
            "autoscale",
            "spark_conf",
            "spark_env_vars",
            "custom_tags",
            "autotermination_minutes",
            "data_security_mode",
        )
        if k in c
    }
    for key in ("spark_conf", "spark_env_vars"):
        if key in spec:
            spec[key] = redact_map(spec[key])
    events = list(reversed(c.get("_events") or []))
    rows = "".join(
        f"<tr><td>{e(fmt_time(ev.get('timestamp')))}</td><td><b>{e(ev.get('type'))}</b></td><td>{_event_details(ev.get('details') or {})}</td></tr>"
        for ev in events
    )
    body = (
        f'<h1>{e(c.get("cluster_name") or c["cluster_id"])}</h1><div class="card">{details}</div>'
        f'<h2>Event log</h2><table class="grid events"><tr><th>Time</th><th>Event</th><th>Details</th></tr>'
        f"{rows or '<tr><td colspan=3 class=muted>No events recorded.</td></tr>'}</table>"
        f"<h2>Configuration</h2><pre>{e(json.dumps(spec, indent=2))}</pre>"
    )
    active = c.get("state") in ("PENDING", "RESTARTING", "RESIZING", "TERMINATING")
    return layout(
        f"Cluster {c['cluster_id']}",
        body,
        crumbs=[("Compute", "/#clusters"), (c.get("cluster_name") or c["cluster_id"], "")],
        refresh=3 if active else None,
        logged_in=True,
    )


def _event_details(d: dict) -> str:
    parts = []
    if d.get("reason"):
        r = d["reason"]
        parts.append(
            f"Reason: <b>{e(r.get('code'))}</b> ({e(r.get('type'))})"
            + "".join(f" {e(k)}={e(v)}" for k, v in (r.get("parameters") or {}).items())
        )
    if d.get("message"):
        parts.append(e(d["message"]))
    if d.get("seconds_to_start") is not None:
        parts.append(f"started in {e(d['seconds_to_start'])} s")
    if d.get("cluster_source"):
        by = f" by {e(d['user'])}" if d.get("user") else ""  # a job cluster is the jobs service's
        parts.append(f"{e(d['cluster_source'])} cluster{by}")
    return "<br>".join(parts)
