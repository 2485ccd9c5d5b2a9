"""The Databricks resource: local by default, remote by settings, clear connection errors, no leaked tokens."""

from __future__ import annotations

import socket

import dagster as dg
import pytest

from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError

SECRET = "dapi-not-a-real-token-0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_settings_means_the_local_workspace(local_workspace, monkeypatch):
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    resource = DatabricksResource(local_state_dir=str(local_workspace.state_dir))
    assert resource.is_local and resource.dbt_target == "local"
    assert resource.get_client().config.host == local_workspace.host  # reused, not a second server
    assert resource.check_connection()


def test_settings_mean_remote(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    assert not DatabricksResource().is_local
    assert DatabricksResource().dbt_target == "databricks"


def test_wrong_token_is_one_clear_message(local_workspace):
    resource = DatabricksResource(host=local_workspace.host, token=SECRET)
    with pytest.raises(WorkspaceConnectionError) as info:
        resource.check_connection()
    message = str(info.value)
    assert local_workspace.host in message and "rejected the credentials" in message
    assert "DATABRICKS_TOKEN" in message and SECRET not in message


def test_unreachable_host_names_host_and_cause():
    host = f"http://127.0.0.1:{_closed_port()}"
    resource = DatabricksResource(host=host, token=SECRET, retry_timeout_seconds=2)
    with pytest.raises(WorkspaceConnectionError) as info:
        resource.check_connection()
    message = str(info.value)
    assert f"Cannot reach Databricks workspace {host}" in message and "DATABRICKS_HOST" in message
    assert SECRET not in message and "Traceback" not in message


def test_token_from_env_var_is_not_in_the_run_config(monkeypatch):
    monkeypatch.setenv("MY_DBX_TOKEN", SECRET)
    resource = DatabricksResource(host="https://adb-1.azuredatabricks.net", token=dg.EnvVar("MY_DBX_TOKEN"))
    defs = dg.Definitions(resources={"databricks": resource})
    snapshot = repr(defs.resources["databricks"])  # what the UI's resource view is built from
    assert SECRET not in snapshot and "MY_DBX_TOKEN" in snapshot
