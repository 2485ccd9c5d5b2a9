"""Seeded, bounded fuzz over the request bodies the Jobs, Clusters, DBFS and Workspace APIs accept:
explicit nulls, missing optionals, unknown fields and wrong types, at the top level and nested.
Every request must end in a Databricks-shaped answer (success, or a 4xx `{"error_code", "message"}`),
never a 500 from a crash, and every run created must reach a terminal state within a bound.
Only 127.0.0.1 is contacted (the in-process fake workspace). FUZZ_SEED / FUZZ_CASES override."""

from __future__ import annotations

import base64
import copy
import io
import os
import random
import time

import pytest
import requests
from databricks.sdk.service.workspace import ImportFormat

SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
CASES = int(os.environ.get("FUZZ_CASES", "240"))
RUN_BOUND_SECONDS = 90
CLUSTER = {"spark_version": "15.4.x-scala2.12", "num_workers": 0, "spark_conf": {"a": "b"}, "custom_tags": {"t": "1"}}
WRONG = [None, 0, -1, 1.5, True, "", "x", [], [None], {}, {"unknown": 1}, "null"]


def templates(nb: str, job_id: int, cluster_id: str) -> list[tuple[str, str, dict]]:
    task = {
        "task_key": "t",
        "notebook_task": {"notebook_path": nb, "base_parameters": {"x": "1"}, "source": "WORKSPACE"},
        "new_cluster": CLUSTER,
        "libraries": [{"pypi": {"package": "six"}}],
        "timeout_seconds": 30,
        "run_if": "ALL_SUCCESS",
        "max_retries": 0,
    }
    second = {
        "task_key": "u",
        "notebook_task": {"notebook_path": nb},
        "depends_on": [{"task_key": "t"}],
        "existing_cluster_id": cluster_id,
    }
    return [
        (
            "POST",
            "/api/2.1/jobs/runs/submit",
            {"run_name": "fuzz", "tasks": [task, second], "timeout_seconds": 60, "idempotency_token": None},
        ),
        (
            "POST",
            "/api/2.1/jobs/runs/submit",
            {
                "run_name": "fuzz_single",
                "notebook_task": {"notebook_path": nb},
                "new_cluster": CLUSTER,
                "libraries": [],
            },
        ),
        (
            "POST",
            "/api/2.2/jobs/create",
            {
                "name": "fuzz",
                "tasks": [dict(task, new_cluster=None, job_cluster_key="c")],
                "job_clusters": [{"job_cluster_key": "c", "new_cluster": CLUSTER}],
                "max_concurrent_runs": 5,
                "parameters": [{"name": "p", "default": "d"}],
                "queue": {"enabled": True},
            },
        ),
        (
            "POST",
            "/api/2.1/jobs/run-now",
            {
                "job_id": job_id,
                "job_parameters": {"p": "v"},
                "only": ["t"],
                "notebook_params": {"x": "2"},
                "idempotency_token": None,
            },
        ),
        (
            "POST",
            "/api/2.1/jobs/update",
            {
                "job_id": job_id,
                "new_settings": {"timeout_seconds": 100, "tasks": [task]},
                "fields_to_remove": ["schedule"],
            },
        ),
        (
            "POST",
            "/api/2.1/jobs/runs/repair",
            {"run_id": 1, "rerun_tasks": ["t"], "latest_repair_id": 1, "rerun_all_failed_tasks": False},
        ),
        ("POST", "/api/2.1/jobs/runs/cancel", {"run_id": 1}),
        ("POST", "/api/2.1/jobs/runs/cancel-all", {"job_id": 1, "all_queued_runs": False}),
        (
            "GET",
            "/api/2.1/jobs/runs/list",
            {
                "job_id": job_id,
                "limit": 5,
                "active_only": "false",
                "page_token": "0",
                "start_time_from": 0,
                "expand_tasks": "true",
            },
        ),
        ("GET", "/api/2.1/jobs/list", {"limit": 5, "offset": 0, "name": "fuzz", "expand_tasks": "false"}),
        ("GET", "/api/2.1/jobs/runs/get", {"run_id": 1, "include_history": "true"}),
        ("GET", "/api/2.1/jobs/runs/get-output", {"run_id": 1}),
        (
            "POST",
            "/api/2.1/clusters/create",
            dict(CLUSTER, cluster_name="fuzz", autotermination_minutes=10, spark_env_vars={"E": "1"}, autoscale=None),
        ),
        ("POST", "/api/2.1/clusters/edit", dict(CLUSTER, cluster_id=cluster_id, cluster_name="fuzz-edit")),
        ("POST", "/api/2.1/clusters/start", {"cluster_id": cluster_id}),
        ("GET", "/api/2.1/clusters/get", {"cluster_id": cluster_id}),
        ("GET", "/api/2.1/clusters/list-node-types", {}),
        (
            "POST",
            "/api/2.0/dbfs/put",
            {"path": "/fuzz/a.txt", "contents": base64.b64encode(b"abc").decode(), "overwrite": True},
        ),
        ("POST", "/api/2.0/dbfs/create", {"path": "/fuzz/b.txt", "overwrite": True}),
        ("POST", "/api/2.0/dbfs/add-block", {"handle": 1, "data": base64.b64encode(b"abc").decode()}),
        ("POST", "/api/2.0/dbfs/close", {"handle": 1}),
        ("POST", "/api/2.0/dbfs/mkdirs", {"path": "/fuzz/dir"}),
        ("POST", "/api/2.0/dbfs/move", {"source_path": "/fuzz/nope", "destination_path": "/fuzz/nope2"}),
        ("POST", "/api/2.0/dbfs/delete", {"path": "/fuzz/dir", "recursive": True}),
        ("GET", "/api/2.0/dbfs/read", {"path": "/fuzz/a.txt", "offset": 0, "length": 2}),
        ("GET", "/api/2.0/dbfs/list", {"path": "/fuzz"}),
        (
            "POST",
            "/api/2.0/workspace/import",
            {
                "path": "/Shared/fuzz/nb",
                "content": base64.b64encode(b"print(1)").decode(),
                "format": "SOURCE",
                "language": "PYTHON",
                "overwrite": True,
            },
        ),
        ("POST", "/api/2.0/workspace/mkdirs", {"path": "/Shared/fuzz/d"}),
        ("POST", "/api/2.0/workspace/delete", {"path": "/Shared/fuzz/d", "recursive": False}),
        ("GET", "/api/2.0/workspace/get-status", {"path": "/Shared/fuzz"}),
        ("GET", "/api/2.0/workspace/export", {"path": "/Shared/fuzz/nb", "format": "SOURCE"}),
        ("GET", "/api/2.0/workspace/list", {"path": "/Shared/fuzz"}),
    ]


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document, to pick a mutation target from."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def mutate(rng: random.Random, body: dict) -> dict:
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        targets = [p for p, _ in _paths(body) if p]
        if not targets:
            body[f"unknown_{rng.randint(0, 9)}"] = copy.deepcopy(rng.choice(WRONG))
            continue
        path = rng.choice(targets)
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        action = rng.choice(("null", "delete", "wrong", "unknown"))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "unknown" and isinstance(parent, dict):
            parent[f"unknown_{rng.randint(0, 9)}"] = copy.deepcopy(rng.choice(WRONG))
        elif action == "null":
            parent[key] = None
        else:
            parent[key] = copy.deepcopy(rng.choice(WRONG))
    return body


