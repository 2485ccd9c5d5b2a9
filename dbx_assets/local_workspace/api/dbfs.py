"""DBFS 2.0 over a local directory (paths.dbfs): `dbfs:/x` and `/x` are the same file."""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from pathlib import Path

from databricks.sdk.service import files

from ..engine.clock import Clock
from ..engine.errors import ApiError, already_exists, invalid, not_found, require
from ..http.http_types import Request, Router, q_bool, q_int
from ..http.request_shapes import check_body
from .storage import b64decode, b64encode, local_path, mtime_ms, multipart_upload, normalize

_API = files.DbfsAPI

MAX_BLOCK = 1024 * 1024


def dbfs_api_path(path: str) -> str:
    if path.startswith("dbfs:"):
        path = path[len("dbfs:") :]
    return normalize(path)


class Dbfs:
    def __init__(self, root: Path):
        self.root = root
        self._handles: dict[int, tuple[Path, Path]] = {}  # handle -> (tmp file, target)
        self._lock = threading.Lock()
        self.clock = Clock()  # the dispatcher's, from register()

    def local(self, path: str) -> Path:
        return local_path(self.root, dbfs_api_path(path))

    def register(self, d: Router) -> None:
        self.clock = d.clock
        base = "/api/2.0/dbfs"
        for name, fn, method in [
            ("get-status", self.get_status, "GET"),
            ("list", self.list, "GET"),
            ("read", self.read, "GET"),
            ("put", self.put, "POST"),
            ("create", self.create, "POST"),
            ("add-block", self.add_block, "POST"),
            ("close", self.close, "POST"),
            ("mkdirs", self.mkdirs, "POST"),
            ("delete", self.delete, "POST"),
            ("move", self.move, "POST"),
        ]:
            d.route(method, f"{base}/{name}", fn)

    def _info(self, api_path: str, p: Path) -> dict:
        is_dir = p.is_dir()
        return files.FileInfo(
            path=api_path,
            is_dir=is_dir,
            file_size=0 if is_dir else p.stat().st_size,
            modification_time=self.clock.report(mtime_ms(p)),
        ).as_dict()

    def _existing(self, raw: str) -> tuple[str, Path]:
        path = dbfs_api_path(raw)
        p = local_path(self.root, path)
        if not p.exists():
            raise not_found(f"No file or directory exists on path dbfs:{path}.")
        return path, p

    def get_status(self, req: Request) -> dict:
        path, p = self._existing(require(req.params(), "path"))
        return self._info(path, p)

    def list(self, req: Request) -> dict:
        path, p = self._existing(require(req.params(), "path"))
        if not p.is_dir():
            return {"files": [self._info(path, p)]}
        prefix = path.rstrip("/")
        files = [
            self._info(f"{prefix}/{c.name}", c) for c in sorted(p.iterdir()) if not c.name.startswith(".dbfs-upload")
        ]
        return {"files": files} if files else {}

    def read(self, req: Request) -> dict:
        params = req.params()
        path, p = self._existing(require(params, "path"))
        if p.is_dir():
            raise invalid(f"Cannot read dbfs:{path}: it is a directory.")
        offset = q_int(params, "offset", 0)
        length = q_int(params, "length", 512 * 1024)
        if offset < 0 or length < 0:
            raise invalid("offset and length must be non-negative")
        if length > MAX_BLOCK:
            raise ApiError(
                400, "MAX_READ_SIZE_EXCEEDED", f"Cannot read more than {MAX_BLOCK} bytes per request (asked {length})."
            )
        with p.open("rb") as f:
            f.seek(offset)
            data = f.read(length)
        return {"bytes_read": len(data), "data": b64encode(data)}

    def _target_for_write(self, raw: str, overwrite: bool) -> tuple[str, Path]:
        path = dbfs_api_path(raw)
        if path == "/":
            raise invalid("Cannot write to the DBFS root.")
        p = local_path(self.root, path)
        if p.is_dir():
            raise already_exists(f"A directory already exists at dbfs:{path}.")
        if p.exists() and not overwrite:
            raise already_exists(f"A file or directory already exists at the input path dbfs:{path}.")
        p.parent.mkdir(parents=True, exist_ok=True)  # DBFS creates parents on write
        return path, p

    def put(self, req: Request) -> dict:
        upload = multipart_upload(req, "contents")
        if upload is not None:
            data, body = upload
            check_body(body, _API.put)
        else:
            body = check_body(req.json(), _API.put)
            encoded = body.get("contents") or ""
            if len(encoded) > (MAX_BLOCK * 4) // 3 + 4:
                raise ApiError(
                    400,
                    "MAX_BLOCK_SIZE_EXCEEDED",
                    f"Inline contents exceed {MAX_BLOCK} bytes; use create/add-block/close.",
                )
            data = b64decode(encoded, "contents")
            if len(data) > MAX_BLOCK:
                raise ApiError(
                    400,
                    "MAX_BLOCK_SIZE_EXCEEDED",
                    f"Inline contents exceed {MAX_BLOCK} bytes; use create/add-block/close.",
                )
        _, p = self._target_for_write(require(body, "path"), q_bool(body.get("overwrite", False)))
        tmp = p.with_name(f".dbfs-upload-{secrets.token_hex(6)}")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return {}

    def create(self, req: Request) -> dict:
        body = check_body(req.json(), _API.create)
        _, p = self._target_for_write(require(body, "path"), q_bool(body.get("overwrite", False)))
        tmp = p.with_name(f".dbfs-upload-{secrets.token_hex(6)}")
        tmp.write_bytes(b"")
        with self._lock:
            handle = secrets.randbelow(2**53)
            self._handles[handle] = (tmp, p)
        return {"handle": handle}

    def _handle(self, body: dict) -> tuple[Path, Path]:
        handle = q_int(body, "handle")
        with self._lock:
            entry = self._handles.get(handle) if handle is not None else None
        if entry is None:
            raise not_found(f"No open DBFS stream with handle {handle}; create one with /dbfs/create.")
        return entry

    def add_block(self, req: Request) -> dict:
        body = check_body(req.json(), _API.add_block)
        tmp, _ = self._handle(body)
        data = b64decode(body.get("data") or "", "data")
        if len(data) > MAX_BLOCK:
            raise ApiError(
                400, "MAX_BLOCK_SIZE_EXCEEDED", f"A block may hold at most {MAX_BLOCK} bytes (got {len(data)})."
            )
        with tmp.open("ab") as f:
            f.write(data)
        return {}

    def close(self, req: Request) -> dict:
        body = check_body(req.json(), _API.close)
        tmp, target = self._handle(body)
        with self._lock:
            self._handles.pop(int(body["handle"]), None)
        os.replace(tmp, target)
        return {}

    def mkdirs(self, req: Request) -> dict:
        path = dbfs_api_path(require(check_body(req.json(), _API.mkdirs), "path"))
        p = local_path(self.root, path)
        cur = p
        while cur != self.root:
            if cur.exists() and not cur.is_dir():
                raise already_exists(f"Cannot create directory dbfs:{path}: a file exists at that path or a parent.")
            cur = cur.parent
        p.mkdir(parents=True, exist_ok=True)
        return {}

    def delete(self, req: Request) -> dict:
        body = check_body(req.json(), _API.delete)
        path = dbfs_api_path(require(body, "path"))
        p = local_path(self.root, path)
        if not p.exists():
            return {}  # DBFS delete of a missing path succeeds
        if p.is_dir():
            if path == "/":
                raise invalid("Cannot delete the DBFS root.")
            if any(p.iterdir()) and not q_bool(body.get("recursive", False)):
                raise ApiError(
                    400, "IO_ERROR", f"Directory dbfs:{path} is not empty; pass recursive=true to delete it."
                )
            shutil.rmtree(p)
        else:
            p.unlink()
        return {}

    def move(self, req: Request) -> dict:
        body = check_body(req.json(), _API.move)
        src_path, src = self._existing(require(body, "source_path"))
        dst_path = dbfs_api_path(require(body, "destination_path"))
        dst = local_path(self.root, dst_path)
        if dst.exists():
            raise already_exists(f"A file or directory already exists at the destination path dbfs:{dst_path}.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return {}
