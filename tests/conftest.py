"""Session-wide fixtures: ONE local workspace server (a real process, real HTTP) shared by every test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.local_workspace.runtime_types import StoragePaths


@dataclass(frozen=True)
class LocalWorkspaceHandle:
    host: str
    token: str
    state_dir: Path
    paths: StoragePaths


@pytest.fixture(scope="session")
def local_workspace(tmp_path_factory) -> LocalWorkspaceHandle:
    state_dir = tmp_path_factory.mktemp("local_workspace")
    conn = ensure_running(state_dir, timeout=60)
    try:
        yield LocalWorkspaceHandle(conn.host, conn.token, conn.state_dir, StoragePaths(conn.state_dir))
    finally:
        stop(state_dir)


@pytest.fixture(scope="session")
def workspace_client(local_workspace):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=local_workspace.host, token=local_workspace.token)
