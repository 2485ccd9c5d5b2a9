"""The run page (a job run: details, graph, timeline, tasks, parameters, clusters, repairs) and
the task run page (one task run: details and its output)."""

from __future__ import annotations

import json

from .data import Attempt, PageData
from .html import REDACTED, SECRET_KEY, badge, e, fmt_duration, fmt_time, is_active, kv, layout, redact_map, state_of
from .output import task_output
from .svg import task_graph, timeline

REFRESH_SECONDS = 3
_TRIGGER = {
    "JOB_RUN": "Run now (jobs/run-now)",
    "SUBMIT_RUN": "One-time run (runs/submit)",
    "WORKFLOW_RUN": "Workflow run (dbutils.notebook.run)",
}


def run_href(run: dict) -> str:
    return f"/jobs/{run.get('job_id', 'submit')}/runs/{run['run_id']}"


def task_href(run: dict, task: dict) -> str:
    return f"/jobs/{run.get('job_id', 'submit')}/runs/{task['run_id']}"


def job_href(job_id: int | None) -> str:
    return f"/?job_id={job_id}" if job_id is not None else "/"


def _crumbs(run: dict) -> list[tuple[str, str]]:
    job = f"Job {run['job_id']}" if run.get("job_id") is not None else "One-time runs"
    return [
        ("Jobs & runs", "/"),
        (job, job_href(run.get("job_id"))),
        (f"{run.get('run_name') or 'Run'} · run {run['run_id']}", run_href(run)),
    ]


def _attempt_label(a: Attempt) -> str:
    t = a.task
    extra = []
    if a.repair_index:
        extra.append(f"repair {a.repair_index}")
    if t.get("attempt_number"):
        extra.append(f"retry {t['attempt_number']}")
    if not a.current:
        extra.append("replaced")
    return t["task_key"] + (f" ({', '.join(extra)})" if extra else "")


def _duration(doc: dict) -> str:
    start, end = doc.get("start_time") or 0, doc.get("end_time") or 0
    if not start:
        return "—"
    if not end:
        import time

        return fmt_duration(time.time() * 1000 - start) + " (so far)"
    return fmt_duration(end - start)


def run_page(data: PageData, run: dict) -> str:
    attempts = data.attempts(run)
    tasks = run.get("tasks", [])
    st = run.get("state") or {}
    repairs = [h for h in run.get("repair_history") or [] if h.get("type") == "REPAIR"]
    trigger = _TRIGGER.get(run.get("run_type", ""), run.get("run_type") or "—")
    if repairs:
        trigger += f", repaired {len(repairs)} time{'s' if len(repairs) > 1 else ''}"
    details = kv(
        [
            ("Job", f'<a href="{job_href(run.get("job_id"))}">{e(run.get("job_id", "— (one-time run)"))}</a>'),
            ("Run ID", e(run["run_id"])),
            ("Status", _status_cell(run, st)),
            ("Trigger", e(trigger)),
            ("Started", e(fmt_time(run.get("start_time")))),
            ("Ended", e(fmt_time(run.get("end_time")))),
            ("Duration", e(_duration(run))),
            ("Waiting for clusters", e(fmt_duration(run.get("setup_duration")))),
            ("Launched by", e(run.get("creator_user_name"))),
        ]
    )
    graph = task_graph(tasks, lambda t: task_href(run, t))
    rows = [(_attempt_label(a), a.task, task_href(run, a.task)) for a in attempts]
    body = (
        f'<h1>{e(run.get("run_name") or "Run")} {badge(run)}</h1><div class="card">{details}</div>'
        f'<h2>Graph</h2><div class="card" style="overflow:auto">{graph}</div>'
        f'<h2>Timeline</h2><div class="card" style="overflow:auto">{timeline(rows)}</div>'
        f"<h2>Tasks</h2>{_task_table(run, attempts)}"
        f"<h2>Parameters</h2>{_parameters(run)}"
        f"<h2>Compute</h2>{_clusters(data, run, attempts)}"
        f"{_repairs(run, repairs)}"
    )
    return layout(
        f"Run {run['run_id']}",
        body,
        crumbs=_crumbs(run),
        refresh=REFRESH_SECONDS if is_active(run) else None,
        logged_in=True,
    )


