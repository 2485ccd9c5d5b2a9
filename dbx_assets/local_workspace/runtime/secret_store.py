"""The workspace's secret scopes and values on disk: DIR/secrets/store.json.

Shared by the Secrets API (which writes it) and a task's `dbutils.secrets` (which reads
it, as the same OS user): the file is the contract, so values never travel through the
task's invocation, its environment or the server's log. The directory is 0700 and the
file 0600, replaced atomically on every change, so a reader always sees a whole document.

Scope and key names are case-insensitive (as on Databricks): entries are indexed by the
lower-cased name and keep the spelling they were created with. Values are kept as base64
of their bytes plus whether they were put as a string or as bytes.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

STORE_FILE = "store.json"


@dataclass(frozen=True)
class StoredSecret:
    key: str
    value: bytes
    is_bytes: bool  # put with bytes_value (else string_value)
    last_updated_timestamp: int


def _empty() -> dict:
    return {"scopes": {}}


class SecretStore:
    """Read-modify-write of one JSON document under a lock (the HTTP server writes from many threads)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        self._lock = threading.RLock()

    # -- reading (server and task process) ---------------------------------------------------------
    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return _empty()

    def scope(self, name: str) -> dict | None:
        return self.load()["scopes"].get(name.lower())

    def secret(self, scope: str, key: str) -> StoredSecret | None:
        doc = self.scope(scope)
        entry = None if doc is None else doc["secrets"].get(key.lower())
        if entry is None:
            return None
        return StoredSecret(
            entry["key"], base64.b64decode(entry["value"]), entry["is_bytes"], entry["last_updated_timestamp"]
        )

    # -- writing (server) ----------------------------------------------------------------------------
    def save(self, doc: dict) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # also when it existed with a looser mode
        tmp = self.directory / f".{STORE_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @property
    def lock(self) -> threading.RLock:
        return self._lock


def encode_value(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
