"""Wires the human pages (this package) into a workspace, plus the API that mints one-time login links.

`run_page_url` in runs/get is `{host}/jobs/{job_id or "submit"}/runs/{run_id}` (a job run or a
task run), served by pages/run.py to a logged-in browser. `POST /api/2.0/local/page-login`
(bearer token, like every /api call) answers {"login_url": "{host}/login?once=<code>"}: a link
that works once, within five minutes, and starts a browser session; `login-url` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..engine.state import StateStore
from ..http.http_types import Request, Router
from . import register as register_pages
from .auth import ONCE_SECONDS, PageAuth

LOGIN_LINK_API = "/api/2.0/local/page-login"


def register(
    d: Router,
    store: StateStore,
    *,
    token: str,
    host: Callable[[], str],
    task_runs_dir: Path,
    artifacts_link: Callable[[int], str],
    secure_cookie: bool = False,
) -> PageAuth:
    auth = register_pages(
        d, store, token=token, task_runs_dir=task_runs_dir, artifacts_link=artifacts_link, secure_cookie=secure_cookie
    )

    def login_link(req: Request) -> dict:
        target = str(req.json().get("path") or "/")
        query = f"once={auth.mint_once()}"
        if target.startswith("/") and not target.startswith("//") and target != "/":
            from urllib.parse import quote

            query += "&next=" + quote(target, safe="/")
        return {"login_url": f"{host()}/login?{query}", "expires_in_seconds": ONCE_SECONDS}

    d.route("POST", LOGIN_LINK_API, login_link)
    return auth
