"""Files API for Unity Catalog volumes: /Volumes/<catalog>/<schema>/<volume>/... under paths.volumes."""

from __future__ import annotations

import os
import secrets
import shutil
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote

from ..engine.clock import Clock
from ..engine.errors import ApiError, invalid
from ..http.http_types import Request, Response, Router, q_bool, q_int
from ..http.request_body import MB, BodyLimit
from .storage import local_path, mtime_ms, normalize

_NOT_FOUND = "NOT_FOUND"
# "Uploads a file of up to 5 GiB" (Files API, one PUT): spooled to disk as it arrives, never held in memory.
UPLOAD_BODY = BodyLimit(max_bytes=5 * 1024 * MB, spool=True)


def _missing(what: str, path: str) -> ApiError:
    return ApiError(404, _NOT_FOUND, f"The {what} being accessed is not found: {path}")


class VolumeFiles:
    def __init__(self, root: Path):
        self.root = root
        self.clock = Clock()  # the dispatcher's, from register()

    def register(self, d: Router) -> None:
        self.clock = d.clock
        f = r"/api/2\.0/fs/files(?P<path>/.*)"
        d.route("PUT", f, self.upload, body=UPLOAD_BODY)
        d.route("GET", f, self.download)  # HEAD is routed to GET and answered without a body
        d.route("DELETE", f, self.delete)
        d.route("POST", f, self.multipart_action)
        dirs = r"/api/2\.0/fs/directories(?P<path>/.*)"
        d.route("GET", dirs, self.list_or_head_dir)
        d.route("PUT", dirs, self.mkdir)
        d.route("DELETE", dirs, self.rmdir)

    def _resolve(self, req: Request) -> tuple[str, Path]:
        path = normalize(unquote(req.path_params["path"]))
        parts = path.strip("/").split("/")
        if parts[0] != "Volumes" or len(parts) < 4:
            raise invalid(f"Path must look like /Volumes/<catalog>/<schema>/<volume>/...: {path}")
        return path, local_path(self.root, "/" + "/".join(parts[1:]))

    def upload(self, req: Request) -> Response:
        path, p = self._resolve(req)
        overwrite = q_bool(req.query.get("overwrite", ["true"])[-1])
        if p.is_dir():
            raise ApiError(409, "ALREADY_EXISTS", f"A directory exists at {path}")
        if p.exists() and not overwrite:
            raise ApiError(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
        p.parent.mkdir(parents=True, exist_ok=True)  # the Files API creates missing parents
        tmp = p.with_name(f".upload-{secrets.token_hex(6)}")
        with open(tmp, "wb") as out:
            if req.body_file is not None:
                shutil.copyfileobj(req.body_file, out)
            else:
                out.write(req.body)
        os.replace(tmp, p)
        return Response(204)

    def multipart_action(self, req: Request):
        # Multipart/resumable uploads (files >= 50 MiB in SDK 0.156) are not supported locally.
        raise ApiError(
            501,
            "NOT_IMPLEMENTED",
            "Multipart upload is not supported by the local workspace; upload files under 50 MiB.",
        )

    def download(self, req: Request) -> Response:
        path, p = self._resolve(req)
        if not p.is_file():
            raise _missing("file", path)
        data = p.read_bytes()
        status, headers = 200, {}
        span = _byte_range(req.headers.get("range", ""), len(data))
        if span is not None:  # an unparsable Range is ignored (the whole file), as HTTP allows
            start, end = span
            if start >= len(data) and len(data) > 0:
                raise ApiError(416, "INVALID_PARAMETER_VALUE", f"Range not satisfiable for {path} ({len(data)} bytes)")
            headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
            data = data[start : end + 1]
            status = 206
        headers.update(
            {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
                "Last-Modified": formatdate(self.clock.report(mtime_ms(p)) / 1000, usegmt=True),
            }
        )
        return Response(status, data, headers)

    def delete(self, req: Request) -> Response:
        path, p = self._resolve(req)
        if not p.is_file():
            raise _missing("file", path)
        p.unlink()
        return Response(204)

    def list_or_head_dir(self, req: Request) -> Response | dict:
        path, p = self._resolve(req)
        if not p.is_dir():
            raise _missing("directory", path)
        if req.method == "HEAD":
            return Response(200)
        params = req.params()
        page_size = q_int(params, "page_size", 1000) or 1000
        if page_size < 0:
            raise invalid("page_size must be positive")
        start = q_int(params, "page_token", 0) or 0
        if start < 0:
            raise invalid("Invalid page_token")
        children = sorted(c for c in p.iterdir() if not c.name.startswith(".upload-"))
        page = children[start : start + page_size]
        contents = []
        for c in page:
            entry = {"path": f"{path.rstrip('/')}/{c.name}", "name": c.name, "is_directory": c.is_dir()}
            if not c.is_dir():
                entry["file_size"] = c.stat().st_size
                entry["last_modified"] = self.clock.report(mtime_ms(c))
            contents.append(entry)
        out: dict = {"contents": contents}
        if start + page_size < len(children):
            out["next_page_token"] = str(start + page_size)
        return out

    def mkdir(self, req: Request) -> Response:
        path, p = self._resolve(req)
        if p.exists() and not p.is_dir():
            raise ApiError(409, "ALREADY_EXISTS", f"A file exists at {path}")
        p.mkdir(parents=True, exist_ok=True)
        return Response(204)

    def rmdir(self, req: Request) -> Response:
        path, p = self._resolve(req)
        if not p.is_dir():
            raise _missing("directory", path)
        if any(p.iterdir()):
            raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Directory {path} is not empty; delete its contents first.")
        shutil.rmtree(p)
        return Response(204)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=START-[END]` or `bytes=-SUFFIX` as inclusive (start, end); None when absent or unparsable."""
    if not header.startswith("bytes="):
        return None
    first, _, last = header[len("bytes=") :].split(",")[0].strip().partition("-")
    try:
        if not first:
            suffix = int(last)
            return (max(0, size - suffix), size - 1) if suffix > 0 else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    return (start, end) if 0 <= start <= end else None
