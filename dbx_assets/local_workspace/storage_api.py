"""Path mapping shared by the Workspace, DBFS and Files APIs: an API path becomes a
local path under one root, and nothing may escape that root."""

from __future__ import annotations

import posixpath
from pathlib import Path

from .http_errors import invalid
from .server import Request


def normalize(api_path: str, *, strip_prefixes: tuple[str, ...] = ()) -> str:
    """'/Workspace/a/../b/' -> '/b'. Always absolute, no trailing slash (except '/')."""
    if not api_path or not api_path.startswith("/"):
        raise invalid(f"Path must be absolute: {api_path!r}")
    p = posixpath.normpath(api_path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    for prefix in strip_prefixes:
        if p == prefix:
            return "/"
        if p.startswith(prefix + "/"):
            p = p[len(prefix) :]
    return p


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
