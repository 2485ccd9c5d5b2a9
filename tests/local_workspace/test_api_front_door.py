"""The front door under abuse (no JVM): request size caps in Databricks' error shape, field limits
Databricks documents for jobs, DBFS and workspace imports, slow and endless bodies that hold only
their own connection, read deadlines, and the host metadata the SDK resolves its ids from."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from contextlib import closing
from urllib.parse import urlsplit

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import BadRequest, InvalidParameterValue

from dbx_assets.local_workspace.http.request_body import MB, ReadTimeouts
from dbx_assets.local_workspace.http.server import Dispatcher, HttpServer
from dbx_assets.local_workspace.launcher import healthy

LIMIT = 10 * MB


def _connect(host: str) -> socket.socket:
    parts = urlsplit(host)
    assert parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.settimeout(30)
    return sock


def _head(method: str, path: str, token: str | None, extra: str) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n{extra}\r\n".encode()
    )


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One HTTP response off a raw socket: status, headers (lower-cased), JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed mid-body"
        rest += piece
    return int(lines[0].split()[1]), headers, json.loads(rest[:length] or b"{}")


# -- request size ------------------------------------------------------------------------------------


def test_a_30_mb_job_name_is_refused_in_databricks_shape(workspace_client):
    w = workspace_client
    with pytest.raises(BadRequest) as refused:
        w.api_client.do("POST", "/api/2.2/jobs/create", body={"name": "x" * (30 * MB)})
    assert refused.value.error_code == "BAD_REQUEST"
    assert "exceeds maximum allowed content length" in str(refused.value)
    assert f"Limit(bytes): {LIMIT}" in str(refused.value)
    assert not any(len(j.settings.name or "") > 4096 for j in w.jobs.list() if j.settings)
    assert w.current_user.me().user_name  # the same client goes on working


def test_a_12_mb_body_is_refused_from_its_length_before_any_of_it_is_sent(local_workspace):
    # Only the headers go out: the answer cannot depend on reading (let alone holding) the body.
    with closing(_connect(local_workspace.host)) as sock:
        sock.sendall(_head("POST", "/api/2.2/jobs/create", local_workspace.token, f"Content-Length: {12 * MB}\r\n"))
        status, headers, body = _read_response(sock)
        assert status == 400 and body["error_code"] == "BAD_REQUEST"
        assert f"RequestSize(bytes): {12 * MB}, Limit(bytes): {LIMIT}" in body["message"]
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""  # and the server hangs up: the rest of that body is never read


def test_a_chunked_body_is_read_up_to_the_cap_and_no_further(local_workspace):
    chunk = b"x" * MB
    with closing(_connect(local_workspace.host)) as sock:
        sock.sendall(_head("POST", "/api/2.2/jobs/create", local_workspace.token, "Transfer-Encoding: chunked\r\n"))
        for _ in range(11):  # 11 MiB and no final chunk: a body with no announced end
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        status, _, body = _read_response(sock)
    assert status == 400 and body["error_code"] == "BAD_REQUEST"
    assert f"Limit(bytes): {LIMIT}" in body["message"]


def test_no_body_is_read_from_a_client_without_credentials(local_workspace):
    with closing(_connect(local_workspace.host)) as sock:
        sock.sendall(_head("POST", "/api/2.2/jobs/create", None, f"Content-Length: {5 * MB}\r\n"))
        status, _, body = _read_response(sock)
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED"


def test_a_refused_request_without_a_body_keeps_its_connection(local_workspace):
    with closing(_connect(local_workspace.host)) as sock:
        sock.sendall(_head("GET", "/api/2.1/clusters/list", None, ""))
        status, headers, _ = _read_response(sock)
        assert status == 401 and headers.get("connection") != "close"
        sock.sendall(_head("GET", "/api/2.1/clusters/list", local_workspace.token, ""))
        assert _read_response(sock)[0] == 200


def test_expect_100_continue_gets_the_refusal_instead_of_an_invitation(local_workspace):
    with closing(_connect(local_workspace.host)) as sock:
        extra = f"Content-Length: {20 * MB}\r\nExpect: 100-continue\r\n"
        sock.sendall(_head("POST", "/api/2.2/jobs/create", local_workspace.token, extra))
        status, _, body = _read_response(sock)
    assert status == 400 and "exceeds maximum allowed content length" in body["message"]


def test_malformed_framing_is_answered_in_databricks_shape(local_workspace):
    with closing(_connect(local_workspace.host)) as sock:
        sock.sendall(_head("POST", "/api/2.2/jobs/create", local_workspace.token, "Content-Length: ten\r\n"))
        status, _, body = _read_response(sock)
    assert status == 400 and body["error_code"] == "BAD_REQUEST" and "Content-Length" in body["message"]
    with closing(_connect(local_workspace.host)) as sock:  # the HTTP parser's own refusals, too
        sock.sendall(
            b"GET /api/2.1/clusters/list HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n"
        )
        status, headers, body = _read_response(sock)
    assert status == 431 and headers["content-type"] == "application/json" and body["error_code"] == "BAD_REQUEST"


def test_an_upload_route_takes_more_than_10_mb_spooled(workspace_client):
    """The Files API documents uploads up to 5 GiB: above the default cap, on disk while they arrive."""
    w = workspace_client
    data = bytes(range(256)) * (12 * MB // 256)
    w.files.upload("/Volumes/main/default/front_door/big.bin", io.BytesIO(data), overwrite=True)
    contents = w.files.download("/Volumes/main/default/front_door/big.bin").contents
    assert contents is not None and contents.read() == data


# -- field limits Databricks documents ------------------------------------------------------------------

NOTEBOOK_TASK = {"notebook_task": {"notebook_path": "/Shared/x"}, "existing_cluster_id": "c"}


def _task(key: str = "t", **extra) -> dict:
    return {"task_key": key, **NOTEBOOK_TASK, **extra}


OVER_THE_LIMITS = {
    "name over 4096 bytes (2,049 two-byte characters)": {"name": "é" * 2049},
    "description over 27700 characters": {"description": "d" * 27701},
    "1001 tasks": {"tasks": [_task(f"t{i}") for i in range(1001)]},
    "task_key over 100 characters": {"tasks": [_task("k" * 101)]},
    "task_key with a space": {"tasks": [_task("has space")]},
    "task_key with a dot": {"tasks": [_task("a.b")]},
    "task description over 1000 characters": {"tasks": [_task(description="d" * 1001)]},
    "job_cluster_key with a slash": {
        "job_clusters": [
            {"job_cluster_key": "a/b", "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 0}}
        ]
    },
    "26 tags": {"tags": {f"k{i}": "v" for i in range(26)}},
    "max_concurrent_runs 1001": {"max_concurrent_runs": 1001},
    "job parameter name with a space": {"parameters": [{"name": "a b", "default": "x"}]},
    "4 webhook destinations": {"webhook_notifications": {"on_failure": [{"id": str(i)} for i in range(4)]}},
    "11 dbt commands": {
        "tasks": [
            {"task_key": "dbt", "dbt_task": {"commands": ["dbt run"] * 11}, "existing_cluster_id": "c"},
        ]
    },
    "base_parameters over 1 MB": {
        "tasks": [_task(notebook_task={"notebook_path": "/x", "base_parameters": {"p": "v" * MB}})]
    },
    "git_commit over 64 characters": {
        "git_source": {"git_url": "https://example.com/r.git", "git_provider": "gitHub", "git_commit": "c" * 65}
    },
}

AT_THE_LIMITS = {
    "name": "é" * 2048,  # 4096 bytes
    "description": "d" * 27700,
    "tags": {f"k{i}": "v" for i in range(25)},
    "max_concurrent_runs": 1000,
    "parameters": [{"name": "a-b_c.d", "default": "x"}],
    "tasks": [_task("k" * 100, description="d" * 1000), _task("Task-Key_2")],
}


@pytest.mark.parametrize("settings", OVER_THE_LIMITS.values(), ids=OVER_THE_LIMITS.keys())
def test_documented_job_limits_are_refused_by_every_write_endpoint(fake_client, settings):
    w = fake_client
    job_id = w.api_client.do("POST", "/api/2.2/jobs/create", body={"name": "limits"})["job_id"]
    calls = {
        "create": ("/api/2.2/jobs/create", settings),
        "reset": ("/api/2.2/jobs/reset", {"job_id": job_id, "new_settings": settings}),
        "update": ("/api/2.2/jobs/update", {"job_id": job_id, "new_settings": settings}),
    }
    if "tasks" in settings or "git_source" in settings:
        run_name = {"run_name": settings["name"]} if "name" in settings else {}
        calls["submit"] = (
            "/api/2.2/jobs/runs/submit",
            {**run_name, **{k: v for k, v in settings.items() if k in ("tasks", "git_source")}},
        )
    for endpoint, (path, body) in calls.items():
        with pytest.raises(InvalidParameterValue) as refused:
            w.api_client.do("POST", path, body=body)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", endpoint
    assert w.api_client.do("GET", "/api/2.2/jobs/get", query={"job_id": job_id})["settings"]["name"] == "limits"


def test_a_run_name_over_4096_bytes_is_refused_by_submit(fake_client):
    with pytest.raises(InvalidParameterValue, match="run_name"):
        fake_client.api_client.do(
            "POST", "/api/2.2/jobs/runs/submit", body={"run_name": "r" * 4097, "tasks": [_task()]}
        )


def test_values_at_the_documented_limits_are_accepted(fake_client):
    w = fake_client
    job_id = w.api_client.do("POST", "/api/2.2/jobs/create", body=AT_THE_LIMITS)["job_id"]
    settings = w.api_client.do("GET", "/api/2.2/jobs/get", query={"job_id": job_id})["settings"]
    assert settings["name"] == AT_THE_LIMITS["name"] and len(settings["tags"]) == 25
    w.api_client.do("POST", "/api/2.2/jobs/reset", body={"job_id": job_id, "new_settings": AT_THE_LIMITS})
    thousand = {"name": "wide", "tasks": [_task(f"t{i}") for i in range(1000)]}
    assert w.api_client.do("POST", "/api/2.2/jobs/create", body=thousand)["job_id"]


def test_dbfs_put_inline_contents_over_1_mb(fake_client):
    w = fake_client
    one_mb = base64.b64encode(b"a" * MB).decode()
    w.dbfs.put("/front_door/one_mb.bin", contents=one_mb, overwrite=True)
    with pytest.raises(BadRequest) as refused:
        w.dbfs.put("/front_door/too_big.bin", contents=base64.b64encode(b"a" * (MB + 1)).decode(), overwrite=True)
    assert refused.value.error_code == "MAX_BLOCK_SIZE_EXCEEDED"
    handle = w.dbfs.create("/front_door/blocks.bin", overwrite=True).handle
    assert handle is not None
    with pytest.raises(BadRequest) as refused:
        w.dbfs.add_block(handle, base64.b64encode(b"a" * (MB + 1)).decode())
    assert refused.value.error_code == "MAX_BLOCK_SIZE_EXCEEDED"


def test_a_workspace_import_over_10_mb_is_refused_by_name(fake_client):
    """The request itself may exceed 10 MB (base64 of a 10 MB file); the file may not."""
    w = fake_client
    content = base64.b64encode(b"#" * (LIMIT + 1)).decode()
    with pytest.raises(BadRequest) as refused:
        w.api_client.do(
            "POST", "/api/2.0/workspace/import", body={"path": "/Shared/big.txt", "format": "AUTO", "content": content}
        )
    assert refused.value.error_code == "MAX_NOTEBOOK_SIZE_EXCEEDED"
    assert f"exceeded max size ({LIMIT} bytes)" in str(refused.value)


# -- slow, endless and oversized clients ---------------------------------------------------------------


def _trickle(host: str, token: str, stop: threading.Event, sent: list[int]) -> None:
    """An endless chunked body to jobs/create, one byte at a time."""
    with closing(_connect(host)) as sock:
        sock.sendall(_head("POST", "/api/2.2/jobs/create", token, "Transfer-Encoding: chunked\r\n"))
        while not stop.is_set():
            try:
                sock.sendall(b"1\r\nx\r\n")
            except OSError:
                return  # cut off by the server
            sent[0] += 1
            stop.wait(0.05)


def _oversize(host: str, token: str, stop: threading.Event) -> None:
    """Oversized bodies, one after another."""
    while not stop.is_set():
        with closing(_connect(host)) as sock:
            sock.sendall(_head("POST", "/api/2.2/jobs/create", token, "Transfer-Encoding: chunked\r\n"))
            try:
                for _ in range(12):
                    sock.sendall(b"%x\r\n" % MB + b"y" * MB + b"\r\n")
                _read_response(sock)
            except (OSError, AssertionError):
                pass


def test_other_clients_are_served_while_some_trickle_endless_bodies(local_workspace, workspace_client):
    stop = threading.Event()
    sent: list[list[int]] = [[0] for _ in range(8)]
    threads = [
        threading.Thread(target=_trickle, args=(local_workspace.host, local_workspace.token, stop, s), daemon=True)
        for s in sent
    ]
    threads.append(
        threading.Thread(target=_oversize, args=(local_workspace.host, local_workspace.token, stop), daemon=True)
    )
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while sum(s[0] for s in sent) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)  # every trickler is connected and sending
        assert sum(s[0] for s in sent) >= 40
        # Meanwhile, another client through the SDK (its own connections and timeouts: generous).
        config = Config(host=local_workspace.host, token=local_workspace.token, http_timeout_seconds=30)
        client = WorkspaceClient(config=config)
        for _ in range(3):
            assert isinstance(list(client.clusters.list()), list)
        assert client.current_user.me().user_name
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert healthy(local_workspace.state_dir) is not None  # and the server is fine afterwards
    assert workspace_client.clusters.list_node_types().node_types


@pytest.fixture
def tight_server():
    """A front door with deadlines of a second or two (the workspace's are 20 s, mod_reqtimeout's)."""
    d = Dispatcher("t0ken")
    d.route("POST", "/api/2.0/echo", lambda req: {"bytes": len(req.body)})
    timeouts = ReadTimeouts(keepalive_s=1.5, header_s=1.5, body_s=1.5, body_min_rate=1000, linger_s=1)
    server = HttpServer(d, timeouts=timeouts)
    server.start_background()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()


def test_a_trickled_body_is_cut_off_with_408(tight_server):
    with closing(_connect(tight_server)) as sock:
        sock.sendall(_head("POST", "/api/2.0/echo", "t0ken", "Content-Length: 100000\r\n"))
        status = None
        for _ in range(200):  # well past the deadline: 1.5 s + 1 s per 1000 bytes, at 20 bytes a second
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.05)
            try:
                status, _, body = _read_response(sock)
                break
            except TimeoutError:
                continue
            finally:
                sock.settimeout(30)
        assert status == 408 and body["error_code"] == "BAD_REQUEST"
    assert requests.post(
        tight_server + "/api/2.0/echo", data=b"abc", headers={"Authorization": "Bearer t0ken"}, timeout=30
    ).json() == {"bytes": 3}


def test_trickled_headers_and_idle_connections_are_closed(tight_server):
    with closing(_connect(tight_server)) as slow_headers, closing(_connect(tight_server)) as idle:
        slow_headers.sendall(b"POST /api/2.0/ec")
        for _ in range(100):  # a byte every 50 ms, never finishing the request line
            try:
                slow_headers.sendall(b"h")
            except OSError:
                break
            time.sleep(0.05)
        assert _closed(slow_headers)
        assert _closed(idle)  # sent nothing at all: closed after the keep-alive wait


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_a_keepalive_connection_serves_requests_one_after_another(tight_server):
    """The deadlines are per request: a reused connection gets a fresh budget for each one."""
    with closing(_connect(tight_server)) as sock:
        for i in range(3):
            body = b"x" * (i + 1)
            sock.sendall(_head("POST", "/api/2.0/echo", "t0ken", f"Content-Length: {len(body)}\r\n") + body)
            status, _, answer = _read_response(sock)
            assert status == 200 and answer == {"bytes": i + 1}
            time.sleep(0.6)  # together longer than one deadline


def test_a_tls_client_that_never_handshakes_does_not_stop_others(tmp_path):
    """The TLS handshake happens in each connection's thread, not in the one accepting connections."""
    from dbx_assets.local_workspace.http.tls import server_context

    d = Dispatcher("t0ken")
    d.route("GET", "/api/2.0/ping", lambda req: {"pong": True})
    server = HttpServer(d, ssl_context=server_context(tmp_path / "tls"), timeouts=ReadTimeouts(header_s=2))
    server.start_background()
    try:
        host = f"https://127.0.0.1:{server.port}"
        with closing(_connect(host)) as silent:  # TCP connected, no ClientHello
            answer = requests.get(
                host + "/api/2.0/ping",
                headers={"Authorization": "Bearer t0ken"},
                verify=str(tmp_path / "tls" / "cert.pem"),
                timeout=30,
            )
            assert answer.json() == {"pong": True}
            assert _closed(silent)  # dropped once its handshake deadline passes
    finally:
        server.shutdown()


