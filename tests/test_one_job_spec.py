"""One job spec for every workspace: what the demo deploys does not depend on whether the
workspace is the embedded one or a server addressed by DATABRICKS_HOST + DATABRICKS_TOKEN.

Both servers are real (HTTP and HTTPS with a self-signed certificate trusted through
REQUESTS_CA_BUNDLE, as a team's shared dev server would be); no cluster is started."""

from __future__ import annotations

import json

import pytest

from dbx_assets.demo.definitions import workflow
from dbx_assets.demo.pool import DEMO_POOL_NAME
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
    target = resource.deploy_target(
        needs_sql_warehouse=workflow.needs_sql_warehouse, instance_pools=workflow.instance_pool_names
    )
    return json.dumps(workflow.spec(target).job_settings(), sort_keys=True)


def _demo_pool(resource: DatabricksResource) -> str:
    """The demo's pool (`make dev` makes it), here without idle instances: no driver starts."""
    created = resource.get_client().instance_pools.create(
        instance_pool_name=DEMO_POOL_NAME, node_type_id="local", min_idle_instances=0
    )
    assert created.instance_pool_id
    return created.instance_pool_id


def _without_pool_id(settings_json: str, pool_id: str) -> dict:
    """The settings with the pool's id (and so the spec hash, which covers it) taken out."""
    settings = json.loads(settings_json.replace(pool_id, "POOL"))
    settings["tags"].pop("dbx_assets_spec_hash")
    return settings


def test_the_embedded_and_a_host_token_workspace_get_byte_identical_job_specs(tmp_path, tls_server, monkeypatch):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_SQL_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    # A fresh embedded workspace and the shared dev server: each has the demo's pool (`make dev` makes it),
    # under an id of its own; everything else in the spec is the same, byte for byte.
    embedded_resource = DatabricksResource(local_state_dir=str(tmp_path / "embedded"))
    embedded_pool = _demo_pool(embedded_resource)
    embedded = _job_settings_json(embedded_resource)
    stop(tmp_path / "embedded")

    assert tls_server.host.startswith("https://")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.ca_cert))
    # The dev server itself, reached as the embedded workspace (its state dir) ...
    as_embedded = DatabricksResource(local_state_dir=str(tls_server.state_dir))
    server_pool = _demo_pool(as_embedded)
    assert as_embedded.get_client().config.host == tls_server.host
    server_embedded = _job_settings_json(as_embedded)
    # ... and addressed by host + token.
    monkeypatch.setenv("DATABRICKS_HOST", tls_server.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", tls_server.token)
    remote = DatabricksResource()
    assert remote.get_client().config.host == tls_server.host  # really addressed by host + token
    addressed = _job_settings_json(remote)

    assert addressed == server_embedded
    assert _without_pool_id(addressed, server_pool) == _without_pool_id(embedded, embedded_pool)
    settings = json.loads(addressed)
    [cluster] = settings["job_clusters"]
    assert cluster["new_cluster"]["instance_pool_id"] == server_pool  # the pool named by name, as its id
    assert "instance_pool_name" not in cluster["new_cluster"] and "node_type_id" not in cluster["new_cluster"]
    dbt_task = next(t for t in settings["tasks"] if "dbt_task" in t)["dbt_task"]
    assert dbt_task["warehouse_id"] and "profiles_directory" not in dbt_task
    assert tls_server.token not in addressed


def test_a_pool_named_by_a_job_cluster_that_does_not_exist_is_named_with_the_fix(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.ca_cert))
    resource = DatabricksResource(host=tls_server.host, token=tls_server.token)
    with pytest.raises(
        WorkspaceConnectionError, match=r"Instance pool 'nightly-pool' does not exist in https://.*instance_pool_name"
    ):
        resource.deploy_target(needs_sql_warehouse=False, instance_pools=["nightly-pool"])


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