def _task_table(run: dict, attempts: list[Attempt]) -> str:
    rows = []
    for a in attempts:
        t = a.task
        cluster = (t.get("cluster_instance") or {}).get("cluster_id")
        msg = (t.get("state") or {}).get("state_message") or ""
        rows.append(
            f'<tr data-task="{e(t["task_key"])}" data-task-run="{e(t["run_id"])}"><td><a href="{e(task_href(run, t))}">'
            f"{e(_attempt_label(a))}</a></td><td>{badge(t)}</td><td>{e(_kind(t))}</td><td>{e(fmt_time(t.get('start_time')))}</td>"
            f"<td>{e(fmt_duration(t.get('setup_duration')) if t.get('start_time') else '—')}</td><td>{e(_duration(t))}</td>"
            f"<td>{f'<a href=/compute/clusters/{e(cluster)}>{e(cluster)}</a>' if cluster else '—'}</td>"
            f"<td>{e(', '.join(d['task_key'] for d in t.get('depends_on') or []) or '—')}</td><td>{e(msg)}</td></tr>"
        )
    return (
        '<table class="grid tasks"><tr><th>Task</th><th>Status</th><th>Type</th><th>Started</th><th>Cluster setup</th>'
        "<th>Duration</th><th>Cluster</th><th>Depends on</th><th>Message</th></tr>" + "".join(rows) + "</table>"
    )


def _kind(t: dict) -> str:
    if t.get("notebook_task"):
        return "Notebook " + (t["notebook_task"].get("notebook_path") or "")
    if t.get("spark_python_task"):
        return "Python " + (t["spark_python_task"].get("python_file") or "")
    if t.get("python_wheel_task"):
        wt = t["python_wheel_task"]
        return f"Python wheel {wt.get('package_name') or ''}:{wt.get('entry_point') or ''}"
    if t.get("dbt_task"):
        return "dbt"
    return "—"


def _param_rows(values: dict) -> str:
    return "".join(f"<tr><td>{e(k)}</td><td><code>{e(v)}</code></td></tr>" for k, v in redact_map(values).items())


def _parameters(run: dict) -> str:
    parts = []
    jp = run.get("job_parameters") or []
    if jp:
        rows = "".join(
            f"<tr><td>{e(p['name'])}</td><td><code>{e(REDACTED if SECRET_KEY.search(p['name']) else p.get('value', p.get('default', '')))}</code></td>"
            f"<td><code>{e(REDACTED if SECRET_KEY.search(p['name']) else p.get('default', ''))}</code></td></tr>"
            for p in jp
        )
        parts.append(
            f'<table class="grid params"><tr><th>Job parameter</th><th>Value</th><th>Default</th></tr>{rows}</table>'
        )
    over = run.get("overriding_parameters") or {}
    for key in ("notebook_params", "python_params", "python_named_params", "dbt_commands"):
        if over.get(key):
            value = over[key]
            inner = (
                _param_rows(value)
                if isinstance(value, dict)
                else "".join(f"<tr><td>{i}</td><td><code>{e(v)}</code></td></tr>" for i, v in enumerate(value))
            )
            parts.append(
                f'<table class="grid params"><tr><th colspan="2">{e(key)} (given at run time)</th></tr>{inner}</table>'
            )
    return "".join(parts) or '<p class="muted">This run has no parameters.</p>'


def _clusters(data: PageData, run: dict, attempts: list[Attempt]) -> str:
    used: dict[str, list[str]] = {}
    for a in attempts:
        cid = (a.task.get("cluster_instance") or {}).get("cluster_id")
        if cid:
            used.setdefault(cid, []).append(a.task["task_key"])
    rows = []
    for cid, keys in used.items():
        c = data.cluster(cid) or {"cluster_id": cid}
        ready = next((ev for ev in c.get("_events") or [] if ev.get("type") == "RUNNING"), None)
        start_took = (ready or {}).get("details", {}).get("seconds_to_start")
        rows.append(
            f'<tr><td><a href="/compute/clusters/{e(cid)}">{e(c.get("cluster_name") or cid)}</a><br><small class="muted">{e(cid)}</small></td>'
            f"<td>{e(c.get('cluster_source') or '—')}</td><td>{e(c.get('spark_version') or '—')}</td>"
            f"<td>{e(c.get('node_type_id') or '—')}, {e(c.get('num_workers', 0))} workers</td>"
            f"<td>{e(fmt_time(c.get('start_time')))}</td><td>{e(f'{start_took} s' if start_took is not None else '—')}</td>"
            f"<td>{e(c.get('state') or '—')}</td><td>{e(', '.join(dict.fromkeys(keys)))}</td></tr>"
        )
    table = (
        (
            '<table class="grid clusters"><tr><th>Cluster</th><th>Source</th><th>Spark version</th><th>Nodes</th><th>Started</th>'
            "<th>Start took</th><th>State</th><th>Tasks</th></tr>" + "".join(rows) + "</table>"
        )
        if rows
        else '<p class="muted">No cluster yet.</p>'
    )
    specs = run.get("job_clusters") or []
    if specs:
        shown = [dict(c, new_cluster=_redacted_spec(c.get("new_cluster") or {})) for c in specs]
        table += f"<details><summary>Job cluster specs ({len(specs)})</summary><pre>{e(json.dumps(shown, indent=2))}</pre></details>"
    return table


