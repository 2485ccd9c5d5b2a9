"""Secrets API semantics through the real SDK over HTTP (in-process workspace, fake clusters)."""

from __future__ import annotations

import base64
import itertools
import logging
import stat
import time

import pytest
from databricks.sdk.errors import BadRequest, InvalidParameterValue, NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import AclPermission

_ids = itertools.count(1)


@pytest.fixture
def scope(fake_client) -> str:
    # The workspace is shared by the session: every test gets its own scope.
    name = f"secrets-test.{next(_ids)}"
    fake_client.secrets.create_scope(name)
    return name


def test_scope_lifecycle_and_errors(fake_client):
    w = fake_client
    w.secrets.create_scope("lifecycle_scope@team")
    scopes = {s.name: s for s in w.secrets.list_scopes()}
    assert scopes["lifecycle_scope@team"].backend_type.value == "DATABRICKS"
    with pytest.raises(ResourceAlreadyExists, match="Scope lifecycle_scope@team already exists!"):
        w.secrets.create_scope("lifecycle_scope@team")
    with pytest.raises(ResourceAlreadyExists):  # names are case-insensitive
        w.secrets.create_scope("LIFECYCLE_scope@team")
    w.secrets.delete_scope("lifecycle_scope@team")
    assert "lifecycle_scope@team" not in {s.name for s in w.secrets.list_scopes()}
    with pytest.raises(NotFound, match="Scope lifecycle_scope@team does not exist!"):
        w.secrets.delete_scope("lifecycle_scope@team")
    for bad in ("has space", "slash/scope", "x" * 129):
        with pytest.raises(InvalidParameterValue):
            w.secrets.create_scope(bad)
    w.secrets.create_scope("y" * 128)  # the limit itself is allowed
    w.secrets.delete_scope("y" * 128)


def test_put_list_get_delete(fake_client, scope):
    w = fake_client
    w.secrets.put_secret(scope, "api_key", string_value="sk-live-ünïcode")
    w.secrets.put_secret(scope, "blob", bytes_value=base64.b64encode(b"\x00\xffraw").decode())
    listed = {s.key: s for s in w.secrets.list_secrets(scope)}
    assert set(listed) == {"api_key", "blob"}
    assert listed["api_key"].last_updated_timestamp > 1_600_000_000_000  # epoch ms
    got = w.secrets.get_secret(scope, "api_key")
    assert got.key == "api_key" and base64.b64decode(got.value).decode() == "sk-live-ünïcode"
    assert base64.b64decode(w.secrets.get_secret(scope, "blob").value) == b"\x00\xffraw"
    # Keys are case-insensitive too; putting again overwrites.
    w.secrets.put_secret(scope, "API_KEY", string_value="rotated")
    assert base64.b64decode(w.secrets.get_secret(scope, "api_key").value) == b"rotated"
    assert [s.key for s in w.secrets.list_secrets(scope)] == ["api_key", "blob"]

    w.secrets.delete_secret(scope, "blob")
    with pytest.raises(NotFound, match=f"Secret does not exist with scope: {scope} and key: blob"):
        w.secrets.get_secret(scope, "blob")
    with pytest.raises(NotFound):
        w.secrets.delete_secret(scope, "blob")
    # Deleting the scope deletes its secrets: a new scope of that name starts empty.
    w.secrets.delete_scope(scope)
    w.secrets.create_scope(scope)
    assert list(w.secrets.list_secrets(scope)) == []


def test_missing_scope_is_resource_does_not_exist_everywhere(fake_client):
    w = fake_client
    calls = [
        lambda: w.secrets.put_secret("no-such-scope", "k", string_value="v"),
        lambda: w.secrets.list_secrets("no-such-scope"),
        lambda: w.secrets.get_secret("no-such-scope", "k"),
        lambda: w.secrets.delete_secret("no-such-scope", "k"),
        lambda: w.secrets.list_acls("no-such-scope"),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="Scope no-such-scope does not exist!"):
            call()


def test_put_validation(fake_client, scope):
    w = fake_client
    with pytest.raises(InvalidParameterValue):
        w.secrets.put_secret(scope, "bad key", string_value="v")
    with pytest.raises(InvalidParameterValue):
        w.secrets.put_secret(scope, "k")  # neither string_value nor bytes_value
    with pytest.raises(BadRequest):  # MALFORMED_REQUEST: conflicting
        w.secrets.put_secret(scope, "k", string_value="v", bytes_value="dg==")
    with pytest.raises(BadRequest):
        w.secrets.put_secret(scope, "k", bytes_value="not base64!")
    w.secrets.put_secret(scope, "max", string_value="a" * (128 * 1024))
    with pytest.raises(InvalidParameterValue, match="128 KB"):
        w.secrets.put_secret(scope, "too_big", string_value="a" * (128 * 1024 + 1))
    assert {s.key for s in w.secrets.list_secrets(scope)} == {"max"}


def test_acls_minimal(fake_client, scope):
    w = fake_client
    (acl,) = w.secrets.list_acls(scope)
    assert acl.permission == AclPermission.MANAGE  # the creator
    w.secrets.put_acl(scope, "data-scientists", AclPermission.READ)
    assert w.secrets.get_acl(scope, "data-scientists").permission == AclPermission.READ
    assert {a.principal for a in w.secrets.list_acls(scope)} == {acl.principal, "data-scientists"}
    w.secrets.delete_acl(scope, "data-scientists")
    with pytest.raises(NotFound):
        w.secrets.get_acl(scope, "data-scientists")
    w.secrets.create_scope(scope + "-all", initial_manage_principal="users")
    assert [(a.principal, a.permission) for a in w.secrets.list_acls(scope + "-all")] == [
        ("users", AclPermission.MANAGE)
    ]


def test_values_are_stored_owner_only_and_never_logged(fake_client, fake_workspace, scope, caplog):
    value = "never-in-the-log-7c1e"
    with caplog.at_level(logging.INFO, logger="dbx_local_workspace"):
        fake_client.secrets.put_secret(scope, "k", string_value=value)
        assert base64.b64decode(fake_client.secrets.get_secret(scope, "k").value).decode() == value
    deadline = time.monotonic() + 5  # the server logs a call just after answering it
    while "GET /api/2.0/secrets/get -> 200" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "POST /api/2.0/secrets/put -> 200" in caplog.text  # the server log saw the calls...
    assert value not in caplog.text and base64.b64encode(value.encode()).decode() not in caplog.text  # ...not the value
    store_dir = fake_workspace.paths.secrets
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((store_dir / "store.json").stat().st_mode) == 0o600
    encoded = base64.b64encode(value.encode())
    for path in fake_workspace.state_dir.rglob("*"):
        if path.is_file() and path.parent != store_dir:
            data = path.read_bytes()
            assert value.encode() not in data and encoded not in data, path
