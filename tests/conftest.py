"""Session-wide fixtures: ONE local workspace server (a real process, real HTTP) shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.local_workspace.runtime.contract import StoragePaths


@dataclass(frozen=True)
class LocalWorkspaceHandle:
    host: str
    token: str
    state_dir: Path
    paths: StoragePaths


@pytest.fixture(scope="session")
def local_workspace(tmp_path_factory) -> Iterator[LocalWorkspaceHandle]:
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


@pytest.fixture(scope="session")
def fake_dbx(tmp_path_factory):
    """An in-process local workspace whose clusters are the no-JVM fake runtime (tests/fake_runtime.py),
    shared by the Dagster-layer tests; each test names its own job, so they do not interfere."""
    from fake_runtime import FakeWorkspace

    ws = FakeWorkspace(tmp_path_factory.mktemp("fake_dbx"))
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def dbx_env(fake_dbx, monkeypatch):
    """DATABRICKS_HOST/DATABRICKS_TOKEN point at `fake_dbx` for this test (and the processes it starts)."""
    for k, v in fake_dbx.env().items():
        monkeypatch.setenv(k, v)
    yield fake_dbx
    fake_dbx.faults_off()  # a test that failed half-way leaves no faults behind


# The modules that take minutes, slowest first. `make test` hands whole modules to its workers in
# collection order (--dist loadfile --no-loadscope-reorder): the long ones start first, instead of
# one of them starting last and becoming the run's tail while the other workers sit idle.
SLOWEST_MODULES = (
    "tests/test_newcomer.py",
    "tests/local_workspace/test_runtime_cluster.py",
    "tests/test_production_postgres.py",
    "tests/test_dbt_specs.py",
    "tests/test_mixed_compute_e2e.py",
    "tests/test_workflow_e2e.py",
    "tests/test_faults.py",
    "tests/local_workspace/test_ingestion_spark.py",
    "tests/local_workspace/test_uc_runtime.py",
    "tests/local_workspace/test_secrets_runtime.py",
    "tests/local_workspace/test_run_page_browser.py",
    "tests/test_sensor_daemon.py",
    "tests/test_auto_loader_sensor.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: order within a module kept
