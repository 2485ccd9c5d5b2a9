"""The request/response types every API module and the fault injector share with the server.

Kept apart from server.py so that nothing needs the HTTP server to describe a handler
(faults.py used to import server.py while server.py referred back to it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import HTTP
from typing import BinaryIO, Protocol, overload

from ..engine.clock import Clock
from ..engine.errors import ApiError, invalid
from .request_body import BodyLimit


def drop_nulls(value):
    """JSON null means "unset" in Databricks' API: remove null members of objects, recursively."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    _form: dict | None = None
    # A body the route spools (BodyLimit(spool=True)): on disk, read it from here; `body` is then b"".
    body_file: BinaryIO | None = None

    def json(self) -> dict:
        if not self.body:
            return {}
        if self.is_multipart():
            return {k: v for k, v in self.form().items() if isinstance(v, str)}
        try:
            data = json.loads(self.body)
        except ValueError as e:
            raise ApiError(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request - {e}") from None
        if not isinstance(data, dict):
            raise ApiError(
                400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - expected a JSON object"
            )
        return drop_nulls(data)

    def params(self) -> dict:
        """Query parameters merged with a JSON body (GET endpoints accept either)."""
        merged: dict = {k: v[-1] for k, v in self.query.items()}
        if self.method != "GET" and self.body:
            merged.update(self.json())
        return merged

    def form(self) -> dict[str, str | bytes]:
        """multipart/form-data fields: text fields as str, file parts as bytes."""
        if self._form is None:
            ctype = self.headers.get("content-type", "")
            msg = message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.body, policy=HTTP)
            form: dict[str, str | bytes] = {}
            if msg.is_multipart():
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if not isinstance(name, str):  # no plain name (absent or RFC 2231): no field lookup finds it
                        continue
                    payload = part.get_payload(decode=True) or b""
                    assert isinstance(payload, bytes)  # decode=True: a leaf part's bytes
                    if part.get_filename() is None and name != "content" and name != "contents":
                        form[name] = payload.decode(errors="replace")
                    else:
                        form[name] = payload
            self._form = form
        return self._form

    def is_multipart(self) -> bool:
        return self.headers.get("content-type", "").startswith("multipart/form-data")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering (fault injection)

    @classmethod
    def dropped(cls) -> Response:
        return cls(0, drop_connection=True)

    @classmethod
    def json(cls, data: dict, status: int = 200) -> Response:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


Handler = Callable[[Request], "Response | dict | None"]


class Router(Protocol):
    """What an API module needs from the dispatcher to register itself."""

    clock: Clock

    def route(self, method: str, pattern: str, handler: Handler, *, body: BodyLimit | None = None) -> None: ...
    def public_route(self, method: str, pattern: str, handler: Handler) -> None: ...


class FaultHook(Protocol):
    """What the dispatcher needs from a fault injector."""

    def exempt(self, req: Request) -> bool: ...
    def before(self, req: Request) -> Response | None: ...
    def after(self, req: Request, resp: Response) -> Response: ...


def q_bool(value) -> bool:
    return str(value).lower() in ("true", "1") if not isinstance(value, bool) else value


@overload
def q_int(params: dict, name: str, default: int) -> int: ...
@overload
def q_int(params: dict, name: str, default: None = None) -> int | None: ...
def q_int(params: dict, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid(f"Parameter {name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Parameter {name} must be an integer, got {value!r}") from None