def check_answer(r: requests.Response, what: str) -> dict:
    assert r.status_code != 500 and r.status_code < 500, f"{what} -> {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        assert 400 <= r.status_code < 500
        err = r.json()
        assert isinstance(err.get("error_code"), str) and err["error_code"] and isinstance(err.get("message"), str), (
            f"{what} -> {r.text}"
        )
        return {}
    return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else {}


@pytest.fixture(scope="module")
def fuzz_setup(fake_workspace, fake_client):
    w = fake_client
    w.workspace.mkdirs("/Shared/fuzz")
    w.workspace.upload(
        "/Shared/fuzz/ok.py",
        io.BytesIO(b"# Databricks notebook source\nprint('ok')\n"),
        format=ImportFormat.AUTO,
        overwrite=True,
    )
    job_id = w.jobs.create(name="fuzz-base", max_concurrent_runs=5).job_id
    cluster_id = (
        w.clusters.create(cluster_name="fuzz-ap", spark_version="15.4.x-scala2.12", num_workers=0).result().cluster_id
    )
    return "/Shared/fuzz/ok", job_id, cluster_id


def test_fuzzed_requests_get_databricks_shaped_answers_and_runs_finish(fake_workspace, fuzz_setup):
    nb, job_id, cluster_id = fuzz_setup
    rng = random.Random(SEED)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fake_workspace.token}"
    catalog = templates(nb, job_id, cluster_id)
    run_ids: set[int] = set()
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for case in range(CASES):
        method, path, template = rng.choice(catalog)
        body = template if rng.random() < 0.15 else mutate(rng, template)
        what = f"case {case} (seed {SEED}): {method} {path} {body!r}"
        if method == "GET":
            params = {
                k: (v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v)
                for k, v in body.items()
                if not isinstance(v, (dict, list))
            }
            r = session.get(fake_workspace.host + path, params=params, timeout=30)
        else:
            r = session.post(fake_workspace.host + path, json=body, timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        answer = check_answer(r, what)
        if "run_id" in answer and path.endswith(("runs/submit", "run-now")):
            run_ids.add(int(answer["run_id"]))
    # Raw bytes that are not JSON objects are 400s too.
    for raw in (b"{", b"[]", b"null", b"\xff\xfe", b'{"run_name": "x", "tasks": "t"}'):
        check_answer(session.post(fake_workspace.host + "/api/2.1/jobs/runs/submit", data=raw, timeout=30), repr(raw))
    assert statuses.get(200, 0) > CASES // 10 and sum(v for k, v in statuses.items() if k >= 400) > CASES // 10, (
        statuses
    )
    assert run_ids, "the fuzz created no run: the mix is too hostile to test the scheduler"

    deadline = time.monotonic() + RUN_BOUND_SECONDS
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            run = session.get(
                fake_workspace.host + "/api/2.1/jobs/runs/get", params={"run_id": run_id}, timeout=30
            ).json()
            if run["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
                for t in run.get("tasks", []):
                    assert t["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"), (run_id, t)
                pending.discard(run_id)
        time.sleep(0.2)
    assert not pending, f"runs still active after {RUN_BOUND_SECONDS}s: {sorted(pending)}"
    # Every job cluster the runs started is released again.
    clusters = session.get(fake_workspace.host + "/api/2.1/clusters/list", timeout=30).json().get("clusters", [])
    leaked = [
        c["cluster_id"] for c in clusters if c.get("cluster_source") == "JOB" and c["state"] not in ("TERMINATED",)
    ]
    assert not leaked, leaked
    print(f"fuzz: {CASES} cases, {len(run_ids)} runs, statuses {statuses}, {time.monotonic() - started:.1f}s")
