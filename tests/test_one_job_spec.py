"""One job spec for every workspace: what the demo deploys does not depend on whether the
workspace is the embedded one or a server addressed by DATABRICKS_HOST + DATABRICKS_TOKEN.

Both servers are real (HTTP and HTTPS with a self-signed certificate trusted through
REQUESTS_CA_BUNDLE, as a team's shared dev server would be); no cluster is started."""

from __future__ import annotations

import json

import pytest

from dbx_assets.demo.definitions import workflow
from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError
from dbx_assets.local_workspace.launcher import ensure_running, stop


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("shared_dev_server")
    conn = ensure_running(state_dir, timeout=60, tls=True)
    try:
        yield conn
    finally:
        stop(state_dir)


def _job_settings_json(resource: DatabricksResource) -> str:
    target = resource.deploy_target(needs_sql_warehouse=workflow.needs_sql_warehouse)
    return json.dumps(workflow.spec(target).job_settings(), sort_keys=True)


def test_the_embedded_and_a_host_token_workspace_get_byte_identical_job_specs(tmp_path, tls_server, monkeypatch):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_SQL_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    embedded = _job_settings_json(DatabricksResource(local_state_dir=str(tmp_path / "embedded")))
    stop(tmp_path / "embedded")

    assert tls_server.host.startswith("https://")
    monkeypatch.setenv("DATABRICKS_HOST", tls_server.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", tls_server.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.ca_cert))
    remote = DatabricksResource()
    assert remote.get_client().config.host == tls_server.host  # really addressed by host + token
    addressed = _job_settings_json(remote)

    assert addressed == embedded
    dbt_task = next(t for t in json.loads(addressed)["tasks"] if "dbt_task" in t)["dbt_task"]
    assert dbt_task["warehouse_id"] and "profiles_directory" not in dbt_task
    assert tls_server.token not in addressed


def test_a_warehouse_by_name_resolves_to_its_id_and_an_unknown_one_is_named(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.ca_cert))
    client = DatabricksResource(host=tls_server.host, token=tls_server.token).get_client()
    warehouse = next(iter(client.warehouses.list()))
    by_name = DatabricksResource(host=tls_server.host, token=tls_server.token, sql_warehouse=warehouse.name)
    assert by_name.deploy_target(needs_sql_warehouse=True).sql_warehouse_id == warehouse.id
    unknown = DatabricksResource(host=tls_server.host, token=tls_server.token, sql_warehouse="nightly-xl")
    with pytest.raises(WorkspaceConnectionError, match=r"SQL warehouse 'nightly-xl' does not exist.*sql_warehouse"):
        unknown.deploy_target(needs_sql_warehouse=True)
    # notebooks alone never ask for a warehouse
    assert unknown.deploy_target(needs_sql_warehouse=False).sql_warehouse_id is None
