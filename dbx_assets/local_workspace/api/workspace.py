"""Workspace 2.0: notebooks and files stored as plain files under paths.workspace.

Object types and languages live in the state db; the bytes live on disk so a synced
dbt project is a real directory the cluster runtime can use. `/Workspace/x` == `/x`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from databricks.sdk.service import workspace

from ..engine.clock import Clock
from ..engine.errors import ApiError, already_exists, invalid, not_found, require
from ..engine.state import StateStore
from ..http.http_types import Request, Response, Router, q_bool
from ..http.request_shapes import check_body
from .storage import b64decode, b64encode, local_path, multipart_upload, normalize

_API = workspace.WorkspaceAPI

NOTEBOOK_HEADERS = {
    "PYTHON": "# Databricks notebook source",
    "SQL": "-- Databricks notebook source",
    "SCALA": "// Databricks notebook source",
    "R": "# Databricks notebook source",
}
EXTENSIONS = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}
FILE_EXT = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}


class Workspace:
    def __init__(self, root: Path, store: StateStore):
        self.root = root
        self.store = store
        self.clock = Clock()  # the dispatcher's, from register()

    # -- lookup used by the scheduler too ------------------------------------------------
    def path_of(self, api_path: str) -> str:
        return normalize(api_path, strip_prefixes=("/Workspace",))

    def local(self, api_path: str) -> Path:
        return local_path(self.root, self.path_of(api_path))

    def meta(self, path: str) -> dict | None:
        return self.store.get("wsobj", path)

    def info(self, path: str) -> dict:
        p = local_path(self.root, path)
        if not p.exists() and not p.is_symlink():
            raise not_found(f"Path ({path}) doesn't exist.")
        meta = self.meta(path) or {}
        st = p.stat()
        obj: dict[str, Any]
        if p.is_dir():
            obj = {"object_type": "DIRECTORY", "path": path}
        else:
            obj = {"object_type": meta.get("object_type", "FILE"), "path": path, "size": st.st_size}
            if meta.get("language"):
                obj["language"] = meta["language"]
        obj["object_id"] = meta.get("object_id") or self._assign_id(path, meta)
        obj["created_at"] = meta.get("created_at", int(st.st_ctime * 1000))
        obj["modified_at"] = int(st.st_mtime * 1000)
        obj["resource_id"] = str(obj["object_id"])
        # Through the SDK's ObjectInfo so the shape cannot drift; times on the workspace clock.
        return self.clock.shift(workspace.ObjectInfo.from_dict(obj).as_dict())

    def _assign_id(self, path: str, meta: dict) -> int:
        meta = dict(meta, object_id=self.store.next_id("workspace_object", 1000))
        self.store.put("wsobj", path, meta)
        return meta["object_id"]

    def read_notebook(self, api_path: str) -> str:
        path = self.path_of(api_path)
        meta = self.meta(path)
        p = local_path(self.root, path)
        if not p.is_file() or not meta or meta.get("object_type") != "NOTEBOOK":
            raise not_found(f"Notebook ({path}) doesn't exist.")
        return p.read_text()

    # -- handlers ---------------------------------------------------------------------------
    def register(self, d: Router) -> None:
        self.clock = d.clock
        base = "/api/2.0/workspace"
        d.route("POST", base + "/import", self.import_)
        d.route("GET", base + "/export", self.export)
        d.route("GET", base + "/get-status", self.get_status)
        d.route("GET", base + "/list", self.list)
        d.route("POST", base + "/mkdirs", self.mkdirs)
        d.route("POST", base + "/delete", self.delete)

    def import_(self, req: Request) -> dict:
        upload = multipart_upload(req, "content")
        if upload is not None:
            content, body = upload
            check_body(body, _API.import_)
        else:
            body = check_body(req.json(), _API.import_)
            content = b64decode(body.get("content") or "", "content")
        path = self.path_of(require(body, "path"))
        fmt = (body.get("format") or "SOURCE").upper()
        language = (body.get("language") or "").upper() or None
        overwrite = q_bool(body.get("overwrite", False))
        if fmt not in ("SOURCE", "AUTO", "RAW"):
            raise invalid(f"Import format {fmt} is not supported by the local workspace; use SOURCE, AUTO or RAW.")
        object_type = "FILE"
        if fmt == "SOURCE":
            if not language:
                raise invalid("The language field is required when importing with format SOURCE.")
            object_type = "NOTEBOOK"
        elif fmt == "AUTO":
            stem, ext = os.path.splitext(path)
            lang = EXTENSIONS.get(ext.lower())
            first_line = content.split(b"\n", 1)[0].decode(errors="replace").strip()
            if lang and first_line == NOTEBOOK_HEADERS[lang]:
                object_type, language, path = "NOTEBOOK", lang, stem
            else:
                language = None
        if object_type == "NOTEBOOK":
            header = NOTEBOOK_HEADERS.get(language or "PYTHON", NOTEBOOK_HEADERS["PYTHON"])
            text = content.decode(errors="replace")
            if not text.lstrip().startswith(header):
                content = (header + "\n" + text).encode()
        if path == "/":
            raise invalid("Cannot import to the workspace root.")
        target = local_path(self.root, path)
        parent = os.path.dirname(path)
        if not local_path(self.root, parent).is_dir():
            raise not_found(f"The parent folder ({parent}) does not exist.")
        if target.exists():
            if target.is_dir():
                raise already_exists(f"Path ({path}) already exists as a directory.")
            if not overwrite:
                raise already_exists(f"Path ({path}) already exists.")
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(content)
        os.replace(tmp, target)
        old = self.meta(path) or {}
        now = int(time.time() * 1000)
        self.store.put(
            "wsobj",
            path,
            {
                "object_type": object_type,
                "language": language if object_type == "NOTEBOOK" else None,
                "object_id": old.get("object_id") or self.store.next_id("workspace_object", 1000),
                "created_at": old.get("created_at", now),
            },
        )
        return {}

    def export(self, req: Request):
        params = req.params()
        path = self.path_of(require(params, "path"))
        fmt = (params.get("format") or "SOURCE").upper()
        info = self.info(path)
        if info["object_type"] == "DIRECTORY":
            raise invalid(f"Exporting directory {path} is only possible in DBC format, which is not supported locally.")
        if fmt not in ("SOURCE", "AUTO", "RAW"):
            raise invalid(f"Export format {fmt} is not supported by the local workspace; use SOURCE, AUTO or RAW.")
        data = local_path(self.root, path).read_bytes()
        if q_bool(params.get("direct_download", False)):
            return Response(200, data, {"Content-Type": "application/octet-stream"})
        out = {"content": b64encode(data)}
        if info["object_type"] == "NOTEBOOK":
            out["file_type"] = FILE_EXT.get(info.get("language", "PYTHON"), "py")
        return out

    def get_status(self, req: Request) -> dict:
        return self.info(self.path_of(require(req.params(), "path")))

    def list(self, req: Request) -> dict:
        path = self.path_of(require(req.params(), "path"))
        info = self.info(path)
        if info["object_type"] != "DIRECTORY":
            return {"objects": [info]}
        p = local_path(self.root, path)
        objects = [
            self.info(path.rstrip("/") + "/" + child.name)
            for child in sorted(p.iterdir())
            if not child.name.startswith(".") or child.name not in (".", "..")
            if not (child.name.startswith(".") and ".tmp" in child.name)
        ]
        return {"objects": objects} if objects else {}

    def mkdirs(self, req: Request) -> dict:
        path = self.path_of(require(check_body(req.json(), _API.mkdirs), "path"))
        target = local_path(self.root, path)
        cur = self.root
        for part in Path(path.lstrip("/")).parts:
            cur = cur / part
            if cur.exists() and not cur.is_dir():
                raise already_exists(
                    f"Cannot create directory {path}: a non-directory object exists at {cur.relative_to(self.root)}."
                )
        target.mkdir(parents=True, exist_ok=True)
        return {}

    def delete(self, req: Request) -> dict:
        body = check_body(req.json(), _API.delete)
        path = self.path_of(require(body, "path"))
        recursive = q_bool(body.get("recursive", False))
        target = local_path(self.root, path)
        if not target.exists():
            raise not_found(f"Path ({path}) doesn't exist.")
        if target.is_dir():
            if path == "/":
                raise invalid("Cannot delete the workspace root.")
            if any(target.iterdir()) and not recursive:
                raise ApiError(
                    400, "DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty; pass recursive=true to delete it."
                )
            shutil.rmtree(target)
            for key in list(self.store.keys_with_prefix("wsobj", path + "/")):
                self.store.delete("wsobj", key)
        else:
            target.unlink()
        self.store.delete("wsobj", path)
        return {}
