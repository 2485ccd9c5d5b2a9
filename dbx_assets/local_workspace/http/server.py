"""The HTTP front door: parse requests, authenticate, route, shape errors.

Every /api request goes through `Dispatcher.dispatch` — the one place a later fault
injection feature (429/5xx/latency/drops) hooks in. Handlers are plain functions
`(Request) -> Response | dict | None` registered by the API modules, each route with the
largest body it accepts (request_body.py: caps, read deadlines, spooling).

One thread per connection: a client that sends slowly, endlessly or too much holds only its
own thread, never more than its route's cap in memory, and only until its deadlines.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import ssl
import threading
import time
import traceback
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..engine.clock import Clock
from ..engine.errors import ApiError, endpoint_not_found, permission_denied, unauthenticated
from .http_types import FaultHook, Handler, Request, Response, q_bool, q_int
from .request_body import (
    BodyLimit,
    BodyTooLarge,
    DeadlineSocket,
    ReadTimeouts,
    RequestTimeout,
    check_declared,
    has_body,
    linger,
    read_body,
)

# Re-exported: API modules written against server.py keep working.
__all__ = ["Dispatcher", "HttpServer", "Handler", "Request", "Response", "q_bool", "q_int"]

log = logging.getLogger("dbx_local_workspace")


class Dispatcher:
    """Routes, auth and error shaping for every /api request."""

    def __init__(self, token: str):
        self._token = token
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._public: list[tuple[str, re.Pattern, Handler]] = []
        self._limits: list[tuple[str, re.Pattern, BodyLimit]] = []  # routes with their own body cap
        self.faults: FaultHook | None = None  # set by the app; decides 429/5xx/drops per call
        # The clock every API reports times in; the fault injector shifts it (clock skew).
        self.clock = Clock()
        # The workspace id Databricks sends on every API response (X-Databricks-Org-Id); set by the app.
        self.org_id: str | None = None

    def route(self, method: str, pattern: str, handler: Handler, *, body: BodyLimit | None = None) -> None:
        """Serve `handler` for `method` on paths matching `pattern`; `body` overrides the default cap."""
        compiled = re.compile(pattern + r"\Z")
        self._routes.append((method, compiled, handler))
        if body is not None:
            self._limits.append((method, compiled, body))

    def public_route(self, method: str, pattern: str, handler: Handler) -> None:
        """Unauthenticated pages (the human-readable run page); loopback only by binding."""
        self._public.append((method, re.compile(pattern + r"\Z"), handler))

    def body_limit(self, method: str, path: str) -> BodyLimit:
        """The largest body a request to `path` may carry (known before any of it is read)."""
        for m, pattern, limit in self._limits:
            if m == method and pattern.match(path):
                return limit
        return BodyLimit()

    def precheck(self, method: str, path: str, headers: dict[str, str]) -> Response | None:
        """Refuse from the headers alone, before reading a body: an API call without valid credentials."""
        if not path.startswith("/api/"):
            return None
        try:
            self._authenticate_headers(headers)
        except ApiError as e:
            return Response.json(e.body(), e.status)
        return None

    def dispatch(self, req: Request) -> Response:
        return self.stamp(req.path, self._dispatch(req))

    def stamp(self, path: str, resp: Response) -> Response:
        """Headers Databricks sends on every API response: the workspace id."""
        if self.org_id and path.startswith("/api/"):
            resp.headers.setdefault("X-Databricks-Org-Id", self.org_id)
        return resp

    def _dispatch(self, req: Request) -> Response:
        try:
            if not req.path.startswith("/api/"):
                return self._call(self._public, req) or Response.json(
                    endpoint_not_found(req.method, req.path).body(), 404
                )
            self._authenticate_headers(req.headers)
            faults = self.faults if self.faults is not None and not self.faults.exempt(req) else None
            if faults is not None:
                fault = faults.before(req)  # before any effect: a faulted call changes nothing
                if fault is not None:
                    return fault
            resp = self._call(self._routes, req)
            if resp is None:
                raise endpoint_not_found(req.method, req.path)
            return faults.after(req, resp) if faults is not None else resp
        except ApiError as e:
            return Response.json(e.body(), e.status)
        except Exception as e:  # a bug here must still answer in Databricks' shape
            log.error("internal error on %s %s: %s", req.method, req.path, traceback.format_exc())
            return Response.json({"error_code": "INTERNAL_ERROR", "message": f"{type(e).__name__}: {e}"}, 500)

    def _authenticate_headers(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization")
        if not auth:
            raise unauthenticated("No access token provided. Send 'Authorization: Bearer <token>'.")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token.encode()):
            raise permission_denied("Invalid access token.")

    @staticmethod
    def _call(routes, req: Request) -> Response | None:
        for method, pattern, handler in routes:
            m = pattern.match(req.path)
            if not m:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                continue
            req.path_params = m.groupdict()
            result = handler(req)
            if isinstance(result, Response):
                return result
            return Response.json(result or {})
        return None


class _HttpHandler(BaseHTTPRequestHandler):
    # Headers and body go out as separate writes; with Nagle on, the client's delayed ACK adds ~40 ms per call.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "DbxLocalWorkspace/1"
    dispatcher: Dispatcher  # set on the subclass per server
    timeouts: ReadTimeouts  # set on the subclass per server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):  # the TLS handshake, in this connection's thread
            self.connection.settimeout(self.timeouts.header_s)
            self.connection.do_handshake()
        # Every read of a request goes through its deadlines (keep-alive wait, headers, body).
        self._reader = DeadlineSocket(self.connection, self.timeouts)
        self.rfile = io.BufferedReader(self._reader, 64 * 1024)

    def handle_one_request(self) -> None:
        self._reader.await_request()
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        """Expect: 100-continue: refuse an over-cap or unauthenticated request instead of inviting its body."""
        refusal = self._refusal(urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()})
        if refusal is not None:
            self._refuse(refusal)
            return False
        return super().handle_expect_100()

    def _refusal(self, path: str, headers: dict[str, str]) -> Response | None:
        """An answer decided from the request line and headers alone, before any of the body is read."""
        try:
            check_declared(headers, self.dispatcher.body_limit(self.command, path))
        except (BodyTooLarge, ValueError) as e:  # over the route's cap; a malformed Content-Length
            return _bad_request(str(e))
        return self.dispatcher.precheck(self.command, path, headers)

    def _handle(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        refusal = self._refusal(parts.path, headers)
        if refusal is not None:
            if has_body(headers):
                self._refuse(refusal)  # and close: the unread body would be taken for the next request
            else:
                self._send(self.dispatcher.stamp(parts.path, refusal))  # nothing unread: the connection goes on
            self._log(parts.path, refusal.status, started)
            return
        self._reader.begin_body()
        try:
            body, body_file = read_body(self.rfile, headers, self.dispatcher.body_limit(self.command, parts.path))
        except BodyTooLarge as e:  # a chunked body past the cap: stop reading it
            resp = _bad_request(str(e))
        except RequestTimeout:
            resp = Response.json(
                {"error_code": "BAD_REQUEST", "message": "The request body was not received in time."}, 408
            )
        except ValueError as e:
            resp = _bad_request(str(e))  # the framing (chunks, Content-Length) is broken
        else:
            self._reader.end_body()
            try:
                self._serve(parts, headers, body, body_file, started)
            finally:
                if body_file is not None:
                    body_file.close()
            return
        self._refuse(resp)
        self._log(parts.path, resp.status, started)

    def _serve(self, parts, headers: dict[str, str], body: bytes, body_file, started: float) -> None:
        query = parse_qs(parts.query, keep_blank_values=True)
        req = Request(self.command, parts.path, query, headers, body, body_file=body_file)
        resp = self.dispatcher.dispatch(req)
        if resp.drop_connection:
            self.close_connection = True  # the socket closes with no response written
            log.info("%s %s -> connection dropped (injected fault)", self.command, parts.path)
            return
        self._send(resp)
        self._log(parts.path, resp.status, started)

    def _log(self, path: str, status: int, started: float) -> None:
        # Never log headers: they carry the bearer token.
        log.info("%s %s -> %d (%.0f ms)", self.command, path, status, (time.monotonic() - started) * 1000)

    def _refuse(self, resp: Response) -> None:
        """Answer without reading (the rest of) the body, then close: the connection's framing is lost."""
        self.close_connection = True
        self.dispatcher.stamp(urlsplit(self.path).path, resp)
        resp.headers["Connection"] = "close"
        try:
            self._send(resp)
            self.wfile.flush()
        except OSError:
            return
        linger(self.connection, self.timeouts.linger_s)

    def _send(self, resp: Response) -> None:
        self.connection.settimeout(self.timeouts.write_s)  # a client that does not read its answer
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if "Content-Length" not in resp.headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request the HTTP parser refuses (bad request line, oversized headers, unknown method),
        answered in Databricks' error shape instead of an HTML page."""
        error_code = "NOT_IMPLEMENTED" if code == 501 else "BAD_REQUEST"
        body = json.dumps({"error_code": error_code, "message": message or explain or "Bad request"}).encode()
        self.close_connection = True
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def date_time_string(self, timestamp=None):  # the Date header follows the (possibly skewed) workspace clock
        return formatdate(self.dispatcher.clock.now_ms() / 1000 if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format, *args):  # the default prints to stderr with the raw request line
        pass


def _bad_request(message: str) -> Response:
    return Response.json({"error_code": "BAD_REQUEST", "message": message}, 400)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A connection that failed (reset, TLS handshake, timeout) is the client's business: one log
        line, not socketserver's traceback on stderr."""
        log.info("connection from %s ended: %s", client_address[0], traceback.format_exc(limit=0).strip())


class HttpServer:
    """A threading HTTP(S) server on 127.0.0.1 that hands every request to a Dispatcher."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: ReadTimeouts | None = None,
    ):
        handler = type(
            "BoundHandler", (_HttpHandler,), {"dispatcher": dispatcher, "timeouts": timeouts or ReadTimeouts()}
        )
        self._httpd = _Server(("127.0.0.1", port), handler)  # one thread per connection
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            # The handshake happens in each connection's own thread (setup()), not in the accepting one,
            # where a client that never completes it would stop every other client from connecting.
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if ssl_context else "http"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start_background(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="local-workspace-http", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
