"""Server process behaviour: restart persistence, TLS, connection file, the run page."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import certifi
import pytest
import requests
from databricks.sdk import WorkspaceClient

from dbx_assets.local_workspace.launcher import ensure_running, stop


def test_restart_keeps_state_token_and_marks_active_runs(tmp_path):
    conn = ensure_running(tmp_path, timeout=60)
    info = json.loads((tmp_path / "connection.json").read_text())
    assert stat.S_IMODE(os.stat(tmp_path / "connection.json").st_mode) == 0o600
    w = WorkspaceClient(host=conn.host, token=conn.token)
    w.dbfs.put("/keep/me.txt", contents=base64.b64encode(b"persisted").decode())
    w.workspace.mkdirs("/Shared/keep")
    job_id = w.jobs.create(name="persisted-job", tasks=[]).job_id
    assert job_id is not None
    assert ensure_running(tmp_path).host == conn.host  # reuses the healthy server
    assert stop(tmp_path)
    conn2 = ensure_running(tmp_path, timeout=60)
    assert conn2.token == conn.token
    assert json.loads((tmp_path / "connection.json").read_text())["pid"] != info["pid"]
    w2 = WorkspaceClient(host=conn2.host, token=conn2.token)
    data = w2.dbfs.read("/keep/me.txt").data
    assert data is not None and base64.b64decode(data) == b"persisted"
    settings = w2.jobs.get(job_id).settings
    assert settings is not None and settings.name == "persisted-job"
    object_type = w2.workspace.get_status("/Shared/keep").object_type
    assert object_type is not None and object_type.value == "DIRECTORY"
    assert stop(tmp_path)
    assert (
        b"Bearer" not in (tmp_path / "server.log").read_bytes()
        and conn.token.encode() not in (tmp_path / "server.log").read_bytes()
    )


def test_tls_with_ca_bundle(tmp_path, monkeypatch):
    conn = ensure_running(tmp_path, timeout=60, tls=True)
    try:
        assert conn.host.startswith("https://127.0.0.1:")
        cert = tmp_path / "tls" / "cert.pem"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        w = WorkspaceClient(host=conn.host, token=conn.token)
        assert w.current_user.me().user_name == "local-user@localhost"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(conn.host + "/", verify=certifi.where(), timeout=10)  # public CAs do not trust it
    finally:
        stop(tmp_path)


def test_status_cli_and_run_page(local_workspace):
    out = subprocess.run(
        [sys.executable, "-m", "dbx_assets.local_workspace", "status", "--state-dir", str(local_workspace.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["host"] == local_workspace.host
    assert requests.get(local_workspace.host + "/", timeout=10).status_code == 401  # the pages need a login
    auth = {"Authorization": f"Bearer {local_workspace.token}"}
    page = requests.get(local_workspace.host + "/", headers=auth, timeout=10)
    assert page.status_code == 200 and "Local Databricks workspace" in page.text
