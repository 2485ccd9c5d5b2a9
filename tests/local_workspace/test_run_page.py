"""The run pages of the local workspace (run_page_url), on the fake cluster runtime (no JVM):
login and sessions, the index with paging, a run's graph / timeline / tasks / parameters /
clusters / repairs, a task run's output, the cluster page, and that the token never shows."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from databricks.sdk.service import compute, jobs
from sdk_helpers import upload_notebook, wait_for_run

from dbx_assets.local_workspace.runtime.cell_output import CellRecorder
from dbx_assets.local_workspace.runtime.notebook import CellFailed, parse, run_cells

HEADER = "# Databricks notebook source\n"
CLUSTER = compute.ClusterSpec(
    spark_version="15.4.x-scala2.12", num_workers=0, spark_conf={"spark.my.password": "hunter2"}
)


class Browser:
    """urllib with a cookie jar and no automatic redirects: what a browser does, step by step."""

    def __init__(self, host: str):
        self.host = host
        self.jar = CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str) -> tuple[int, str, dict]:
        return self._do(urllib.request.Request(self.host + path if path.startswith("/") else path))

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str, dict]:
        body = urllib.parse.urlencode(form).encode()
        return self._do(
            urllib.request.Request(
                self.host + path,
                data=body,
                method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )

    def _do(self, req: urllib.request.Request) -> tuple[int, str, dict]:
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)


@pytest.fixture(scope="module")
def ws(fake_workspace):
    return fake_workspace


@pytest.fixture(scope="module")
def browser(ws) -> Browser:
    b = Browser(ws.host)
    status, _, headers = b.post("/login", {"token": ws.token, "next": "/"})
    assert status == 303 and headers["Location"] == "/"
    return b


@pytest.fixture(scope="module")
def graph_run(ws, fake_client):
    """A three-task job: extract -> (transform fails, report is skipped); audit runs on its own. Then a repair."""
    w = fake_client
    ok = upload_notebook(w, "/Shared/pages/ok", "print('fine')\ndbutils.notebook.exit('done')\n")
    fail = upload_notebook(w, "/Shared/pages/fail", "raise ValueError('bad input on purpose')\n")
    job_id = w.jobs.create(
        name="pages-job",
        job_clusters=[jobs.JobCluster(job_cluster_key="main", new_cluster=CLUSTER)],
        parameters=[
            jobs.JobParameterDefinition(name="day", default="2024-01-01"),
            jobs.JobParameterDefinition(name="api_token", default="s3cr3t-param"),
        ],
        tasks=[
            jobs.Task(task_key="extract", notebook_task=jobs.NotebookTask(notebook_path=ok), job_cluster_key="main"),
            jobs.Task(
                task_key="transform",
                notebook_task=jobs.NotebookTask(notebook_path=fail),
                job_cluster_key="main",
                depends_on=[jobs.TaskDependency(task_key="extract")],
            ),
            jobs.Task(
                task_key="report",
                notebook_task=jobs.NotebookTask(notebook_path=ok),
                job_cluster_key="main",
                depends_on=[jobs.TaskDependency(task_key="transform")],
            ),
            jobs.Task(task_key="audit", notebook_task=jobs.NotebookTask(notebook_path=ok), job_cluster_key="main"),
        ],
    ).job_id
    run_id = w.jobs.run_now(job_id=job_id, job_parameters={"day": "2024-02-02"}).run_id
    first = wait_for_run(w, run_id)
    w.jobs.repair_run(run_id=run_id, rerun_tasks=["transform"], rerun_dependent_tasks=True)
    repaired = wait_for_run(w, run_id)
    return job_id, first, repaired


def test_run_page_url_is_a_page_path(graph_run, ws):
    _, first, repaired = graph_run
    assert repaired.run_page_url == f"{ws.host}/jobs/{repaired.job_id}/runs/{repaired.run_id}"
    for t in repaired.tasks:
        assert t.run_page_url == f"{ws.host}/jobs/{repaired.job_id}/runs/{t.run_id}"


def test_pages_need_a_session(ws, graph_run):
    _, _, run = graph_run
    anon = Browser(ws.host)
    for path in (
        "/",
        f"/jobs/{run.job_id}/runs/{run.run_id}",
        f"/jobs/{run.job_id}/runs/{run.tasks[0].run_id}",
        "/compute/clusters/nope",
        "/?page=2",
    ):
        status, body, _ = anon.get(path)
        assert status == 401, path
        assert "pages-job" not in body and "extract" not in body
        assert 'action="/login"' in body  # a browser lands on the login form...
        assert f'name="next" value="{path.replace("&", "&amp;")}"' in body  # ...and comes back to the page
    assert anon.post("/login", {"token": "wrong", "next": "/"})[0] == 403
    # a forged or stale cookie is no session
    anon.jar.set_cookie(_cookie("dbx_local_session", "forged", ws.host))
    assert anon.get("/")[0] == 401


def _cookie(name: str, value: str, host: str):
    from http.cookiejar import Cookie

    domain = host.split("://")[1].split(":")[0]
    return Cookie(0, name, value, None, False, domain, False, False, "/", True, False, None, False, None, None, {})


def test_login_sets_an_httponly_strict_session_cookie(ws):
    b = Browser(ws.host)
    status, _, headers = b.post("/login", {"token": ws.token, "next": "/jobs/1/runs/2"})
    assert status == 303 and headers["Location"] == "/jobs/1/runs/2"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert ws.token not in cookie
    assert (
        b.post("/login", {"token": ws.token, "next": "https://evil.example/"})[2]["Location"] == "/"
    )  # no open redirect
    assert b.get("/")[0] == 200
    assert b.post("/logout", {})[0] == 303
    assert b.get("/")[0] == 401


def test_one_time_login_link(ws, fake_client):
    link = fake_client.api_client.do("POST", "/api/2.0/local/page-login", body={"path": "/?page=1"})["login_url"]
    assert link.startswith(ws.host + "/login?once=") and ws.token not in link
    b = Browser(ws.host)
    status, _, headers = b.get(link)
    assert status == 303 and headers["Location"] == "/?page=1"
    assert b.get("/")[0] == 200
    again = Browser(ws.host)
    assert again.get(link)[0] == 403  # once only
    assert again.get("/")[0] == 401
    # minting needs the token, like every /api call
    req = urllib.request.Request(ws.host + "/api/2.0/local/page-login", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401


def test_login_url_command(ws, tmp_path, capsys):
    """`login-url` reads DIR/connection.json and asks the running server for a link."""
    from dbx_assets.local_workspace.__main__ import main

    ws.write_connection_file()
    assert main(["login-url", "--state-dir", str(ws.state_dir), "--path", "/compute/clusters/x"]) == 0
    link = capsys.readouterr().out.strip()
    assert re.fullmatch(re.escape(ws.host) + r"/login\?once=[\w-]+&next=/compute/clusters/x", link)
    assert Browser(ws.host).get(link)[2]["Location"] == "/compute/clusters/x"
    assert main(["login-url", "--state-dir", str(tmp_path)]) == 1  # nothing running there


def test_run_page(browser, graph_run, ws):
    job_id, first, run = graph_run
    status, page, headers = browser.get(f"/jobs/{job_id}/runs/{run.run_id}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "pages-job" in page and "Run now" in page and "repaired 1 time" in page
    # the graph: one node per task, coloured by state, each linking to its task run; edges follow depends_on
    graph = page.split('class="task-graph"')[1].split("</svg>")[0]
    states = {k: s for k, s in re.findall(r'data-task="([^"]+)" data-state="([^"]+)"', graph)}
    by_key = {t.task_key: t for t in run.tasks}
    assert set(states) == {"extract", "transform", "report", "audit"}
    assert (
        states["extract"] == "Succeeded" and states["transform"] == "Failed" and states["report"] == "Upstream failed"
    )
    for t in by_key.values():
        assert f'href="/jobs/{job_id}/runs/{t.run_id}"' in graph
    assert 'data-from="extract" data-to="transform"' in graph and 'data-from="transform" data-to="report"' in graph
    # nodes sit in columns by dependency depth
    x = {k: float(v) for k, v in re.findall(r'data-task="([^"]+)"[^>]*>.*?<rect class="node" x="([\d.]+)"', graph)}
    assert x["extract"] == x["audit"] < x["transform"] < x["report"]
    # the timeline: one bar per task run, the first attempts and the repair's; setup as its own segment
    tl = page.split('class="timeline"')[1].split("</svg>")[0]
    first_ids = {t.run_id for t in first.tasks}
    bar_ids = set(map(int, re.findall(r'data-task-run="(\d+)"', tl)))
    assert {t.run_id for t in run.tasks if t.start_time} | {i for i in first_ids if i in bar_ids} <= bar_ids
    assert len(bar_ids) >= 5  # 4 original task runs (the skipped one has a zero-length bar) + the repaired transform
    assert 'class="bar-setup"' in tl and 'class="bar-run"' in tl
    assert "transform (repair 1)" in page and "transform (replaced)" in page
    # parameters shown, secret-looking ones masked; the cluster spec's password too
    assert "2024-02-02" in page and "s3cr3t-param" not in page and "hunter2" not in page
    assert "Repair history" in page
    # clusters used, linked to their page
    cluster_id = by_key["extract"].cluster_instance.cluster_id
    assert f'href="/compute/clusters/{cluster_id}"' in page
    assert ws.token not in page


def test_task_run_page_shows_the_error(browser, graph_run):
    job_id, first, _ = graph_run
    transform = next(t for t in first.tasks if t.task_key == "transform")
    status, page, _ = browser.get(f"/jobs/{job_id}/runs/{transform.run_id}")
    assert status == 200
    assert "transform" in page and "Failed" in page and "bad input on purpose" in page
    assert "Other attempts of this task" in page
    assert f'href="/jobs/{job_id}/runs/{first.run_id}"' in page  # back to the job run


def test_cluster_page_has_its_event_history(browser, graph_run):
    _, _, run = graph_run
    cluster_id = run.tasks[0].cluster_instance.cluster_id
    status, page, _ = browser.get(f"/compute/clusters/{cluster_id}")
    assert status == 200
    events = re.findall(r"<td><b>([A-Z]+)</b></td>", page)
    # newest first; Databricks' event types (no TERMINATED event: TERMINATING carries the reason)
    assert events == ["TERMINATING", "RUNNING", "CREATING"]
    assert "JOB_FINISHED" in page and "hunter2" not in page
    assert f"/runs/{run.run_id}" in page  # the job run that owned it
    assert browser.get("/compute/clusters/does-not-exist")[0] == 404


def test_index_lists_jobs_and_pages_runs(browser, ws, fake_client, graph_run):
    w = fake_client
    nb = upload_notebook(w, "/Shared/pages/quick", "pass\n")
    ids = [
        w.jobs.submit(
            run_name=f"quick-{i}",
            tasks=[
                jobs.SubmitTask(task_key="q", notebook_task=jobs.NotebookTask(notebook_path=nb), new_cluster=CLUSTER)
            ],
        ).run_id
        for i in range(26)
    ]
    for rid in ids:
        wait_for_run(w, rid)
    status, page, _ = browser.get("/")
    assert status == 200 and "pages-job" in page
    runs = [int(r) for r in re.findall(r'<tr data-run="(\d+)"', page)]
    assert len(runs) == 25 and runs == sorted(runs, reverse=True) and runs[0] == max(ids)
    assert f'href="/jobs/submit/runs/{max(ids)}"' in page and "One-time" in page
    assert 'href="/?page=2"' in page
    _, page2, _ = browser.get("/?page=2")
    older = [int(r) for r in re.findall(r'<tr data-run="(\d+)"', page2)]
    assert older and max(older) < min(runs)
    job_id = graph_run[0]
    _, only_job, _ = browser.get(f"/?job_id={job_id}")
    assert [int(r) for r in re.findall(r'<tr data-run="(\d+)"', only_job)] == [graph_run[2].run_id]


def test_active_run_page_refreshes(browser, ws, fake_client):
    w = fake_client
    nb = upload_notebook(w, "/Shared/pages/slow", "import time\ntime.sleep(30)\n")
    run_id = w.jobs.submit(
        run_name="slow",
        tasks=[
            jobs.SubmitTask(task_key="slow", notebook_task=jobs.NotebookTask(notebook_path=nb), new_cluster=CLUSTER)
        ],
    ).run_id
    try:
        deadline = time.monotonic() + 30
        while w.jobs.get_run(run_id).tasks[0].state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        page = browser.get(f"/jobs/submit/runs/{run_id}")[1]
        assert 'http-equiv="refresh"' in page and "Running" in page
    finally:
        w.jobs.cancel_run(run_id)
    wait_for_run(w, run_id)
    assert 'http-equiv="refresh"' not in browser.get(f"/jobs/submit/runs/{run_id}")[1]


def test_notebook_cells_are_recorded_and_rendered(browser, ws, graph_run, tmp_path):
    """cells.json as the task runtime writes it (recorder + run_cells, pandas for display), on a task run page."""
    import sys

    import pandas as pd  # noqa: F401 - the notebook displays a pandas DataFrame

    source = (
        HEADER + "print('hello from cell 1')\n# COMMAND ----------\n# MAGIC %md\n# MAGIC # A title\n"
        "# COMMAND ----------\nimport pandas as pd\ndisplay(pd.DataFrame({'city': ['Oslo', 'Rome'], 'n': [1, 2]}))\n"
        "# COMMAND ----------\nprint('x' * 70000)\n# COMMAND ----------\n"
        "def f():\n    raise KeyError('missing column')\nf()\n# COMMAND ----------\nprint('never')\n"
    )
    job_id, first, _ = graph_run
    audit = next(t for t in first.tasks if t.task_key == "audit")
    out_dir = Path(ws.paths.task_runs) / str(audit.run_id)
    rec = CellRecorder()
    cells = parse(source)
    saved = sys.stdout, sys.stderr

    def display(obj):
        with rec.displaying(obj):
            print(obj)

    try:
        rec.start(out_dir, cells, redact=lambda s: s.replace("Rome", "[REDACTED]"))
        with pytest.raises(CellFailed) as failed:
            run_cells(rec.track(cells), {"display": display}, None, display)
        rec.cell_failed(str(failed.value), failed.value.trace)
    finally:
        sys.stdout, sys.stderr = saved
    doc = json.loads((out_dir / "cells.json").read_text())
    assert [c["number"] for c in doc["cells"]] == [1, 2, 3, 4, 5]
    assert doc["cells"][2]["tables"][0]["columns"] == [
        {"name": "city", "type": "object"},
        {"name": "n", "type": "int64"},
    ]
    assert doc["cells"][2]["stdout"] == ""  # display's text form is the log's, not the cell's
    assert doc["cells"][3]["stdout_truncated"] and doc["cells"][3]["stdout_bytes"] == 70001
    page = browser.get(f"/jobs/{job_id}/runs/{audit.run_id}")[1]
    assert "hello from cell 1" in page and "Cmd 5" in page and "never" not in page.split("Cmd 5")[1].split("</pre>")[1]
    table = page.split('class="grid data display-table"')[1].split("</table>")[0]
    assert "city<small>object</small>" in table and "Oslo" in table and "Rome" not in table
    assert "Output truncated: showing the first 64.0 KB of 68.4 KB" in page
    assert 'class="cell failed" data-cell="5"' in page and "KeyError" in page and "missing column" in page
    assert "later cells did not run" in page