def _redacted_spec(spec: dict) -> dict:
    out = dict(spec)
    for key in ("spark_conf", "spark_env_vars"):
        if out.get(key):
            out[key] = redact_map(out[key])
    return out


def _repairs(run: dict, repairs: list[dict]) -> str:
    if not repairs:
        return ""
    rows = []
    for i, h in enumerate(run.get("repair_history") or []):
        links = ", ".join(
            f'<a href="{e(task_href(run, {"run_id": tid}))}">{e(tid)}</a>' for tid in h.get("task_run_ids") or []
        )
        label = "Original run" if h.get("type") == "ORIGINAL" else f"Repair {i} (id {h.get('id')})"
        state = badge(h) if h.get("state") else '<span class="badge s-running">Running</span>'
        rows.append(
            f"<tr><td>{e(label)}</td><td>{e(fmt_time(h.get('start_time')))}</td><td>{e(fmt_time(h.get('end_time')))}</td>"
            f"<td>{state}</td><td>{links}</td></tr>"
        )
    return (
        '<h2>Repair history</h2><table class="grid repairs"><tr><th>Attempt</th><th>Started</th><th>Ended</th><th>Status</th>'
        "<th>Task runs</th></tr>" + "".join(rows) + "</table>"
    )


def task_page(data: PageData, task: dict, run: dict) -> str:
    st = task.get("state") or {}
    cluster = (task.get("cluster_instance") or {}).get("cluster_id")
    others = [
        a for a in data.attempts(run) if a.task["task_key"] == task["task_key"] and a.task["run_id"] != task["run_id"]
    ]
    spec_rows: list[tuple[str, str]] = []
    if task.get("notebook_task"):
        nt = task["notebook_task"]
        spec_rows.append(("Notebook", f"<code>{e(nt.get('notebook_path'))}</code>"))
        if nt.get("base_parameters"):
            spec_rows.append(
                (
                    "Parameters",
                    "".join(f"<code>{e(k)}={e(v)}</code> " for k, v in redact_map(nt["base_parameters"]).items()),
                )
            )
    if task.get("spark_python_task"):
        pt = task["spark_python_task"]
        spec_rows.append(("Python file", f"<code>{e(pt.get('python_file'))}</code>"))
        spec_rows.append(("Parameters", f"<code>{e(' '.join(pt.get('parameters') or []))}</code>"))
    if task.get("python_wheel_task"):
        wt = task["python_wheel_task"]
        spec_rows.append(("Entry point", f"<code>{e(wt.get('package_name'))}:{e(wt.get('entry_point'))}</code>"))
        named = redact_map(wt.get("named_parameters") or {})
        args = [*(wt.get("parameters") or []), *(f"--{k}={v}" for k, v in named.items())]
        spec_rows.append(("Parameters", f"<code>{e(' '.join(args))}</code>"))
    details = kv(
        [
            ("Job run", f'<a href="{e(run_href(run))}">{e(run.get("run_name") or "Run")} · run {e(run["run_id"])}</a>'),
            ("Task run ID", e(task["run_id"])),
            ("Status", _status_cell(task, st)),
            ("Depends on", ", ".join(e(d["task_key"]) for d in task.get("depends_on") or []) or "—"),
            ("Run if", e(task.get("run_if") or "ALL_SUCCESS")),
            *spec_rows,
            ("Cluster", f'<a href="/compute/clusters/{e(cluster)}">{e(cluster)}</a>' if cluster else "—"),
            ("Started", e(fmt_time(task.get("start_time")))),
            ("Ended", e(fmt_time(task.get("end_time")))),
            ("Waiting for the cluster", e(fmt_duration(task.get("setup_duration")) if task.get("start_time") else "—")),
            ("Duration", e(_duration(task))),
        ]
    )
    if others:
        links = ", ".join(
            f'<a href="{e(task_href(run, a.task))}">run {e(a.task["run_id"])}</a> {badge(a.task)}' for a in others
        )
        details += f'<p class="muted">Other attempts of this task: {links}</p>'
    cls, _ = state_of(task)
    body = (
        f'<h1>{e(task["task_key"])} {badge(task)}</h1><div class="card">{details}</div>'
        f"<h2>Output</h2>{task_output(data, task)}"
    )
    crumbs = [*_crumbs(run), (task["task_key"], "")]
    return layout(
        f"{task['task_key']} · run {task['run_id']}",
        body,
        crumbs=crumbs,
        refresh=REFRESH_SECONDS if is_active(task) or is_active(run) else None,
        logged_in=True,
    )


def _status_cell(doc: dict, state: dict) -> str:
    """A run's or task run's state badge, followed by Databricks' state message when there is one."""
    message = state.get("state_message")
    return badge(doc) + (f' <span class="muted">{e(message)}</span>' if message else "")
