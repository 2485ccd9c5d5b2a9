"""Workspace, DBFS and Files API conformance through the official SDK (the shared in-process workspace)."""

from __future__ import annotations

import base64
import io

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    Unauthenticated,
)
from databricks.sdk.service.workspace import ImportFormat, Language, ObjectType

NOTEBOOK = b"# Databricks notebook source\nprint('hi')\n"


def test_auth_rejects_missing_and_wrong_tokens(fake_dbx):
    import requests

    r = requests.get(fake_dbx.host + "/api/2.0/workspace/list", params={"path": "/"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    from databricks.sdk.errors.mapper import _error_mapper

    assert isinstance(_error_mapper(r, r.json()), Unauthenticated)  # what the SDK raises for this answer
    bad = WorkspaceClient(host=fake_dbx.host, token="wrong-token")
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        list(bad.workspace.list("/"))


def test_unknown_endpoint_is_not_found(fake_client):
    with pytest.raises(NotFound) as e:
        fake_client.api_client.do("GET", "/api/2.0/no-such-thing")
    assert e.value.error_code == "ENDPOINT_NOT_FOUND"


def test_me(fake_client):
    assert fake_client.current_user.me().user_name == "local-user@localhost"


def test_workspace_notebook_roundtrip(fake_client, fake_dbx):
    w = fake_client
    w.workspace.mkdirs("/Workspace/Shared/t1")
    w.workspace.upload("/Shared/t1/nb.py", io.BytesIO(NOTEBOOK), format=ImportFormat.AUTO)
    st = w.workspace.get_status("/Shared/t1/nb")
    assert st.object_type == ObjectType.NOTEBOOK and st.language == Language.PYTHON and st.path == "/Shared/t1/nb"
    assert w.workspace.get_status("/Workspace/Shared/t1/nb").object_id == st.object_id
    assert w.workspace.download("/Shared/t1/nb").read() == NOTEBOOK
    # a plain .py file stays a FILE and keeps its name; the bytes are a real file on disk
    w.workspace.upload("/Shared/t1/lib.py", io.BytesIO(b"x = 1\n"), format=ImportFormat.AUTO)
    assert w.workspace.get_status("/Shared/t1/lib.py").object_type == ObjectType.FILE
    assert (fake_dbx.paths.workspace / "Shared/t1/lib.py").read_bytes() == b"x = 1\n"
    names = sorted(o.path for o in w.workspace.list("/Shared/t1"))
    assert names == ["/Shared/t1/lib.py", "/Shared/t1/nb"]
    exported = w.workspace.export("/Shared/t1/nb")
    assert base64.b64decode(exported.content) == NOTEBOOK
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload("/Shared/t1/lib.py", io.BytesIO(b"y"), format=ImportFormat.AUTO)
    w.workspace.upload("/Shared/t1/lib.py", io.BytesIO(b"y"), format=ImportFormat.AUTO, overwrite=True)
    assert w.workspace.download("/Shared/t1/lib.py").read() == b"y"
    w.workspace.import_(
        "/Shared/t1/json_nb",
        content=base64.b64encode(b"print(1)").decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
    )
    assert w.workspace.get_status("/Shared/t1/json_nb").object_type == ObjectType.NOTEBOOK
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.upload("/Shared/missing-parent/x.py", io.BytesIO(b"1"), format=ImportFormat.AUTO)
    with pytest.raises(Exception, match="not empty"):
        w.workspace.delete("/Shared/t1")
    w.workspace.delete("/Shared/t1", recursive=True)
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.get_status("/Shared/t1/nb")


def test_dbfs_put_read_list_move_delete(fake_client):
    w = fake_client
    payload = bytes(range(256)) * 9000  # > 1 MB: upload goes through create/add-block/close
    with w.dbfs.open("/tmp/t2/big.bin", write=True, overwrite=True) as f:
        f.write(payload)
    assert w.dbfs.get_status("dbfs:/tmp/t2/big.bin").file_size == len(payload)
    with w.dbfs.open("/tmp/t2/big.bin", read=True) as f:
        assert f.read() == payload
    w.dbfs.put("/tmp/t2/small.txt", contents=base64.b64encode(b"hello").decode())
    with pytest.raises(ResourceAlreadyExists):
        w.dbfs.put("/tmp/t2/small.txt", contents=base64.b64encode(b"again").decode())
    r = w.dbfs.read("/tmp/t2/small.txt", offset=1, length=3)
    assert base64.b64decode(r.data) == b"ell" and r.bytes_read == 3
    listed = {f.path: f for f in w.dbfs.list("/tmp/t2")}
    assert set(listed) == {"/tmp/t2/big.bin", "/tmp/t2/small.txt"} and listed["/tmp/t2/small.txt"].modification_time > 0
    w.dbfs.move("/tmp/t2/small.txt", "/tmp/t2/moved.txt")
    with pytest.raises(ResourceDoesNotExist):
        w.dbfs.get_status("/tmp/t2/small.txt")
    from databricks.sdk.service.files import DbfsAPI

    with pytest.raises(Exception) as e:  # the raw API call: DbfsExt checks this client-side first
        DbfsAPI.delete(w.dbfs, "/tmp/t2")
    assert getattr(e.value, "error_code", None) == "IO_ERROR"
    w.dbfs.delete("/tmp/t2", recursive=True)
    assert not w.dbfs.exists("/tmp/t2")


def test_files_api_volumes(fake_client):
    w = fake_client
    base = "/Volumes/main/default/vol1/t3"
    w.files.create_directory(base)
    for i in range(5):
        w.files.upload(f"{base}/f{i}.csv", io.BytesIO(f"a,b\n{i},x\n".encode()), overwrite=True)
    got = w.files.download(f"{base}/f3.csv")
    assert got.contents.read() == b"a,b\n3,x\n" and got.content_length == 8
    meta = w.files.get_metadata(f"{base}/f3.csv")
    assert meta.content_length == 8 and meta.last_modified
    entries = list(w.files.list_directory_contents(base, page_size=2))  # 3 pages
    assert [e.name for e in entries] == [f"f{i}.csv" for i in range(5)]
    assert entries[0].file_size == 8 and entries[0].path == f"{base}/f0.csv" and not entries[0].is_directory
    w.files.delete(f"{base}/f0.csv")
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{base}/f0.csv")
    with pytest.raises(NotFound):
        w.files.download(f"{base}/nope.csv")
