"""What many tests do through the SDK against a local workspace: upload a notebook, wait for a run."""

from __future__ import annotations

import io
import posixpath
import time

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

NOTEBOOK_HEADER = "# Databricks notebook source\n"
TERMINAL = (jobs.RunLifeCycleState.TERMINATED, jobs.RunLifeCycleState.INTERNAL_ERROR, jobs.RunLifeCycleState.SKIPPED)


def upload_notebook(w: WorkspaceClient, path: str, body: str) -> str:
    """Import `body` as a SOURCE notebook at `path` (folders created); returns the path."""
    w.workspace.mkdirs(posixpath.dirname(path))
    w.workspace.upload(
        path + ".py", io.BytesIO((NOTEBOOK_HEADER + body).encode()), format=ImportFormat.AUTO, overwrite=True
    )
    return path


def wait_for_run(w: WorkspaceClient, run_id: int, timeout: float = 120, poll: float = 0.3) -> jobs.Run:
    """The run once it reached a terminal state; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = w.jobs.get_run(run_id)
        if run.state and run.state.life_cycle_state in TERMINAL:
            return run
        time.sleep(poll)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")
