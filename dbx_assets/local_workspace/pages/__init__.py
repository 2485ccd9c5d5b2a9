"""The workspace's human pages: `/` (jobs, runs, compute), `/jobs/<job>/runs/<id>` (a run or a
task run: run_page_url points here), `/compute/clusters/<id>`, and `/login` + `/logout`.

Only a logged-in browser (or a bearer-token client) sees a page; see auth.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..engine.state import StateStore
from ..http.http_types import Request, Response, Router
from .auth import PageAuth
from .data import PageData
from .html import e, html_response, layout
from .index import cluster_page, index_page
from .run import run_page, task_page


def _not_found(what: str) -> Response:
    body = f'<h1>Not found</h1><p>{e(what)} does not exist in this workspace.</p><p><a href="/">Back to jobs &amp; runs</a></p>'
    return html_response(layout("Not found", body, crumbs=[("Jobs & runs", "/")], logged_in=True), 404)


def _int(req: Request, name: str) -> int | None:
    value = (req.query.get(name) or [""])[-1]
    return int(value) if value.isdigit() else None


def register(
    d: Router,
    store: StateStore,
    *,
    token: str,
    task_runs_dir: Path,
    artifacts_link: Callable[[int], str],
    secure_cookie: bool = False,
) -> PageAuth:
    auth = PageAuth(token, secure_cookie)
    data = PageData(store, task_runs_dir, artifacts_link)

    def scrubbed(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Behind the login, and never the token in a page (a task could have printed it)."""

        def page(req: Request) -> Response:
            resp = handler(req)
            if token.encode() in resp.body:
                resp.body = resp.body.replace(token.encode(), b"[REDACTED]")
            return resp

        return auth.guard(page)

    def index(req: Request) -> Response:
        return html_response(index_page(data, _int(req, "page") or 1, _int(req, "job_id")))

    def run_or_task(req: Request) -> Response:
        run_id = int(req.path_params["run_id"])
        run = data.run(run_id)
        if run is not None:
            return html_response(run_page(data, run))
        found = data.task_view(run_id)
        if found is None:
            return _not_found(f"Run {run_id}")
        return html_response(task_page(data, *found))

    def cluster(req: Request) -> Response:
        doc = data.cluster(req.path_params["cluster_id"])
        return html_response(cluster_page(data, doc)) if doc else _not_found(f"Cluster {req.path_params['cluster_id']}")

    d.public_route("GET", "/", scrubbed(index))
    d.public_route("GET", r"/jobs/(?P<job>[^/]+)/runs/(?P<run_id>\d+)", scrubbed(run_or_task))
    d.public_route("GET", r"/compute/clusters/(?P<cluster_id>[\w.-]+)", scrubbed(cluster))
    d.public_route("GET", "/login", auth.login_get)
    d.public_route("POST", "/login", auth.login_post)
    d.public_route("POST", "/logout", auth.logout)
    return auth
