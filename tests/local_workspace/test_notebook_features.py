"""Notebook features without Spark: magics parsing, %run and %sh in the runtime's notebook session,
task values, and on the fake runtime (real HTTP, real SDK) retries, {{tasks...}} references and
Git sources."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs
from fake_runtime import FakeCluster, FakeRunningTask
from sdk_helpers import upload_notebook

from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime.contract import StoragePaths, TaskInvocation, TaskOutcome
from dbx_assets.local_workspace.runtime.dbutils import DBUtils
from dbx_assets.local_workspace.runtime.magics import (
    NotebookNotFound,
    NotebookSession,
    ShellCommandFailed,
    parse_run_arguments,
    pip_requirements,
    resolve_notebook_path,
    run_shell,
)
from dbx_assets.local_workspace.runtime.notebook import MalformedNotebook, parse, run_cells
from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper
from dbx_assets.local_workspace.runtime.task_values import TaskValues, read_task_values

HEADER = "# Databricks notebook source\n"
SEP = "\n# COMMAND ----------\n"
CLUSTER = compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0)


# ----------------------------------------------------------------------------------- parsing
def test_magic_cells_parse_into_their_kinds():
    source = HEADER + SEP.join(
        [
            "# MAGIC %run ./helpers $x=1",
            "# MAGIC %pip install tomli-w==1.0.0",
            "# MAGIC %sh\n# MAGIC echo one\n# MAGIC echo two",
            "x = 1",
        ]
    )
    cells = parse(source)
    assert [(c.kind, c.source.strip()) for c in cells] == [
        ("run", "./helpers $x=1"),
        ("pip", "install tomli-w==1.0.0"),
        ("sh", "echo one\necho two"),
        ("python", "x = 1"),
    ]
    with pytest.raises(MalformedNotebook, match="%scala"):
        parse(HEADER + "# MAGIC %scala\n# MAGIC val x = 1")


def test_run_arguments_and_paths():
    assert parse_run_arguments('./lib/helpers $name=a $other="two words"') == (
        "./lib/helpers",
        {"name": "a", "other": "two words"},
    )
    with pytest.raises(ValueError, match=r"\$name=value"):
        parse_run_arguments("./helpers name=a")
    assert resolve_notebook_path("/Shared/app/notebooks/main", "./helpers") == "/Shared/app/notebooks/helpers"
    assert resolve_notebook_path("/Shared/app/notebooks/main", "../lib/x") == "/Shared/app/lib/x"
    assert resolve_notebook_path("/Shared/app/notebooks/main", "/Shared/other") == "/Shared/other"
    assert resolve_notebook_path("notebooks/main", "./helpers") == "notebooks/helpers"  # a Git source


def test_pip_requirements(tmp_path):
    files = {"req.txt": "# pinned\ntomli-w==1.0.0\n\nrequests>=2  # http\n"}
    assert pip_requirements("install -q tomli-w 'six>=1'", files.__getitem__) == ["tomli-w", "six>=1"]
    assert pip_requirements("install -r req.txt", files.__getitem__) == ["tomli-w==1.0.0", "requests>=2"]
    with pytest.raises(ValueError, match="Only `%pip install"):
        pip_requirements("uninstall six", files.__getitem__)


# ----------------------------------------------------------------------------------- %run and %sh
def _session(tmp_path: Path, notebook_path: str, widgets: dict[str, str] | None = None) -> tuple[NotebookSession, dict]:
    paths = StoragePaths(tmp_path / "state").ensure()
    invocation = TaskInvocation(
        task_run_id=7, kind="notebook", output_dir=tmp_path / "out", notebook_path=notebook_path, widgets=widgets or {}
    )
    dbutils = DBUtils(invocation.widgets, PathMapper(paths.dbfs, paths.volumes))
    namespace: dict[str, Any] = {"dbutils": dbutils}
    session = NotebookSession(
        invocation, {"cluster_id": "c-1", "state_dir": str(paths.state_dir)}, paths, dbutils, namespace, None, print
    )
    return session, namespace


def _workspace_notebook(tmp_path: Path, path: str, *cells: str) -> None:
    local = tmp_path / "state" / "workspace" / path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(HEADER + SEP.join(cells))


def test_run_magic_runs_inline_with_arguments_as_widgets(tmp_path):
    session, namespace = _session(tmp_path, "/Shared/app/main", {"x": "parent"})
    _workspace_notebook(
        tmp_path,
        "/Shared/app/lib/helpers",
        "dbutils.widgets.text('greeting', 'hello')\nGREETING = dbutils.widgets.get('greeting')\n"
        "def greet(n):\n    return GREETING + ' ' + n",
        "# MAGIC %run ./more",
        "SEEN_X = dbutils.widgets.getArgument('x', 'unset')",
    )
    _workspace_notebook(tmp_path, "/Shared/app/lib/more", "MORE = 'nested relative %run'")
    main = parse(HEADER + SEP.join(["# MAGIC %run ./lib/helpers $greeting=hi", "RESULT = greet('there')"]))
    run_cells(main, namespace, None, print, magic=session)
    assert namespace["RESULT"] == "hi there"  # the helper's function, with its widget from the $ argument
    assert namespace["MORE"] == "nested relative %run"
    assert namespace["SEEN_X"] == "unset"  # the called notebook does not see the caller's widget values
    assert namespace["dbutils"].widgets.get("x") == "parent"  # ... and the caller's come back afterwards


def test_run_magic_names_the_missing_notebook(tmp_path):
    session, namespace = _session(tmp_path, "/Shared/app/main")
    with pytest.raises(Exception) as err:
        run_cells(parse(HEADER + "# MAGIC %run ./nope"), namespace, None, print, magic=session)
    assert isinstance(err.value.__cause__, NotebookNotFound)
    assert "Notebook not found: /Shared/app/nope" in str(err.value)


def test_sh_runs_bash_in_the_driver_dir_and_fails_on_nonzero_exit(tmp_path, capsys):
    lines: list[str] = []
    run_shell('echo "in $(basename $PWD)"; echo err >&2', tmp_path, write=lines.append)
    assert lines == [f"in {tmp_path.name}\n", "err\n"]
    with pytest.raises(ShellCommandFailed, match="exit code 3"):
        run_shell("exit 3", tmp_path, write=lines.append)
    session, namespace = _session(tmp_path, "/Shared/app/main")
    run_cells(parse(HEADER + "# MAGIC %sh\n# MAGIC pwd"), namespace, None, print, magic=session)
    assert capsys.readouterr().out.strip().endswith("clusters/c-1")  # the driver's working directory


# ----------------------------------------------------------------------------------- task values
def test_task_values_set_get_and_limits(tmp_path):
    values = TaskValues({"up": {"n": 3}}, tmp_path / "tv.json")
    values.set("rows", {"count": 10, "ok": True})
    assert read_task_values(tmp_path) == {}  # the file name is task_values.json; this store was given another
    assert json.loads((tmp_path / "tv.json").read_text()) == {"rows": {"count": 10, "ok": True}}
    with pytest.raises(ValueError, match="48 KiB"):
        values.set("big", "x" * (48 * 1024))
    with pytest.raises(TypeError, match="JSON"):
        values.set("bad", object())
    assert values.get("up", "n") == 3
    assert values.get("up", "missing", default=5) == 5
    with pytest.raises(ValueError, match="did not set"):
        values.get("up", "missing")
    with pytest.raises(ValueError, match="Could not find task 'other'"):
        values.get("other", "n", default=1)
    outside = TaskValues({}, None, in_job=False)
    assert outside.get("up", "n", debugValue=42) == 42
    with pytest.raises(TypeError, match="debugValue"):
        outside.get("up", "n")


# ----------------------------------------------------------------------------------- fake runtime with task values
_TV_SHIM = r"""
import json, os, sys
from pathlib import Path
from dbx_assets.local_workspace.runtime.dbutils import DBUtils, NotebookExit
from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper
from dbx_assets.local_workspace.runtime.task_values import JobsUtils, TaskValues
out = Path(os.environ["FAKE_OUT"])
dbutils = DBUtils(json.loads(os.environ["FAKE_WIDGETS"]), PathMapper(out, out))
dbutils.jobs = JobsUtils(TaskValues(json.loads(os.environ["FAKE_UPSTREAM"]), out / "task_values.json"))
try:
    exec(compile(sys.stdin.read(), "notebook", "exec"), {"dbutils": dbutils, "__name__": "__main__"})
