"""Who may see the pages: a browser session started with the workspace token.

`/login` takes the token in a form (POST body, never a URL) or a one-time code that the
authenticated API mints (`POST /api/2.0/local/page-login`, used by `login-url`), and sets an
HttpOnly, SameSite=Strict cookie holding a random session id (never the token). A page
request without a valid session (or a bearer token, for scripts) gets 401 with the login
form, so a browser lands on the form and comes back to the page it asked for.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote

from ..http.http_types import Request, Response
from .html import e, html_response, layout

COOKIE = "dbx_local_session"
SESSION_SECONDS = 12 * 3600
ONCE_SECONDS = 300
PageHandler = Callable[[Request], Response]


class PageAuth:
    def __init__(self, token: str, secure_cookie: bool = False):
        self._token = token
        self._secure = secure_cookie
        self._sessions: dict[str, float] = {}  # session id -> expiry (monotonic)
        self._once: dict[str, float] = {}  # one-time login code -> expiry
        self._lock = threading.Lock()

    # -- sessions -------------------------------------------------------------------------------
    def mint_once(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._once[code] = time.monotonic() + ONCE_SECONDS
        return code

    def _new_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: v for k, v in self._sessions.items() if v > now}
            self._sessions[sid] = now + SESSION_SECONDS
        return sid

    def _use_once(self, code: str) -> bool:
        with self._lock:
            expiry = self._once.pop(code, None)  # single use, even when it has expired
        return expiry is not None and expiry > time.monotonic()

    def authenticated(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token.encode()):
            return True
        sid = _cookie(req, COOKIE)
        if not sid:
            return False
        with self._lock:
            expiry = self._sessions.get(sid)
        return expiry is not None and expiry > time.monotonic()

    def guard(self, handler: PageHandler) -> PageHandler:
        def guarded(req: Request) -> Response:
            if not self.authenticated(req):
                target = req.path + (("?" + _query_string(req)) if req.query else "")
                return _login_page(target, 401, "Log in to see this page.")
            return handler(req)

        return guarded

    # -- the /login and /logout endpoints -----------------------------------------------------------
    def login_get(self, req: Request) -> Response:
        target = _local_path((req.query.get("next") or ["/"])[-1])
        code = (req.query.get("once") or [""])[-1]
        if code:
            if self._use_once(code):
                return self._start_session(target)
            return _login_page(target, 403, "This login link has expired or was already used. Paste the token instead.")
        return _login_page(target, 200, "")

    def login_post(self, req: Request) -> Response:
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        target = _local_path((form.get("next") or ["/"])[-1])
        token = (form.get("token") or [""])[-1].strip()
        if token and hmac.compare_digest(token.encode(), self._token.encode()):
            return self._start_session(target)
        return _login_page(target, 403, "Invalid access token.")

    def logout(self, req: Request) -> Response:
        sid = _cookie(req, COOKIE)
        with self._lock:
            self._sessions.pop(sid or "", None)
        return Response(
            303, b"", {"Location": "/login", "Set-Cookie": f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"}
        )

    def _start_session(self, target: str) -> Response:
        cookie = f"{COOKIE}={self._new_session()}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"
        if self._secure:
            cookie += "; Secure"
        # 303 to the page: the code (or form post) never stays in the address bar or history.
        return Response(303, b"", {"Location": target, "Set-Cookie": cookie, "Cache-Control": "no-store"})


def _cookie(req: Request, name: str) -> str | None:
    raw = req.headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _query_string(req: Request) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, vs in req.query.items() for v in vs)


def _local_path(target: str) -> str:
    """Only a path on this server: no open redirect to another host."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _login_page(target: str, status: int, message: str) -> Response:
    body = f"""
<div class="login">
  <h1>Local Databricks workspace</h1>
  {f'<p class="login-msg">{e(message)}</p>' if message else ""}
  <form method="post" action="/login">
    <label for="token">Access token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" autofocus
           placeholder="the workspace's token (DIR/connection.json)">
    <input type="hidden" name="next" value="{e(target)}">
    <button type="submit">Log in</button>
  </form>
  <p class="muted">Or open the link printed by
  <code>python -m dbx_assets.local_workspace login-url --state-dir DIR</code> (make dev prints one).</p>
</div>"""
    return html_response(layout("Log in", body, crumbs=[]), status)
