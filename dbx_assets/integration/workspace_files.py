"""The few file operations the step needs in a workspace (Pipes channels, delivered cluster logs), on
DBFS (DBFS 2.0 API) or on a Unity Catalog volume (Files API), through the SDK. Each method is one API
call (a listing may page; a read of more than 1 MB from DBFS takes one call per MB)."""

from __future__ import annotations

import base64
import io
import posixpath
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: definitions load without the SDK and the step's runner
    from databricks.sdk import WorkspaceClient


MAX_CHUNK_BYTES = 1024 * 1024  # DBFS read/put take at most 1 MB per call


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    modified: int  # ms; with the size, tells a rewritten file (a retried task's chunk) from one read already


class WorkspaceFiles:
    """DBFS or volume files, chosen by the path: `/Volumes/...` goes through the Files API."""

    def __init__(self, client: WorkspaceClient):
        self._client = client
        # The generated DBFS API: one call per list (the SDK's convenience wrapper adds a get-status).
        from databricks.sdk.service.files import DbfsAPI

        self._dbfs = DbfsAPI(client.api_client)

    def write(self, path: str, content: bytes) -> None:
        if path.startswith("/Volumes/"):
            self._client.files.upload(path, io.BytesIO(content), overwrite=True)
        elif len(content) <= MAX_CHUNK_BYTES:
            self._client.dbfs.put(path, contents=base64.b64encode(content).decode(), overwrite=True)
        else:  # a context this large is unusual (thousands of partitions); the SDK streams it in blocks
            self._client.dbfs.upload(path, io.BytesIO(content), overwrite=True)

    def make_dir(self, path: str) -> None:
        if path.startswith("/Volumes/"):
            self._client.files.create_directory(path)
        else:
            self._client.dbfs.mkdirs(path)

    def list(self, path: str) -> list[StoredFile]:
        """Files directly in `path`; none when it does not exist (yet)."""
        from databricks.sdk.errors import NotFound

        try:
            if path.startswith("/Volumes/"):
                return [
                    StoredFile(e.name or posixpath.basename(e.path or ""), e.file_size or 0, e.last_modified or 0)
                    for e in self._client.files.list_directory_contents(path)
                    if not e.is_directory
                ]
            return [
                StoredFile(posixpath.basename(f.path or ""), f.file_size or 0, f.modification_time or 0)
                for f in self._dbfs.list(path)
                if not f.is_dir
            ]
        except NotFound:
            return []

    def read(self, path: str) -> bytes:
        if path.startswith("/Volumes/"):
            contents = self._client.files.download(path).contents
            return contents.read() if contents is not None else b""
        data = b""
        while True:  # one call for a chunk under 1 MB, the usual case
            answer = self._client.dbfs.read(path, offset=len(data), length=MAX_CHUNK_BYTES)
            block = base64.b64decode(answer.data or "")
            data += block
            if len(block) < MAX_CHUNK_BYTES:
                return data

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a file: only what was added since an earlier read."""
        if not path.startswith("/Volumes/"):
            chunks = []
            offset = start
            while offset < end:
                answer = self._client.dbfs.read(path, offset=offset, length=min(MAX_CHUNK_BYTES, end - offset))
                chunk = base64.b64decode(answer.data or "")
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
            return b"".join(chunks)
        # The Files API serves byte ranges (the SDK's own resumable download sends the same header).
        ranged = self._client.api_client.do(
            "GET",
            f"/api/2.0/fs/files{urllib.parse.quote(path)}",
            headers={"Range": f"bytes={start}-{end - 1}", "Accept": "application/octet-stream"},
            raw=True,
        )
        contents = ranged.get("contents") if isinstance(ranged, dict) else None
        return bytes(contents.read()) if contents is not None else b""