# -- host metadata --------------------------------------------------------------------------------------


def test_the_sdk_resolves_account_and_workspace_ids_from_host_metadata(local_workspace, monkeypatch):
    for var in ("DATABRICKS_ACCOUNT_ID", "DATABRICKS_WORKSPACE_ID", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    doc = requests.get(local_workspace.host + "/.well-known/databricks-config", timeout=30).json()
    config = Config(host=local_workspace.host, token=local_workspace.token)
    assert config.account_id == doc["account_id"] and len(doc["account_id"]) == 36
    assert config.workspace_id == doc["workspace_id"] and doc["workspace_id"].isdigit()
    assert doc["oidc_endpoint"] == local_workspace.host + "/oidc"
    w = WorkspaceClient(config=config)
    assert w.get_workspace_id() == int(doc["workspace_id"])
    me = w.api_client.do("GET", "/api/2.0/preview/scim/v2/Me", response_headers=["X-Databricks-Org-Id"])
    assert (
        isinstance(me, dict) and me["X-Databricks-Org-Id"] == doc["workspace_id"]
    )  # what get_workspace_id() reads when not configured


def test_host_metadata_is_stable_for_a_state_dir(tmp_path):
    from dbx_assets.local_workspace.app import LocalWorkspace

    first = LocalWorkspace(tmp_path / "ws").start()
    try:
        ids = first.host_metadata.document()
    finally:
        first.close()
    again = LocalWorkspace(tmp_path / "ws").start()
    try:
        doc = requests.get(again.host + "/.well-known/databricks-config", timeout=30).json()
        assert (doc["account_id"], doc["workspace_id"]) == (ids["account_id"], ids["workspace_id"])
    finally:
        again.close()
    other = LocalWorkspace(tmp_path / "other").start()
    try:
        assert other.host_metadata.workspace_id != ids["workspace_id"]
    finally:
        other.close()
