"""dbutils.secrets and redaction: the runtime side.

The first test runs the runtime's secrets module in a plain process against a store the
Secrets API wrote (fast, no Spark). The second is the one real-Spark test: a workspace with
real clusters, secrets put through the SDK, a notebook job that prints and returns them."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
from datetime import timedelta

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.workspace import ImportFormat

from dbx_assets.local_workspace.app import LocalWorkspace, configure_logging

VALUE = "sk-live-4f9a0c7e51"
PEM = "-----BEGIN KEY-----\nQUJDREVGR0g=\n-----END KEY-----"

_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from pathlib import Path
    from dbx_assets.local_workspace.runtime.dbutils import SecretsUtils
    from dbx_assets.local_workspace.runtime.secrets import REDACTOR, WorkspaceSecrets
    from dbx_assets.local_workspace.runtime.contract import TaskOutcome

    store, scope = Path(sys.argv[1]), sys.argv[2]
    print("before any secret", flush=True)
    s = WorkspaceSecrets(store, fallback=SecretsUtils())
    v = s.get(scope, "api_key")
    print("value:", v)
    sys.stderr.write("stderr " + v + "\\n")
    print({"k": v})
    subprocess.run(["echo", "child " + v], check=True)  # a child process writes to fd 1 directly
    for ch in v.encode():  # one byte per write: the literal straddles many pipe reads
        os.write(1, bytes([ch]))
    os.write(1, b"\\n")
    sys.stdout.write("x" * 70000 + v + "\\n")  # across the pump's 64 KB reads
    pem = s.get(scope, "pem")
    print(pem)
    print(repr(pem))
    print(s.getBytes(scope, "blob"))
    print("prefix only:", v[:6])  # not the literal: stays as is
    print("keys:", sorted(m.key for m in s.list(scope)), "scope listed:", scope in {x.name for x in s.listScopes()})
    try:
        s.get(scope, "missing")
    except Exception as e:
        print("error:", type(e).__name__, e)
    o = REDACTOR.redact_outcome(TaskOutcome("FAILED", notebook_result=v, error="ValueError: bad " + v, error_trace="tb " + pem))
    print("outcome:", o.notebook_result, "|", o.error, "|", o.error_trace.replace("\\n", " "))
    REDACTOR.close()
""")


