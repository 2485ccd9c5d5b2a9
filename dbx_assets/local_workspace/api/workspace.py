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
from ..http.request_body import MB, BodyLimit
from ..http.request_shapes import check_body
from ..runtime.notebook_formats import (
    FILE_EXTENSIONS,
    LANGUAGES,
    NotebookFormatError,
    header,
    is_ipynb,
    parse_ipynb,
    parse_source,
    to_ipynb,
    to_source,
)
from .storage import b64decode, b64encode, local_path, multipart_upload, normalize

_API = workspace.WorkspaceAPI

IMPORT_FORMATS = ("SOURCE", "JUPYTER", "AUTO", "RAW")
# "The base64-encoded content. This has a limit of 10 MB ... MAX_NOTEBOOK_SIZE_EXCEEDED" (workspace/import);
# Databricks' message names 10485760 bytes of file. The request carries it base64-encoded (4/3 larger)
# with the path and format, so this route's body cap is above the front door's default 10 MB.
MAX_IMPORT_BYTES = 10 * MB
IMPORT_BODY = BodyLimit(max_bytes=MAX_IMPORT_BYTES * 4 // 3 + 1 * MB)
EXPORT_FORMATS = ("SOURCE", "JUPYTER", "AUTO", "RAW")
EXTENSIONS = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}


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

    def notebook_language(self, api_path: str) -> str | None:
        return (self.meta(self.path_of(api_path)) or {}).get("language")

    # -- handlers ---------------------------------------------------------------------------
    def register(self, d: Router) -> None:
        self.clock = d.clock
        base = "/api/2.0/workspace"
        d.route("POST", base + "/import", self.import_, body=IMPORT_BODY)
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
        if len(content) > MAX_IMPORT_BYTES:
            raise ApiError(
                400,
                "MAX_NOTEBOOK_SIZE_EXCEEDED",
                f"File size imported is ({len(content)} bytes), exceeded max size ({MAX_IMPORT_BYTES} bytes)",
            )
        path = self.path_of(require(body, "path"))
        fmt = (body.get("format") or "SOURCE").upper()
        language = (body.get("language") or "").upper() or None
        overwrite = q_bool(body.get("overwrite", False))
        if fmt not in IMPORT_FORMATS:
            raise invalid(
                f"Import format {fmt} is not supported by the local workspace; use {', '.join(IMPORT_FORMATS)}."
            )
        if language is not None and language not in LANGUAGES:
            raise invalid(f"Unknown language {language}; use one of {', '.join(LANGUAGES)}.")
        object_type, language, path, content = self._imported(path, fmt, language, content)
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
        if fmt not in EXPORT_FORMATS:
            raise invalid(
                f"Export format {fmt} is not supported by the local workspace; use {', '.join(EXPORT_FORMATS)}."
            )
        data = local_path(self.root, path).read_bytes()
        file_type = None
        if info["object_type"] == "NOTEBOOK":
            data, file_type = self._exported(path, info.get("language") or "PYTHON", data, fmt)
        elif fmt == "JUPYTER":
            raise invalid(f"Only notebooks can be exported in JUPYTER format; {path} is a {info['object_type']}.")
        if q_bool(params.get("direct_download", False)):
            return Response(200, data, {"Content-Type": "application/octet-stream"})
        out = {"content": b64encode(data)}
        if file_type:
            out["file_type"] = file_type
        return out

    # -- notebook formats -----------------------------------------------------------------------
    @staticmethod
    def _imported(path: str, fmt: str, language: str | None, content: bytes) -> tuple[str, str | None, str, bytes]:
        """(object type, language, path, bytes to store) of an import. A notebook is stored as it came:
        SOURCE text (with its header) or IPYNB JSON; export converts between them."""
        stem, ext = os.path.splitext(path)
        if fmt == "SOURCE":
            if not language:
                raise invalid("The language field is required when importing with format SOURCE.")
            text = _text(content, path)
            if not text.lstrip("\ufeff").startswith(header(language)):
                content = (header(language) + "\n" + text).encode()
            return "NOTEBOOK", language, path, content
        if fmt == "JUPYTER" or (fmt == "AUTO" and ext.lower() == ".ipynb"):
            try:
                notebook = parse_ipynb(_text(content, path), path)
            except NotebookFormatError as exc:
                raise invalid(f"Cannot import {path} as a notebook: {exc}") from None
            return "NOTEBOOK", notebook.language, stem if fmt == "AUTO" else path, content
        if fmt == "AUTO":
            lang = EXTENSIONS.get(ext.lower())
            first_line = content.split(b"\n", 1)[0].decode(errors="replace").strip().lstrip("\ufeff")
            if lang and first_line == header(lang):
                return "NOTEBOOK", lang, stem, content
        return "FILE", None, path, content

    @staticmethod
    def _exported(path: str, language: str, data: bytes, fmt: str) -> tuple[bytes, str]:
        """A notebook's bytes and file_type in the export format: SOURCE and JUPYTER convert when the
        notebook is stored in the other one; AUTO and RAW give it as stored."""
        text = _text(data, path)
        stored_ipynb = is_ipynb(text)
        try:
            if fmt == "JUPYTER" and not stored_ipynb:
                notebook = parse_source(text, language, path)
                return to_ipynb(notebook, os.path.basename(path)).encode(), "ipynb"
            if fmt == "SOURCE" and stored_ipynb:
                notebook = parse_ipynb(text, path)
                return to_source(notebook).encode(), FILE_EXTENSIONS[notebook.language]
        except NotebookFormatError as exc:
            raise invalid(f"Cannot export {path} as {fmt}: {exc}") from None
        return data, "ipynb" if stored_ipynb else FILE_EXTENSIONS.get(language, "py")

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


def _text(content: bytes, path: str) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"The content of {path} is not UTF-8 text, which a notebook must be.") from None
