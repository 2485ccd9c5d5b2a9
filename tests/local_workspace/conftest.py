"""An in-process workspace (real HTTP, real SDK) whose clusters are a tiny fake runtime:
tasks are plain Python subprocesses, so scheduler semantics (run_if, repair, cancel,
timeouts, queueing) are tested in seconds. End-to-end tests use the real LocalCluster."""

from __future__ import annotations

import pytest
from fake_runtime import FakeCluster, FakeRunningTask  # noqa: F401  (the runtime lives in tests/fake_runtime.py)

from dbx_assets.local_workspace.app import LocalWorkspace


@pytest.fixture(scope="session")
def fake_workspace(tmp_path_factory):
    ws = LocalWorkspace(tmp_path_factory.mktemp("fake_ws"), cluster_factory=FakeCluster).start()
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def fake_client(fake_workspace):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=fake_workspace.host, token=fake_workspace.token)
