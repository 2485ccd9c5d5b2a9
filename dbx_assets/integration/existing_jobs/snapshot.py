"""Snapshots of existing workspace jobs: their definitions (jobs/get) in a JSON file that the code
location loads without calling the workspace, as a dbt manifest is loaded.

`take_snapshot` asks the workspace (by job name, job id, or a name pattern) and `write_snapshot`
writes the file; `read_snapshot` reads it at definitions load. At run time `fingerprint` of the job's
current settings is compared with the snapshot's: see `execution.py`.

What the fingerprint covers is what the assets are made of: the tasks (keys, types, what they run,
their dependencies, compute, parameters), the job clusters, environments, job parameters and
git_source. A change to anything else (name, schedule, notifications, tags, permissions) leaves the
assets as they are and does not make the snapshot stale.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceDoesNotExist

SNAPSHOT_FORMAT = 1
CLI_MODULE = "dbx_assets.integration.existing_jobs"
FINGERPRINTED_SETTINGS = ("tasks", "job_clusters", "environments", "parameters", "git_source")


class JobSnapshotError(ValueError):
    """A job that cannot be snapshot or a snapshot file that cannot be read, with the fix."""


def snapshot_command(output: Path | str, selectors: Sequence[str] = ()) -> str:
    """The command that (re)writes a snapshot, for messages."""
    return f"python -m {CLI_MODULE} snapshot {' '.join(selectors) or '--job <name>'} --output {output}"


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A stable hash of what of a job's settings its assets depend on (see module doc)."""
    kept = {k: settings[k] for k in FINGERPRINTED_SETTINGS if settings.get(k) not in (None, [], {})}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobSnapshot:
    """One job as jobs/get returned it when the snapshot was taken."""

    job_id: int
    settings: Mapping[str, Any]
    fingerprint: str

    @property
    def name(self) -> str:
        return str(self.settings.get("name") or f"job {self.job_id}")

    @property
    def tasks(self) -> list[Mapping[str, Any]]:
        return list(self.settings.get("tasks") or [])

    @property
    def parameter_names(self) -> list[str]:
        return [str(p["name"]) for p in self.settings.get("parameters") or []]

    @classmethod
    def of(cls, job_id: int, settings: Mapping[str, Any]) -> JobSnapshot:
        return cls(job_id=job_id, settings=settings, fingerprint=fingerprint(settings))


@dataclass(frozen=True)
class ExistingJob:
    """A job of a snapshot file, as a workflow's step needs it: the snapshot and how to take it again."""

    job: JobSnapshot
    snapshot_path: Path
    selectors: tuple[str, ...] = ()

    @property
    def refresh_command(self) -> str:
        return snapshot_command(self.snapshot_path, self.selectors)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file: where it was taken, how it was asked for, and the jobs."""

    host: str
    selectors: tuple[str, ...]  # the command's job options, to say how to take it again
    jobs: tuple[JobSnapshot, ...]


# -- taking a snapshot (asks the workspace) ----------------------------------------------------------


def take_snapshot(
    client: WorkspaceClient,
    *,
    names: Sequence[str] = (),
    job_ids: Sequence[int] = (),
    name_patterns: Sequence[str] = (),
) -> list[JobSnapshot]:
    """The named jobs' definitions: each name must name exactly one job, each id exist, each
    pattern (fnmatch, case-insensitive: "sales_*") match at least one job."""
    host = (client.config.host or "").rstrip("/")
    if not (names or job_ids or name_patterns):
        raise JobSnapshotError("Name at least one job: --job NAME, --job-id ID or --job-pattern PATTERN.")
    wanted: dict[int, None] = {}
    for name in names:
        found = [j.job_id for j in client.jobs.list(name=name) if j.job_id is not None]
        if not found:
            raise JobSnapshotError(
                f"No job named '{name}' in {host}{_known_jobs(client)}. Check the name (as the Jobs page shows it), "
                "or pass --job-id."
            )
        if len(found) > 1:
            raise JobSnapshotError(
                f"{len(found)} jobs are named '{name}' in {host} (ids {', '.join(map(str, sorted(found)))}); "
                "pass the one you mean with --job-id."
            )
        wanted[found[0]] = None
    if name_patterns:
        every = [(j.job_id, (j.settings.name if j.settings else "") or "") for j in client.jobs.list()]
        for pattern in name_patterns:
            matched = [i for i, n in every if i is not None and fnmatch.fnmatch(n.lower(), pattern.lower())]
            if not matched:
                raise JobSnapshotError(
                    f"No job in {host} has a name matching '{pattern}'{_known_jobs(client)}. Patterns are "
                    "shell-style ('sales_*'), case-insensitive."
                )
            wanted.update(dict.fromkeys(sorted(matched)))
    wanted.update(dict.fromkeys(job_ids))
    out = []
    for job_id in wanted:
        try:
            job = client.jobs.get(job_id)
        except (NotFound, ResourceDoesNotExist):
            raise JobSnapshotError(f"Job {job_id} does not exist in {host}. Check the id on the job's page.") from None
        settings = job.settings.as_dict() if job.settings else {}
        if not settings.get("tasks"):
            raise JobSnapshotError(f"Job '{settings.get('name', job_id)}' ({job_id}) in {host} has no tasks.")
        out.append(JobSnapshot.of(job_id, settings))
    return out


def _known_jobs(client: WorkspaceClient, limit: int = 20) -> str:
    names: list[str] = []
    for job in client.jobs.list():
        if len(names) == limit:
            names.append("...")
            break
        names.append((job.settings.name if job.settings else None) or str(job.job_id))
    return f" (jobs there: {', '.join(names)})" if names else " (it has no jobs)"


# -- the file --------------------------------------------------------------------------------------


def write_snapshot(path: Path | str, snapshot: Snapshot) -> Path:
    """Written whole (a temporary file renamed into place): a code location never reads half a file."""
    path = Path(path)
    document = {
        "format": SNAPSHOT_FORMAT,
        "host": snapshot.host,
        "selectors": list(snapshot.selectors),
        "jobs": [{"job_id": j.job_id, "fingerprint": j.fingerprint, "settings": j.settings} for j in snapshot.jobs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_snapshot(path: Path | str) -> Snapshot:
    path = Path(path)
    how = f"Write it with `{snapshot_command(path)}`."
    if not path.is_file():
        raise JobSnapshotError(f"No job snapshot at {path}. {how}")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise JobSnapshotError(f"The job snapshot {path} cannot be read ({err}). {how}") from None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise JobSnapshotError(f"{path} is not a dbx_assets job snapshot (format {SNAPSHOT_FORMAT}). {how}")
    jobs = []
    for entry in document.get("jobs") or []:
        try:
            jobs.append(JobSnapshot(int(entry["job_id"]), entry["settings"], str(entry["fingerprint"])))
        except (KeyError, TypeError, ValueError):
            raise JobSnapshotError(f"{path} has a malformed job entry. {how}") from None
    if not jobs:
        raise JobSnapshotError(f"{path} holds no jobs. {how}")
    return Snapshot(
        host=str(document.get("host", "")), selectors=tuple(document.get("selectors") or ()), jobs=tuple(jobs)
    )
