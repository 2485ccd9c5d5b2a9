"""A small human-readable page at `/` (no token; the server only listens on loopback):
jobs, runs and task states. run_page_url values (`/#job/J/run/R`) land here and the
page's script scrolls to / highlights that run."""

from __future__ import annotations

import html

from .server import Dispatcher, Request, Response
from .state import StateStore

_SCRIPT = """<script>
const m = location.hash.match(/job\\/([^/]+)\\/run\\/(\\d+)/);
if (m) { const el = document.getElementById('run-' + m[2]) || document.querySelector('[data-task-run="' + m[2] + '"]');
  if (el) { el.style.background = '#ffe9a8'; el.scrollIntoView(); } }
</script>"""


def register(d: Dispatcher, store: StateStore) -> None:
    def page(req: Request) -> Response:
        jobs = sorted((j for _, j in store.all("job")), key=lambda j: -j["job_id"])
        runs = sorted((r for _, r in store.all("run")), key=lambda r: -r["run_id"])[:200]
        e = html.escape
        rows = []
        for r in runs:
            st = r["state"]
            tasks = "".join(
                f"<li data-task-run='{t['run_id']}'>{e(t['task_key'])} (run {t['run_id']}): "
                f"{e(t['state'].get('life_cycle_state', ''))} {e(t['state'].get('result_state', '') or '')}"
                f" {e(t['state'].get('state_message', '') or '')}</li>"
                for t in r.get("tasks", [])
            )
            rows.append(
                f"<tr id='run-{r['run_id']}'><td>{r['run_id']}</td><td>{e(str(r.get('job_id', 'submit')))}</td>"
                f"<td>{e(r.get('run_name') or '')}</td><td>{e(st.get('life_cycle_state', ''))}</td>"
                f"<td>{e(st.get('result_state', '') or '')}</td><td>{e(st.get('state_message', '') or '')}</td><td><ul>{tasks}</ul></td></tr>"
            )
        job_rows = "".join(f"<li>{j['job_id']}: {e(j['settings'].get('name', ''))} ({len(j['settings'].get('tasks', []))} tasks)</li>" for j in jobs)
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Local Databricks workspace</title></head><body>"
            f"<h1>Local Databricks workspace</h1><h2>Jobs</h2><ul>{job_rows}</ul><h2>Runs</h2>"
            "<table border='1' cellpadding='4'><tr><th>run</th><th>job</th><th>name</th><th>life cycle</th><th>result</th>"
            f"<th>message</th><th>tasks</th></tr>{''.join(rows)}</table>{_SCRIPT}</body></html>"
        )
        return Response(200, body.encode(), {"Content-Type": "text/html; charset=utf-8"})

    d.public_route("GET", "/", page)
    d.public_route("GET", r"/jobs/[^/]+/runs/\d+", page)
