"""The HTTP front door: parse requests, authenticate, route, shape errors.

Every /api request goes through `Dispatcher.dispatch` — the one place a later fault
injection feature (429/5xx/latency/drops) hooks in. Handlers are plain functions
`(Request) -> Response | dict | None` registered by the API modules.
"""

from __future__ import annotations

import hmac
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

# Re-exported: API modules written against server.py keep working.
__all__ = ["Dispatcher", "HttpServer", "Handler", "Request", "Response", "q_bool", "q_int"]

log = logging.getLogger("dbx_local_workspace")


class Dispatcher:
    """Routes, auth and error shaping for every /api request."""

    def __init__(self, token: str):
        self._token = token
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._public: list[tuple[str, re.Pattern, Handler]] = []
        self.faults: FaultHook | None = None  # set by the app; decides 429/5xx/drops per call
        # The clock every API reports times in; the fault injector shifts it (clock skew).
        self.clock = Clock()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"\Z"), handler))

    def public_route(self, method: str, pattern: str, handler: Handler) -> None:
        """Unauthenticated pages (the human-readable run page); loopback only by binding."""
        self._public.append((method, re.compile(pattern + r"\Z"), handler))

    def dispatch(self, req: Request) -> Response:
        try:
            if not req.path.startswith("/api/"):
                return self._call(self._public, req) or Response.json(
                    endpoint_not_found(req.method, req.path).body(), 404
                )
            self._authenticate(req)
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

    def _authenticate(self, req: Request) -> None:
        auth = req.headers.get("authorization")
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

    def _handle(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._read_body(headers)
        except ValueError as e:
            self._send(Response.json({"error_code": "MALFORMED_REQUEST", "message": str(e)}, 400))
            return
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), headers, body)
        resp = self.dispatcher.dispatch(req)
        if resp.drop_connection:
            self.close_connection = True  # the socket closes with no response written
            log.info("%s %s -> connection dropped (injected fault)", self.command, parts.path)
            return
        self._send(resp)
        # Never log headers: they carry the bearer token.
        log.info("%s %s -> %d (%.0f ms)", self.command, parts.path, resp.status, (time.monotonic() - started) * 1000)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline().strip().split(b";")[0]
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(headers.get("content-length") or 0)
        if length < 0:
            raise ValueError("Negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if "Content-Length" not in resp.headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def date_time_string(self, timestamp=None):  # the Date header follows the (possibly skewed) workspace clock
        return formatdate(self.dispatcher.clock.now_ms() / 1000 if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format, *args):  # the default prints to stderr with the raw request line
        pass


class HttpServer:
    """A threading HTTP(S) server on 127.0.0.1 that hands every request to a Dispatcher."""

    def __init__(self, dispatcher: Dispatcher, port: int = 0, ssl_context: ssl.SSLContext | None = None):
        handler = type("BoundHandler", (_HttpHandler,), {"dispatcher": dispatcher})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
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
