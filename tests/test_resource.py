"""The Databricks resource: local by default, remote by settings, one clear message for a wrong
token or an unreachable host (from check_connection and from a materialization), no leaked tokens."""

from __future__ import annotations

import socket

import dagster as dg
import pytest
from workflow_support import key, materialize, new_name, step_failure_message

from dbx_assets.integration.deployment import DEPLOYMENT_ENV
from dbx_assets.integration.resource import ALLOW_EMBEDDED_ENV, DatabricksResource, WorkspaceConnectionError

SECRET = "dapi-not-a-real-token-0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_clear_message(message: str) -> None:
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 3, message
    assert SECRET not in message


def test_no_settings_means_the_local_workspace(local_workspace, monkeypatch):
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    resource = DatabricksResource(local_state_dir=str(local_workspace.state_dir))
    assert resource.get_client().config.host == local_workspace.host  # reused, not a second server
    assert resource.check_connection()
    assert (
        resource.deploy_target(needs_sql_warehouse=False).workspace_root
        == f"/Shared/dbx_assets/{resource.deployment_name()}"
    )


def test_a_dagster_plus_deployment_without_settings_refuses_the_local_workspace(local_workspace, monkeypatch, tmp_path):
    """A Dagster+ code location that lost its DATABRICKS_HOST must not run 'prod' on a local workspace."""
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    monkeypatch.delenv(ALLOW_EMBEDDED_ENV, raising=False)
    monkeypatch.setenv(DEPLOYMENT_ENV, "prod")
    with pytest.raises(WorkspaceConnectionError) as refused:
        DatabricksResource(local_state_dir=str(tmp_path / "unused")).get_client()
    message = str(refused.value)
    assert "'prod'" in message and "DATABRICKS_HOST" in message and ALLOW_EMBEDDED_ENV in message
    _one_clear_message(message)
    assert not (tmp_path / "unused").exists()  # no embedded workspace was started
    # On purpose (e.g. a Dagster+ demo deployment), it is allowed
    monkeypatch.setenv(ALLOW_EMBEDDED_ENV, "1")
    resource = DatabricksResource(local_state_dir=str(local_workspace.state_dir))
    assert resource.get_client().config.host == local_workspace.host


def test_settings_mean_that_workspace_and_no_local_one(fake_dbx, monkeypatch, tmp_path):
    for k, v in fake_dbx.env().items():
        monkeypatch.setenv(k, v)
    resource = DatabricksResource(local_state_dir=str(tmp_path / "unused"))
    assert resource.check_connection()
    assert resource.workspace_host() == fake_dbx.host
    assert not (tmp_path / "unused").exists()  # no embedded workspace was started


def test_wrong_token_is_one_clear_message_naming_the_host(dbx_env):
    ws = dbx_env
    bad = DatabricksResource(host=ws.host, token=SECRET, workspace_root="/Shared/tests/x")
    with pytest.raises(WorkspaceConnectionError) as err:
        bad.check_connection()
    message = str(err.value.description)
    assert ws.host in message and "rejected the credentials" in message and "DATABRICKS_TOKEN" in message
    _one_clear_message(message)

    name = new_name()  # the same message, once, as the step's failure
    result = materialize(name, selection=[key(name, "source")], resource=bad)
    assert not result.success
    message = step_failure_message(result)
    assert ws.host in message and "rejected the credentials" in message, message
    _one_clear_message(message)


def test_unreachable_host_is_one_clear_message_naming_the_host():
    host = f"http://127.0.0.1:{_closed_port()}"
    unreachable = DatabricksResource(host=host, token=SECRET, retry_timeout_seconds=1, workspace_root="/Shared/tests/x")
    with pytest.raises(WorkspaceConnectionError) as err:
        unreachable.check_connection()
    message = str(err.value.description)
    assert f"Cannot reach Databricks workspace {host}" in message and "DATABRICKS_HOST" in message, message
    _one_clear_message(message)

    name = new_name()
    result = materialize(name, selection=[key(name, "source")], resource=unreachable)
    assert not result.success
    message = step_failure_message(result)
    assert host in message and "Cannot reach" in message, message
    _one_clear_message(message)


def test_token_from_env_var_is_not_in_the_run_config(monkeypatch):
    monkeypatch.setenv("MY_DBX_TOKEN", SECRET)
    resource = DatabricksResource(host="https://adb-1.azuredatabricks.net", token=dg.EnvVar("MY_DBX_TOKEN"))
    defs = dg.Definitions(resources={"databricks": resource})
    assert defs.resources is not None
    snapshot = repr(defs.resources["databricks"])  # what the UI's resource view is built from
    assert SECRET not in snapshot and "MY_DBX_TOKEN" in snapshot
