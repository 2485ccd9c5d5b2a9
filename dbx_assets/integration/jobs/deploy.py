"""Deploying a workflow from code: sync its files to the workspace and create/reset its job.

Only files whose content changed are uploaded (a small manifest of content hashes lives next
to them), and the job is reset only when its spec hash changed, so a materialization with
nothing new to deploy costs four API calls (the fourth lists the notebook folder, because a
notebook deleted in the workspace would otherwise stay missing while the manifest says "uploaded").
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbx_assets.integration.jobs.model import WorkflowSpec

if TYPE_CHECKING:  # imported where used: a definitions load needs WorkspaceFile, not the SDK
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import JobSettings

MANIFEST_NAME = "_dbx_assets_manifest.json"


@dataclass(frozen=True)
class WorkspaceFile:
    """A file to place under the workflow's workspace root; notebooks are imported as notebooks."""

    relative_path: str  # e.g. "notebooks/ingest_orders" or "dbt_project/models/x.sql"
    content: bytes
    is_notebook: bool = False
    language: str = "PYTHON"  # a notebook's: PYTHON, SQL, SCALA or R
    notebook_format: str = "SOURCE"  # how a notebook is imported: SOURCE, or JUPYTER for an .ipynb

    @property
    def content_hash(self) -> str:
        kind = b"\0nb" if self.is_notebook else b""
        if self.is_notebook and (self.language, self.notebook_format) != ("PYTHON", "SOURCE"):
            kind += f"\0{self.language}\0{self.notebook_format}".encode()  # an R notebook has Python's header
        return hashlib.sha256(self.content + kind).hexdigest()[:20]


@dataclass(frozen=True)
class DeployResult:
    job_id: int
    uploaded: tuple[str, ...]
    job_reset: bool
    job_created: bool


