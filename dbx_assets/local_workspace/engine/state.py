"""Durable workspace state in one sqlite file (DIR/state.db).

Everything the API hands out (jobs, runs, task runs, clusters, workspace object
metadata, idempotency tokens, id counters) is a JSON document keyed by id, so a
restart reads back exactly what clients saw. One lock serialises access because the
HTTP server and the scheduler write from many threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_KINDS = ("job", "run", "task_run", "cluster", "instance_pool", "wsobj", "idempotency", "meta")


class StateStore:
    def __init__(self, db_path: Path):
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,"
            " PRIMARY KEY (kind, key))"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, kind: str, key: Any, doc: Any) -> None:
        assert kind in _KINDS, kind
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO docs (kind, key, doc) VALUES (?, ?, ?)", (kind, str(key), json.dumps(doc))
            )

    def get(self, kind: str, key: Any) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM docs WHERE kind=? AND key=?", (kind, str(key))).fetchone()
        return json.loads(row[0]) if row else None

    def delete(self, kind: str, key: Any) -> None:
        with self._lock:
            self._db.execute("DELETE FROM docs WHERE kind=? AND key=?", (kind, str(key)))

    def all(self, kind: str) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT key, doc FROM docs WHERE kind=?", (kind,)).fetchall()
        return [(k, json.loads(d)) for k, d in rows]

    def keys_with_prefix(self, kind: str, prefix: str) -> Iterator[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM docs WHERE kind=? AND substr(key, 1, ?) = ?", (kind, len(prefix), prefix)
            ).fetchall()
        return iter([r[0] for r in rows])

    def next_id(self, counter: str, start: int = 1) -> int:
        """A monotonically increasing id that survives restarts."""
        with self._lock:
            current = self.get("meta", f"counter:{counter}")
            value = start if current is None else int(current) + 1
            self.put("meta", f"counter:{counter}", value)
            return value