except NotebookExit as done:
    (out / "result").write_text(done.value)
"""


class _TaskValuesRunning(FakeRunningTask):
    def _finish(self) -> TaskOutcome:
        outcome = super()._finish()
        outcome.task_values = read_task_values(self.out)
        return outcome


class TaskValuesCluster(FakeCluster):
    """The fake runtime, plus dbutils.jobs.taskValues reported in the outcome (as task_process does)."""

    def run_task(self, inv: TaskInvocation) -> FakeRunningTask:
        inv.output_dir.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            FAKE_WIDGETS=json.dumps(inv.widgets),
            FAKE_OUT=str(inv.output_dir),
            FAKE_UPSTREAM=json.dumps(inv.upstream_task_values),
            **inv.env,
        )
        proc = subprocess.Popen(
            ["python", "-c", _TV_SHIM], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        assert proc.stdin is not None
        proc.stdin.write((inv.notebook_source or "").encode())
        proc.stdin.close()
        return _TaskValuesRunning(proc, inv.output_dir)


@pytest.fixture(scope="module")
def tv_client(tmp_path_factory):
    ws = LocalWorkspace(tmp_path_factory.mktemp("tv_ws"), cluster_factory=TaskValuesCluster).start()
    yield WorkspaceClient(host=ws.host, token=ws.token)
    ws.close()


def _task(key: str, path: str = "", deps: tuple[str, ...] = (), params: dict | None = None, **kw: Any) -> jobs.Task:
    nt = jobs.NotebookTask(notebook_path=path, base_parameters=params, source=kw.pop("source", None))
    return jobs.Task(
        task_key=key,
        notebook_task=nt,
        job_cluster_key="main",
        depends_on=[jobs.TaskDependency(task_key=d) for d in deps],
        **kw,
    )


def _run_job(w: WorkspaceClient, name: str, tasks: list[jobs.Task], watch=None, **kw: Any) -> Any:  # a jobs.Run
    job_id: Any = w.jobs.create(
        name=name, tasks=tasks, job_clusters=[jobs.JobCluster(job_cluster_key="main", new_cluster=CLUSTER)], **kw
    ).job_id
    waiter: Any = w.jobs.run_now(job_id)
    run_id = waiter.response.run_id
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run: Any = w.jobs.get_run(run_id)
        if watch:
            watch(run)
        if run.state and run.state.life_cycle_state in (
            jobs.RunLifeCycleState.TERMINATED,
            jobs.RunLifeCycleState.INTERNAL_ERROR,
        ):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_task_values_pass_to_a_downstream_task_and_its_parameters(tv_client):
    w = tv_client
    up = upload_notebook(
        w,
        "/Shared/tv/up",
        "dbutils.jobs.taskValues.set('rows', 42)\ndbutils.jobs.taskValues.set('meta', {'day': '2024-01-01'})\n",
    )
    down = upload_notebook(
        w,
        "/Shared/tv/down",
        "got = dbutils.jobs.taskValues.get(taskKey='up', key='rows', default=0)\n"
        "dbutils.notebook.exit(f\"{got}|{dbutils.widgets.get('rows')}|{dbutils.widgets.get('day')}\")\n",
    )
    run = _run_job(
        w,
        "tv-pass",
        [
            _task("up", up),
            _task(
                "down", down, ("up",), params={"rows": "{{tasks.up.values.rows}}", "day": "{{tasks.up.values.meta}}"}
            ),
        ],
    )
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    tasks = {t.task_key: t for t in run.tasks}
    assert w.jobs.get_run_output(tasks["down"].run_id).notebook_output.result == '42|42|{"day": "2024-01-01"}'
    # runs/get shows the parameters as resolved from the references
    assert tasks["down"].resolved_values.notebook_task.base_parameters["rows"] == "42"


# ----------------------------------------------------------------------------------- retries (plain fake runtime)
def test_flaky_task_succeeds_on_its_second_attempt(fake_client, tmp_path):
    w = fake_client
    flag = tmp_path / "failed_once"
    nb = upload_notebook(
        w,
        "/Shared/retries/flaky",
        f"import os\nif not os.path.exists({str(flag)!r}):\n    open({str(flag)!r}, 'w').write('1')\n"
        "    raise RuntimeError('first attempt fails')\ndbutils.notebook.exit('ok')\n",
    )
    seen: set[str] = set()

    def watch(run: jobs.Run) -> None:
        seen.update(t.state.life_cycle_state.value for t in run.tasks or [] if t.state and t.state.life_cycle_state)

    run = _run_job(w, "retry-flaky", [_task("flaky", nb, max_retries=2, min_retry_interval_millis=1500)], watch=watch)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    attempts = sorted((t for t in run.tasks if t.task_key == "flaky"), key=lambda t: t.attempt_number)
    assert [(t.attempt_number, t.state.result_state.value) for t in attempts] == [(0, "FAILED"), (1, "SUCCESS")]
    assert attempts[0].run_id != attempts[1].run_id
    assert "WAITING_FOR_RETRY" in seen
    assert attempts[1].start_time - attempts[0].end_time >= 1400  # min_retry_interval_millis
    assert w.jobs.get_run_output(attempts[1].run_id).notebook_output.result == "ok"
    assert w.jobs.get_run(attempts[1].run_id).original_attempt_run_id == attempts[0].run_id
    # each attempt links to its own run page, in the same shape as the first attempt's
    assert [t.run_page_url.rsplit("/", 1)[-1] for t in attempts] == [str(t.run_id) for t in attempts]
    assert attempts[1].run_page_url == attempts[0].run_page_url.replace(
        str(attempts[0].run_id), str(attempts[1].run_id)
    )


def test_retries_stop_at_max_retries_and_timeouts_retry_only_when_asked(fake_client):
    w = fake_client
    fail = upload_notebook(w, "/Shared/retries/fail", "raise ValueError('always')\n")
    sleep = upload_notebook(w, "/Shared/retries/sleep", "import time\ntime.sleep(30)\n")
    run = _run_job(w, "retry-fail", [_task("fail", fail, max_retries=2)])
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert [t.attempt_number for t in run.tasks] == [0, 1, 2]
    run = _run_job(
        w,
        "retry-timeout",
        [
            _task("retried", sleep, timeout_seconds=1, max_retries=1, retry_on_timeout=True),
            _task("not_retried", sleep, timeout_seconds=1, max_retries=1),
        ],
    )
    keys = [(t.task_key, t.attempt_number, t.state.result_state.value) for t in run.tasks]
    assert sorted(keys) == [("not_retried", 0, "TIMEDOUT"), ("retried", 0, "TIMEDOUT"), ("retried", 1, "TIMEDOUT")]


# ----------------------------------------------------------------------------------- Git sources
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
        },
    ).stdout.strip()


def make_repo(root: Path) -> tuple[Path, str, str]:
    """A repo whose notebooks/nb says v1 at the first commit and v2 at the second (on main)."""
    repo = root / "repo"
    (repo / "notebooks").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "notebooks" / "lib.py").write_text(HEADER + "VERSION = 'v1'\n")
    (repo / "notebooks" / "nb.py").write_text(HEADER + "dbutils.notebook.exit('v1')\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "notebooks" / "nb.py").write_text(HEADER + "dbutils.notebook.exit('v2')\n")
    _git(repo, "commit", "-q", "-am", "v2")
    return repo, first, _git(repo, "rev-parse", "HEAD")


def test_git_source_runs_the_pinned_commit_and_records_it(fake_client, tmp_path):
    w = fake_client
    repo, first, second = make_repo(tmp_path)
    url = f"file://{repo}"
    pinned = jobs.GitSource(git_url=url, git_provider=jobs.GitProvider.GIT_HUB, git_commit=first)
    run = _run_job(w, "git-pinned", [_task("nb", "notebooks/nb", source=jobs.Source.GIT)], git_source=pinned)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert w.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "v1"
    assert run.git_source.git_snapshot.used_commit == first
    branch = jobs.GitSource(git_url=str(repo), git_provider=jobs.GitProvider.GIT_HUB, git_branch="main")
    run = _run_job(w, "git-branch", [_task("nb", "notebooks/nb")], git_source=branch)  # source unset: GIT
    assert w.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "v2"
    assert run.git_source.git_snapshot.used_commit == second
    missing = jobs.GitSource(git_url=url, git_provider=jobs.GitProvider.GIT_HUB, git_tag="no-such-tag")
    run = _run_job(w, "git-missing", [_task("nb", "notebooks/nb")], git_source=missing)
    assert run.tasks[0].state.result_state == jobs.RunResultState.FAILED
    assert "Failed to checkout Git repository" in run.tasks[0].state.state_message