def test_dbutils_secrets_reads_the_store_and_redacts_every_output_path(fake_client, fake_workspace, tmp_path):
    scope = "runtime-redaction"
    fake_client.secrets.create_scope(scope)
    fake_client.secrets.put_secret(scope, "api_key", string_value=VALUE)
    fake_client.secrets.put_secret(scope, "pem", string_value=PEM)
    fake_client.secrets.put_secret(scope, "blob", bytes_value="YmxvYi1zZWNyZXQtYnl0ZXM=")  # b"blob-secret-bytes"
    log = tmp_path / "logs.txt"
    with open(log, "wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(fake_workspace.paths.secrets), scope],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    for literal in (VALUE, PEM, repr(PEM)[1:-1], "blob-secret-bytes", "QUJDREVGR0g="):
        assert literal not in text
    lines = text.splitlines()
    assert lines[0] == "before any secret"
    assert "value: [REDACTED]" in lines
    assert "stderr [REDACTED]" in lines
    assert "{'k': '[REDACTED]'}" in lines
    assert "child [REDACTED]" in lines
    assert lines.count("[REDACTED]") >= 2  # the byte-by-byte write and the multi-line PEM
    assert "x" * 70000 + "[REDACTED]" in lines
    assert "'[REDACTED]'" in lines and "b'[REDACTED]'" in lines
    assert f"prefix only: {VALUE[:6]}" in lines
    assert "keys: ['api_key', 'blob', 'pem'] scope listed: True" in lines
    assert (
        f"error: IllegalArgumentException Secret does not exist with scope: {scope} and key: missing "
        f"(locally: `databricks secrets put-secret {scope} missing`, or set the environment variable "
        "DBX_SECRET_RUNTIME_REDACTION_MISSING)"
    ) in lines
    assert "outcome: [REDACTED] | ValueError: bad [REDACTED] | tb [REDACTED]" in lines


NOTEBOOK = b"""# Databricks notebook source
key = dbutils.secrets.get("demo", "api_key")
print(f"using key {key}")
print("scopes:", [s.name for s in dbutils.secrets.listScopes()], "keys:", [m.key for m in dbutils.secrets.list("demo")])
assert spark.range(3).count() == 3
# COMMAND ----------
if dbutils.widgets.get("fail") == "yes":
    raise ValueError(f"the API refused {key}")
dbutils.notebook.exit(f"key was {key}")
"""


def test_notebook_job_reads_a_secret_and_every_output_is_redacted(tmp_path):
    state_dir = tmp_path / "ws"
    state_dir.mkdir()
    configure_logging(state_dir)  # server.log, as `python -m dbx_assets.local_workspace` writes it
    ws = LocalWorkspace(state_dir).start()
    try:
        w = WorkspaceClient(host=ws.host, token=ws.token)
        w.secrets.create_scope("demo")
        w.secrets.put_secret("demo", "api_key", string_value=VALUE)
        w.workspace.mkdirs("/Shared/secrets")
        w.workspace.upload("/Shared/secrets/use_key.py", io.BytesIO(NOTEBOOK), format=ImportFormat.AUTO, overwrite=True)
        # One job cluster for both tasks: a single JVM start.
        nb = "/Shared/secrets/use_key"
        job_id = w.jobs.create(
            name="secrets-e2e",
            job_clusters=[
                jobs.JobCluster(
                    job_cluster_key="main",
                    new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
                )
            ],
            tasks=[
                jobs.Task(
                    task_key="ok",
                    job_cluster_key="main",
                    notebook_task=jobs.NotebookTask(notebook_path=nb, base_parameters={"fail": "no"}),
                ),
                jobs.Task(
                    task_key="fails",
                    job_cluster_key="main",
                    depends_on=[jobs.TaskDependency(task_key="ok")],
                    notebook_task=jobs.NotebookTask(notebook_path=nb, base_parameters={"fail": "yes"}),
                ),
            ],
        ).job_id
        assert job_id is not None
        run = w.jobs.run_now(job_id).result(timeout=timedelta(minutes=5))
        assert run.tasks is not None and run.run_id is not None
        tasks = {t.task_key: t for t in run.tasks}
        ok_id, failed_id = tasks["ok"].run_id, tasks["fails"].run_id
        assert ok_id is not None and failed_id is not None
        ok, failed = w.jobs.get_run_output(ok_id), w.jobs.get_run_output(failed_id)
        ok_state, failed_state = tasks["ok"].state, tasks["fails"].state
        assert ok_state is not None and ok_state.result_state == jobs.RunResultState.SUCCESS, ok_state
        assert ok.notebook_output is not None and ok.notebook_output.result == "key was [REDACTED]"
        assert failed_state is not None and failed_state.result_state == jobs.RunResultState.FAILED
        assert failed.error == "ValueError: the API refused [REDACTED]"
        assert failed.error_trace is not None
        assert "[REDACTED]" in failed.error_trace and VALUE not in failed.error_trace
        assert VALUE not in repr(w.jobs.get_run(run.run_id).as_dict())  # state messages too
        for t in tasks.values():  # the task's log file on disk: printed value redacted
            logs = (ws.paths.task_runs / str(t.run_id) / "logs.txt").read_text()
            assert "using key [REDACTED]" in logs, logs
            assert "scopes: ['demo'] keys: ['api_key']" in logs
    finally:
        ws.close()
        for handler in logging.getLogger("dbx_local_workspace").handlers[:]:
            if getattr(handler, "baseFilename", "").startswith(str(state_dir)):
                logging.getLogger("dbx_local_workspace").removeHandler(handler)
                handler.close()
    server_log = (state_dir / "server.log").read_text()
    assert "POST /api/2.0/secrets/put -> 200" in server_log
    leaks = [
        p
        for p in state_dir.rglob("*")
        if p.is_file() and p.parent != ws.paths.secrets and VALUE.encode() in p.read_bytes()
    ]
    assert leaks == []  # not in server.log, state.db, invocation.json, logs.txt, outcome.json, driver.log...
