"""Path mapping shared by the Workspace, DBFS and Files APIs: an API path becomes a
local path under one root, and nothing may escape that root."""

from __future__ import annotations

import base64
import binascii
import posixpath
from pathlib import Path

from ..engine.errors import invalid
from ..http.http_types import Request


def normalize(api_path: str, *, strip_prefixes: tuple[str, ...] = ()) -> str:
    """'/Workspace/a/../b/' -> '/b'. Always absolute, no trailing slash (except '/')."""
    if not isinstance(api_path, str) or not api_path.startswith("/"):
        raise invalid(f"Path must be absolute: {api_path!r}")
    if "\x00" in api_path or len(api_path) > 4096 or any(len(part.encode()) > 255 for part in api_path.split("/")):
        raise invalid(f"Invalid path: {api_path[:200]!r}")
    p = posixpath.normpath(api_path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    for prefix in strip_prefixes:
        if p == prefix:
            return "/"
        if p.startswith(prefix + "/"):
            p = p[len(prefix) :]
    return p


def b64decode(text: str, field: str) -> bytes:
    """Base64 from a request field; bad input is a 400 naming the field, not a crash."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Field {field} is not valid base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def local_path(root: Path, api_path: str) -> Path:
    rel = api_path.lstrip("/")
    target = (root / rel) if rel else root
    resolved = target.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise invalid(f"Path escapes the storage root: {api_path!r}")
    return target


def mtime_ms(p: Path) -> int:
    return int(p.stat().st_mtime * 1000)


def multipart_upload(req: Request, file_field: str) -> tuple[bytes, dict[str, str]] | None:
    """The SDK's multipart form uploads: (the file field's bytes, the other fields); None for a JSON body."""
    if not req.is_multipart():
        return None
    form = req.form()
    data = form.get(file_field, b"")
    return (data.encode() if isinstance(data, str) else data), {k: v for k, v in form.items() if isinstance(v, str)}
