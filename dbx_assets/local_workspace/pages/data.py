"""What the pages read: runs, task runs (every attempt), clusters and task output files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.state import StateStore

LOG_TAIL = 256 * 1024  # characters of a log shown (the end, where the error is)


@dataclass
class Attempt:
    """One task run of a run: the current one of its task, or an earlier one a repair (or retry) replaced."""

    task: dict
    current: bool
    repair_index: int  # 0: the original run, n: the n-th repair


@dataclass
class PageData:
    store: StateStore
    task_runs_dir: Path
    artifacts_link: Callable[[int], str]

    def run(self, run_id: int) -> dict | None:
        return self.store.get("run", run_id)

    def task_record(self, task_run_id: int) -> dict | None:
        return self.store.get("task_run", task_run_id)

    def attempts(self, run: dict) -> list[Attempt]:
        """Every task run of `run`, in the order they were created."""
        current = {t["run_id"]: t for t in run.get("tasks", [])}
        repair_of: dict[int, int] = {}
        for i, h in enumerate(run.get("repair_history") or []):
            for tid in h.get("task_run_ids") or []:
                repair_of[tid] = i
        out: dict[int, Attempt] = {}
        for key, record in self.store.all("task_run"):
            if record.get("parent_run_id") != run["run_id"] or not key.isdigit():
                continue
            tid = int(key)
            task = (
                current.get(tid)
                or record.get("view")
                or {"task_key": record.get("task_key", "?"), "run_id": tid, "state": {}}
            )
            out[tid] = Attempt(task, tid in current, repair_of.get(tid, 0))
        for tid, t in current.items():
            out.setdefault(tid, Attempt(t, True, repair_of.get(tid, 0)))
        return [out[k] for k in sorted(out)]

    def task_view(self, task_run_id: int) -> tuple[dict, dict] | None:
        """(task run, its job run) for a task run id."""
        record = self.task_record(task_run_id)
        if record is None:
            return None
        run = self.run(int(record.get("parent_run_id") or 0))
        if run is None:
            return None
        task = next((t for t in run.get("tasks", []) if t["run_id"] == task_run_id), None)
        if task is None:
            task = record.get("view") or {"task_key": record.get("task_key", "?"), "run_id": task_run_id, "state": {}}
        return task, run

    def outcome(self, task_run_id: int) -> dict:
        return (self.task_record(task_run_id) or {}).get("outcome") or {}

    def output_dir(self, task_run_id: int) -> Path:
        return self.task_runs_dir / str(task_run_id)

    def cells(self, task_run_id: int) -> dict | None:
        try:
            return json.loads((self.output_dir(task_run_id) / "cells.json").read_text())
        except (OSError, ValueError):
            return None

    def log(self, task_run_id: int, name: str = "logs.txt") -> tuple[str, int] | None:
        """(the log's last LOG_TAIL characters, its full size in bytes), or None when there is none."""
        path = self.output_dir(task_run_id) / name
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                f.seek(max(0, size - LOG_TAIL * 4))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        return text, size

    def cluster(self, cluster_id: str) -> dict | None:
        return self.store.get("cluster", cluster_id)

    def clusters(self) -> list[dict]:
        return sorted((d for _, d in self.store.all("cluster")), key=lambda d: -(d.get("start_time") or 0))

    def jobs(self) -> list[dict]:
        return sorted((j for _, j in self.store.all("job")), key=lambda j: -j["job_id"])

    def runs(self, job_id: int | None = None) -> list[dict]:
        runs: list[Any] = [r for _, r in self.store.all("run")]
        if job_id is not None:
            runs = [r for r in runs if r.get("job_id") == job_id]
        return sorted(runs, key=lambda r: -r["run_id"])
