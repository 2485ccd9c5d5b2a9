"""Existing workspace jobs as assets: a job a team built with the Jobs API (not by us) is snapshot
with the CLI, loaded without calling the workspace, and a selection of its tasks runs as one run
of that job with `only=`, on the fake runtime over real HTTP and the real SDK. The job is never
reset or deleted; a job changed since its snapshot fails the step naming the job and the fix."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.workspace import ImportFormat, Language
from workflow_support import make_resource, materialization_metadata, materialized, step_failure_message

from dbx_assets import DatabricksJobs, JobSnapshotError, build_workflow_assets
from dbx_assets.integration.existing_jobs.cli import main as snapshot_main
from dbx_assets.integration.existing_jobs.execution import describe_changes
from dbx_assets.integration.existing_jobs.snapshot import fingerprint, read_snapshot

NOTEBOOK = """# Databricks notebook source
import os
dbutils.widgets.text("out", "")
out = dbutils.widgets.get("out")
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write("{step}")
dbutils.notebook.exit("{step} done")
"""


def _team_job(client: WorkspaceClient, name: str) -> int:
    """What a team has: notebooks in their folder and a three-task job made with the Jobs API."""
    folder = f"/Users/team@example.com/{name}"
    client.workspace.mkdirs(folder)
    for step in ("ingest", "clean", "report"):
        client.workspace.import_(
            f"{folder}/{step}",
            content=base64.b64encode(NOTEBOOK.format(step=step).encode()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )

    def task(step: str, *upstream: str) -> jobs.Task:
        return jobs.Task(
            task_key=step,
            notebook_task=jobs.NotebookTask(
                notebook_path=f"{folder}/{step}", base_parameters={"out": f"/dbfs/tmp/{name}/{step}.txt"}
            ),
            job_cluster_key="main",
            depends_on=[jobs.TaskDependency(task_key=u) for u in upstream],
        )

    created = client.jobs.create(
        name=f"Sales daily {name}",
        tasks=[task("ingest"), task("clean", "ingest"), task("report", "clean")],
        job_clusters=[
            jobs.JobCluster(
                job_cluster_key="main",
                new_cluster=compute.ClusterSpec(
                    spark_version="15.4.x-scala2.12", node_type_id="i3.xlarge", num_workers=1
                ),
            )
        ],
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 6 * * ?", timezone_id="UTC"),
    )
    assert created.job_id is not None
    return created.job_id


def _materialize(path: Path, name: str, selection=None) -> dg.ExecuteInProcessResult:
    existing = DatabricksJobs(path)
    return dg.materialize(
        [build_workflow_assets(w) for w in existing.workflows()],
        selection=selection,
        resources={"databricks": make_resource(name)},
        raise_on_error=False,
    )


def _slug(name: str) -> str:
    return f"sales_daily_{name}"


def test_an_existing_job_is_snapshot_loaded_and_a_selection_runs_it_once_with_only(dbx_env, tmp_path, capsys):
    ws, name = dbx_env, "t" + uuid.uuid4().hex[:10]
    job_id = _team_job(ws.client, name)
    before = ws.client.jobs.get(job_id).settings.as_dict()
    path = tmp_path / "jobs.json"

    assert snapshot_main(["snapshot", "--job", f"Sales daily {name}", "--output", str(path)]) == 0
    assert f"Sales daily {name} ({job_id}): 3 task(s)" in capsys.readouterr().out

    existing = DatabricksJobs(path)
    [workflow] = existing.workflows()
    specs = {s.key.to_user_string(): s for s in workflow.asset_specs()}
    slug = _slug(name)
    assert set(specs) == {f"{slug}/ingest", f"{slug}/clean", f"{slug}/report"}
    assert [d.asset_key.to_user_string() for d in specs[f"{slug}/report"].deps] == [f"{slug}/clean"]
    assert specs[f"{slug}/ingest"].metadata["databricks_job_id"] == job_id
    assert specs[f"{slug}/ingest"].metadata["databricks_task_key"] == "ingest"
    assert "notebook" in specs[f"{slug}/ingest"].kinds
    assert f"/Users/team@example.com/{name}/ingest" in (specs[f"{slug}/ingest"].description or "")

    selected = [dg.AssetKey([slug, "ingest"]), dg.AssetKey([slug, "clean"])]
    result = _materialize(path, name, selection=selected)
    assert result.success
    assert materialized(result) == set(selected)
    metas = [materialization_metadata(result, k) for k in selected]
    assert {m["databricks_run_id"] for m in metas} == {metas[0]["databricks_run_id"]}  # one run
    assert metas[0]["databricks_job_id"] == job_id  # the team's job itself
    run = ws.client.jobs.get_run(metas[0]["databricks_run_id"])
    assert run.job_id == job_id
    assert sorted(t.task_key for t in run.tasks) == ["clean", "ingest"]  # only=, not report
    assert all(t.state.result_state.value == "SUCCESS" for t in run.tasks)
    assert metas[1]["databricks_compute"].startswith("job cluster 'main'")
    with ws.client.dbfs.download(f"dbfs:/tmp/{name}/clean.txt") as fh:
        assert fh.read() == b"clean"
    # not ours: never reset, never deleted, and no job of ours was created for it
    assert ws.client.jobs.get(job_id).settings.as_dict() == before
    assert [j.job_id for j in ws.client.jobs.list(name=f"Sales daily {name}")] == [job_id]


def test_a_job_changed_since_its_snapshot_fails_naming_the_job_and_the_command(dbx_env, tmp_path):
    ws, name = dbx_env, "t" + uuid.uuid4().hex[:10]
    job_id = _team_job(ws.client, name)
    path = tmp_path / "jobs.json"
    assert snapshot_main(["snapshot", "--job-id", str(job_id), "--output", str(path)]) == 0
    runs_before = list(ws.client.jobs.list_runs(job_id=job_id))

    # a schedule change does not touch the assets: not stale
    ws.client.jobs.update(job_id, new_settings=jobs.JobSettings(schedule=None, max_concurrent_runs=3))
    assert fingerprint(ws.client.jobs.get(job_id).settings.as_dict()) == read_snapshot(path).jobs[0].fingerprint

    settings = ws.client.jobs.get(job_id).settings
    settings.tasks[1].notebook_task.base_parameters = {"out": f"/dbfs/tmp/{name}/elsewhere.txt"}
    ws.client.jobs.reset(job_id, new_settings=settings)
    result = _materialize(path, name, selection=[dg.AssetKey([_slug(name), "clean"])])
    assert not result.success
    message = step_failure_message(result)
    assert f"Databricks job 'Sales daily {name}' ({job_id})" in message
    assert "changed since its snapshot" in message and "tasks changed: clean" in message
    assert f"python -m dbx_assets.integration.existing_jobs snapshot --job-id {job_id} --output {path}" in message
    assert list(ws.client.jobs.list_runs(job_id=job_id)) == runs_before  # nothing was started

    ws.client.jobs.delete(job_id)
    message = step_failure_message(_materialize(path, name, selection=[dg.AssetKey([_slug(name), "ingest"])]))
    assert f"Databricks job 'Sales daily {name}' ({job_id}) no longer exists" in message


def test_unknown_jobs_are_a_clear_error_at_snapshot_time(dbx_env, tmp_path, capsys):
    ws, name = dbx_env, "t" + uuid.uuid4().hex[:10]
    _team_job(ws.client, name)
    path = tmp_path / "jobs.json"
    assert snapshot_main(["snapshot", "--job", f"No such job {name}", "--output", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"No job named 'No such job {name}' in {ws.host}" in err and "--job-id" in err
    assert f"Sales daily {name}" in err  # the jobs that are there
    assert snapshot_main(["snapshot", "--job-id", "987654321", "--output", str(path)]) == 1
    assert "Job 987654321 does not exist" in capsys.readouterr().err
    assert snapshot_main(["snapshot", "--job-pattern", f"nothing_{name}_*", "--output", str(path)]) == 1
    assert f"No job in {ws.host} has a name matching 'nothing_{name}_*'" in capsys.readouterr().err
    assert not path.exists()
    # a pattern takes every job it matches
    second = _team_job(ws.client, name + "b")
    assert snapshot_main(["snapshot", "--job-pattern", f"sales DAILY {name}*", "--output", str(path)]) == 0
    snapshot = read_snapshot(path)
    assert len(snapshot.jobs) == 2 and second in {j.job_id for j in snapshot.jobs}
    assert {w.name for w in DatabricksJobs(path).workflows()} == {
        f"{_slug(j.name.removeprefix('Sales daily '))}_{j.job_id}" for j in snapshot.jobs
    }


# -- pure: the snapshot file and what it loads ---------------------------------------------------------------


def _write(path: Path, *jobs_settings: dict) -> Path:
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "host": "https://example.cloud.databricks.com",
                "selectors": ["--job-pattern 'x*'"],
                "jobs": [
                    {"job_id": 100 + i, "fingerprint": fingerprint(s), "settings": s}
                    for i, s in enumerate(jobs_settings)
                ],
            }
        )
    )
    return path


def _job(name: str, *tasks: dict) -> dict:
    return {"name": name, "tasks": list(tasks)}


def test_every_task_type_loads_as_one_asset_with_its_deps(tmp_path):
    path = _write(
        tmp_path / "jobs.json",
        _job(
            "Mixed",
            {"task_key": "nb", "notebook_task": {"notebook_path": "/Repos/x/nb"}, "existing_cluster_id": "0101-abc"},
            {"task_key": "py", "spark_python_task": {"python_file": "jobs/run.py"}, "depends_on": [{"task_key": "nb"}]},
            {"task_key": "whl", "python_wheel_task": {"package_name": "p", "entry_point": "main"}},
            {"task_key": "sql", "sql_task": {"file": {"path": "q.sql"}, "warehouse_id": "w"}},
            {
                "task_key": "dbt",
                "dbt_task": {"commands": ["dbt deps", "dbt build"]},
                "depends_on": [{"task_key": "py"}],
            },
            {"task_key": "dlt", "pipeline_task": {"pipeline_id": "p-1"}},
        ),
    )
    [workflow] = DatabricksJobs(path, key_prefix=["sales"], group="sales").workflows()
    specs = {s.key.to_user_string(): s for s in workflow.asset_specs()}
    assert set(specs) == {f"sales/{k}" for k in ("nb", "py", "whl", "sql", "dbt", "dlt")}
    assert [d.asset_key.to_user_string() for d in specs["sales/dbt"].deps] == ["sales/py"]
    assert {s.group_name for s in specs.values()} == {"sales"}
    assert {k: sorted(specs[f"sales/{k}"].kinds - {"databricks"}) for k in ("whl", "dlt", "dbt")} == {
        "whl": ["wheel"],
        "dlt": ["pipeline"],
        "dbt": ["dbt"],
    }
    assert "dbt deps && dbt build" in (specs["sales/dbt"].description or "")
    # the task keys stay the job's own whatever the asset key (run-now's `only` names them)
    assert {t.task_key for t in workflow.spec(workflow_target()).tasks} == {"nb", "py", "whl", "sql", "dbt", "dlt"}
    assert workflow.files() == {}


def test_an_existing_jobs_own_parameters_are_set_per_run_and_ours_only_when_declared(tmp_path):
    task = {"task_key": "a", "notebook_task": {"notebook_path": "/x"}}
    job = {
        **_job("P", task),
        "parameters": [{"name": "day", "default": "today"}, {"name": "dagster_run_id", "default": ""}],
    }
    [workflow] = DatabricksJobs(_write(tmp_path / "p.json", job)).workflows()
    assert dict(workflow.parameters) == {"day": "today"}  # the run config's fields; dagster_run_id is the step's
    assets = build_workflow_assets(workflow)
    assert set(assets.op.config_schema.config_type.fields) == {"day"}  # type: ignore[union-attr]


def workflow_target():
    from dbx_assets.integration.sources.base import DeployTarget

    return DeployTarget(workspace_root="/Shared/x")


def test_the_snapshot_file_and_job_names_fail_clearly(tmp_path):
    with pytest.raises(JobSnapshotError, match=r"No job snapshot at .*jobs.json\. Write it with `python -m "):
        DatabricksJobs(tmp_path / "jobs.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(JobSnapshotError, match="cannot be read"):
        DatabricksJobs(tmp_path / "bad.json")
    task = {"task_key": "a", "notebook_task": {"notebook_path": "/x"}}
    path = _write(tmp_path / "two.json", _job("One", task), _job("Two", task))
    existing = DatabricksJobs(path)
    with pytest.raises(JobSnapshotError, match=r"holds 2 jobs \(One \(100\), Two \(101\)\); name one"):
        existing.workflow()
    assert existing.workflow("Two").name == "two_101" and existing.workflow(100).name == "one_100"
    with pytest.raises(JobSnapshotError, match=r"holds no job 'Three'.*snapshot --job 'Three'"):
        existing.workflow("Three")
    with pytest.raises(JobSnapshotError, match=r"Asset key 'a' comes from two jobs \(One and Two\)"):
        DatabricksJobs(path, key_prefix=())
    bad = _write(tmp_path / "bad_dep.json", _job("J", {**task, "depends_on": [{"task_key": "gone"}]}))
    with pytest.raises(JobSnapshotError, match=r"task 'a' depends on 'gone', which is not a task of the job"):
        DatabricksJobs(bad)


def test_what_changed_is_said_in_a_few_words():
    a = {"task_key": "a", "notebook_task": {"notebook_path": "/a"}}
    b = {"task_key": "b", "notebook_task": {"notebook_path": "/b"}}
    before = {"tasks": [a, b], "parameters": [{"name": "day", "default": ""}]}
    after = {"tasks": [{**a, "max_retries": 2}, {"task_key": "c", "notebook_task": {"notebook_path": "/c"}}]}
    assert describe_changes(before, after) == "tasks added: c; tasks removed: b; tasks changed: a; parameters changed"
    assert fingerprint({**before, "name": "x", "schedule": {"q": 1}}) == fingerprint(before)
    assert fingerprint(after) != fingerprint(before)
