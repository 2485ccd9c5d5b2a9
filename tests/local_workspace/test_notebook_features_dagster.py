"""The Dagster side of the notebook features, on the fake runtime: helpers a notebook %runs are
deployed with it and version it, a retry policy reaches the job and a flaky task's second attempt
materializes the asset once, and a workflow deployed from a Git source runs a pinned commit."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
from fake_runtime import deployed_job_name
from test_notebook_features import HEADER, SEP, make_repo
from workflow_support import make_resource

from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.sources.notebook_file import NotebookFileError
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow


def _write(path: Path, *cells: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + SEP.join(cells))


def test_notebooks_that_others_run_are_deployed_and_version_the_asset(tmp_path):
    _write(tmp_path / "main.py", "# MAGIC %run ./lib/helpers $x=1", "print(greet())")
    _write(tmp_path / "lib" / "helpers.py", "# MAGIC %run ./more", "def greet():\n    return 'hi'")
    _write(tmp_path / "lib" / "more.py", "MORE = 1")
    tasks = NotebookTasks([NotebookAsset(key="main", notebook="main.py")], notebooks_dir=tmp_path)
    files = tasks.files()
    assert set(files) == {"notebooks/main", "notebooks/lib/helpers", "notebooks/lib/more"}
    assert all(f.is_notebook for f in files.values())
    before = tasks.asset_specs()[0].code_version
    _write(tmp_path / "lib" / "more.py", "MORE = 2")
    after = NotebookTasks([NotebookAsset(key="main", notebook="main.py")], notebooks_dir=tmp_path).asset_specs()[0]
    assert after.code_version != before  # a helper's change is a change of the asset's code
    (tmp_path / "lib" / "more.py").unlink()
    with pytest.raises(NotebookFileError, match=r"%run ./more, but .*lib/more.py does not exist"):
        NotebookTasks([NotebookAsset(key="main", notebook="main.py")], notebooks_dir=tmp_path)


def test_retry_policy_goes_into_the_job_spec_only_when_declared(tmp_path):
    _write(tmp_path / "a.py", "x = 1")
    plain = Workflow(
        name="w", sources=[NotebookTasks([NotebookAsset(key="a", notebook="a.py")], notebooks_dir=tmp_path)]
    )
    retried = Workflow(
        name="w",
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(
                        key="a", notebook="a.py", max_retries=2, min_retry_interval_millis=500, retry_on_timeout=True
                    )
                ],
                notebooks_dir=tmp_path,
            )
        ],
    )
    target = make_resource("w").deploy_target(needs_sql_warehouse=False)
    plain_task = plain.spec(target).job_settings()["tasks"][0]
    assert not {"max_retries", "min_retry_interval_millis", "retry_on_timeout"} & set(plain_task)
    retried_task = retried.spec(target).job_settings()["tasks"][0]
    assert (
        retried_task["max_retries"],
        retried_task["min_retry_interval_millis"],
        retried_task["retry_on_timeout"],
    ) == (2, 500, True)


def test_flaky_task_with_retries_materializes_once(dbx_env, tmp_path):
    name = "r" + uuid.uuid4().hex[:8]
    flag = tmp_path / "failed_once"
    _write(
        tmp_path / "nb" / "flaky.py",
        f"import os\nif not os.path.exists({str(flag)!r}):\n    open({str(flag)!r}, 'w').write('1')\n"
        "    raise RuntimeError('first attempt fails')\ndbutils.notebook.exit('{\"attempt\": \"second\"}')",
    )
    workflow = Workflow(
        name=name,
        sources=[
            NotebookTasks(
                [NotebookAsset(key=f"{name}/flaky", notebook="flaky.py", max_retries=2)], notebooks_dir=tmp_path / "nb"
            )
        ],
    )
    result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": make_resource(name)})
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 1
    assert events[0].materialization.metadata["attempt"].value == "second"
    run = dbx_env.job_runs(name)[0]
    full = dbx_env.client.jobs.get_run(run.run_id)
    assert sorted(t.attempt_number for t in full.tasks) == [0, 1]


def test_workflow_deployed_from_git_runs_the_pinned_commit(dbx_env, tmp_path):
    name = "g" + uuid.uuid4().hex[:8]
    repo, first, _second = make_repo(tmp_path)
    git_source = {"git_url": f"file://{repo}", "git_provider": "gitHub", "git_commit": first}
    tasks = NotebookTasks([NotebookAsset(key=f"{name}/nb", notebook="nb.py")], notebooks_dir=repo / "notebooks")
    workflow = Workflow(name=name, sources=[tasks], git_source=git_source)
    assert workflow.files() == {}
    result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": make_resource(name)})
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["notebook_exit_value"].value == "v1"  # the working tree says v2
    job = next(iter(dbx_env.client.jobs.list(name=deployed_job_name(name), expand_tasks=True)))
    task = job.settings.tasks[0].notebook_task
    assert (task.notebook_path, task.source.value) == ("notebooks/nb", "GIT")
    assert not (dbx_env.paths.workspace / "Shared" / "tests" / name / "notebooks").exists()  # nothing uploaded