class WorkflowDeployer:
    def __init__(self, client: WorkspaceClient, workspace_root: str, log: logging.Logger | None = None):
        self._client = client
        self._root = workspace_root.rstrip("/")
        self._log = log or logging.getLogger(__name__)

    def path_of(self, relative_path: str) -> str:
        return posixpath.join(self._root, relative_path)

    def deploy(self, spec: WorkflowSpec, files: Mapping[str, WorkspaceFile]) -> DeployResult:
        uploaded = self.sync_files(files)
        job_id, created, reset = self.ensure_job(spec)
        return DeployResult(job_id=job_id, uploaded=tuple(uploaded), job_reset=reset, job_created=created)

    # -- files -------------------------------------------------------------------------------
    def sync_files(self, files: Mapping[str, WorkspaceFile]) -> list[str]:
        deployed = self._read_manifest()
        wanted = {f.relative_path: f.content_hash for f in files.values()}
        changed = [f for f in files.values() if deployed.get(f.relative_path) != f.content_hash]
        missing = self._missing_in_workspace([f for f in files.values() if f.is_notebook and f not in changed])
        if missing:
            self._log.warning(
                "%d deployed notebook(s) are missing in the workspace; uploading them again: %s",
                len(missing),
                ", ".join(f.relative_path for f in missing),
            )
            changed += missing
        made_dirs: set[str] = set()
        for f in changed:
            path = self.path_of(f.relative_path)
            parent = posixpath.dirname(path)
            if parent not in made_dirs:
                self._client.workspace.mkdirs(parent)
                made_dirs.add(parent)
            self._import(path, f.content, notebook=f.is_notebook, language=f.language, fmt=f.notebook_format)
        if changed or set(deployed) != set(wanted):
            self._write_manifest(wanted)
        if changed:
            self._log.info(
                "Uploaded %d changed file(s) to %s: %s",
                len(changed),
                self._root,
                ", ".join(f.relative_path for f in changed[:10]),
            )
        return [f.relative_path for f in changed]

    def _missing_in_workspace(self, notebooks: list[WorkspaceFile]) -> list[WorkspaceFile]:
        """Notebooks the manifest calls current but the workspace no longer has (one list call per folder)."""
        from databricks.sdk.errors import NotFound

        folders: dict[str, set[str]] = {}
        for f in notebooks:
            folder = posixpath.dirname(self.path_of(f.relative_path))
            if folder not in folders:
                try:
                    folders[folder] = {o.path for o in self._client.workspace.list(folder) if o.path}
                except NotFound:
                    folders[folder] = set()
        return [
            f
            for f in notebooks
            if self.path_of(f.relative_path) not in folders[posixpath.dirname(self.path_of(f.relative_path))]
        ]

    def _read_manifest(self) -> dict[str, str]:
        from databricks.sdk.errors import NotFound

        try:
            with self._client.workspace.download(self.path_of(MANIFEST_NAME)) as fh:
                return json.loads(fh.read().decode())
        except NotFound:
            return {}
        except (ValueError, UnicodeDecodeError):
            return {}  # a damaged manifest only costs a full upload

    def _write_manifest(self, manifest: dict[str, str]) -> None:
        self._client.workspace.mkdirs(self._root)
        self._import(
            self.path_of(MANIFEST_NAME), json.dumps(manifest, sort_keys=True, indent=1).encode(), notebook=False
        )

    def _import(
        self, path: str, content: bytes, *, notebook: bool, language: str = "PYTHON", fmt: str = "SOURCE"
    ) -> None:
        # The JSON import (base64 body), not the SDK's multipart `upload`: the SDK never retries a
        # multipart request, so one 429/503 would fail the whole deploy. Fine for files under 10 MB.
        # A notebook goes in as SOURCE with its language, or as JUPYTER (the .ipynb says its language).
        from databricks.sdk.service.workspace import ImportFormat, Language

        self._client.workspace.import_(
            path,
            content=base64.b64encode(content).decode(),
            format=ImportFormat(fmt) if notebook else ImportFormat.AUTO,
            language=Language(language) if notebook and fmt == "SOURCE" else None,
            overwrite=True,
        )

    # -- job ---------------------------------------------------------------------------------
    def ensure_job(self, spec: WorkflowSpec) -> tuple[int, bool, bool]:
        """Return (job_id, created, reset). The job is found by its name; duplicates from racing
        deployers are resolved by keeping the oldest (lowest id) and deleting the rest."""
        from databricks.sdk.service.jobs import JobSettings

        settings = spec.job_settings()
        job_ids = self._job_ids(spec.name)
        if not job_ids:
            created = self._client.jobs.create(**_create_kwargs(JobSettings.from_dict(settings)))
            self._log.info("Created Databricks job %s (%s)", created.job_id, spec.name)
            job_ids = self._job_ids(spec.name) or [_required(created.job_id, "the new job_id")]
            for extra in job_ids[1:]:
                self._client.jobs.delete(extra)
            return job_ids[0], True, False
        for extra in job_ids[1:]:
            self._client.jobs.delete(extra)
        job = self._client.jobs.get(job_ids[0])
        deployed_hash = (job.settings.tags or {}).get("dbx_assets_spec_hash") if job.settings else None
        if deployed_hash == settings["tags"]["dbx_assets_spec_hash"]:
            return job_ids[0], False, False
        self._client.jobs.reset(job_ids[0], new_settings=JobSettings.from_dict(settings))
        self._log.info("Reset Databricks job %s (%s): spec changed", job_ids[0], spec.name)
        return job_ids[0], False, True

    def _job_ids(self, name: str) -> list[int]:
        """Ids of the jobs named `name`, oldest first."""
        return sorted(j.job_id for j in self._client.jobs.list(name=name) if j.job_id is not None)


def _required(value: int | None, what: str) -> int:
    if value is None:
        raise RuntimeError(f"The Databricks workspace answered without {what}.")
    return value


def _create_kwargs(settings: JobSettings) -> dict:
    return {k: v for k, v in vars(settings).items() if v is not None}
