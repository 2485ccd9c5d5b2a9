"""Jobs/Clusters API semantics through the SDK against an in-process server whose clusters
are the fake runtime from conftest (tasks are real subprocesses; no Spark)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from databricks.sdk.errors import InvalidParameterValue, NotFound, OperationFailed
from databricks.sdk.service import compute, jobs
from sdk_helpers import upload_notebook

HEADER = "# Databricks notebook source\n"
CLUSTER = compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0)


def task(key: str, path: str, deps=(), **kw) -> jobs.Task:
    return jobs.Task(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=path, base_parameters=kw.pop("params", None)),
        job_cluster_key="main",
        depends_on=[jobs.TaskDependency(task_key=d) for d in deps],
        **kw,
    )


def make_job(w, name, tasks, **kw) -> int:
    return w.jobs.create(
        name=name, tasks=tasks, job_clusters=[jobs.JobCluster(job_cluster_key="main", new_cluster=CLUSTER)], **kw
    ).job_id


def wait(w, run_id, timeout=60) -> jobs.Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = w.jobs.get_run(run_id)
        if run.state.life_cycle_state in (
            jobs.RunLifeCycleState.TERMINATED,
            jobs.RunLifeCycleState.SKIPPED,
            jobs.RunLifeCycleState.INTERNAL_ERROR,
        ):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def result(run: jobs.Run) -> jobs.RunResultState | None:
    assert run.state is not None, run
    return run.state.result_state


def by_key(run) -> dict:
    return {t.task_key: t for t in run.tasks}


@pytest.fixture(scope="module")
def nbs(fake_client):
    w = fake_client
    return {
        "ok": upload_notebook(w, "/Shared/jobs/ok", "dbutils.notebook.exit('done:' + dbutils.widgets.get('x'))\n"),
        "fail": upload_notebook(w, "/Shared/jobs/fail", "raise ValueError('bad input')\n"),
        "sleep": upload_notebook(w, "/Shared/jobs/sleep", "import time\ntime.sleep(60)\n"),
        "flaky": upload_notebook(
            w,
            "/Shared/jobs/flaky",
            "import os\nif not os.path.exists('/tmp/_flaky_' + dbutils.widgets.get('k')):\n"
            "    open('/tmp/_flaky_' + dbutils.widgets.get('k'), 'w').write('1'); raise RuntimeError('first try fails')\n",
        ),
    }


def test_jobs_crud(fake_client, nbs):
    w = fake_client
    job_id = make_job(w, "crud-job", [task("a", nbs["ok"], params={"x": "1"})])
    job = w.jobs.get(job_id)
    assert (
        job.settings.name == "crud-job"
        and job.settings.max_concurrent_runs == 1
        and job.settings.tasks[0].task_key == "a"
    )
    w.jobs.reset(
        job_id,
        new_settings=jobs.JobSettings(
            name="crud-job-2",
            tasks=[task("b", nbs["ok"])],
            job_clusters=[jobs.JobCluster(job_cluster_key="main", new_cluster=CLUSTER)],
        ),
    )
    assert [t.task_key for t in w.jobs.get(job_id).settings.tasks] == ["b"]
    w.jobs.update(job_id, new_settings=jobs.JobSettings(timeout_seconds=99))
    assert w.jobs.get(job_id).settings.timeout_seconds == 99
    assert [j.job_id for j in w.jobs.list(name="CRUD-JOB-2")] == [job_id]
    with pytest.raises(InvalidParameterValue, match="nope"):
        w.jobs.create(
            name="bad",
            tasks=[task("a", nbs["ok"], deps=["nope"])],
            job_clusters=[jobs.JobCluster(job_cluster_key="main", new_cluster=CLUSTER)],
        )
    w.jobs.delete(job_id)
    with pytest.raises(NotFound):
        w.jobs.get(job_id)


def test_run_now_shares_one_job_cluster_and_outputs(fake_client, nbs):
    w = fake_client
    job_id = make_job(
        w,
        "two-tasks",
        [
            task("a", nbs["ok"], params={"x": "base"}),
            task("b", nbs["ok"], deps=["a"], params={"x": "{{job.parameters.p}}"}),
            task("c", nbs["ok"], params={"x": "c"}),
        ],
        parameters=[jobs.JobParameterDefinition(name="p", default="dflt")],
    )
    run = w.jobs.run_now(job_id, only=["a", "b"], job_parameters={"p": "given"}).result(timeout=timedelta(seconds=60))
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    tasks = by_key(run)
    assert set(tasks) == {"a", "b"}  # `only`
    assert tasks["a"].cluster_instance.cluster_id == tasks["b"].cluster_instance.cluster_id
    assert run.run_page_url.endswith(f"/jobs/{job_id}/runs/{run.run_id}")
    assert {p.name: p.value for p in run.job_parameters} == {"p": "given"}
    out = w.jobs.get_run_output(tasks["a"].run_id)
    assert out.notebook_output.result == "done:base"
    # {{job.parameters.p}} in base_parameters resolves to the run's value
    assert w.jobs.get_run_output(tasks["b"].run_id).notebook_output.result == "done:given"
    assert out.metadata.run_id == tasks["a"].run_id and out.metadata.job_id == job_id
    with pytest.raises(InvalidParameterValue, match="task run id"):
        w.jobs.get_run_output(run.run_id)
    cluster = w.clusters.get(tasks["a"].cluster_instance.cluster_id)
    assert cluster.cluster_source == compute.ClusterSource.JOB and cluster.state == compute.State.TERMINATED


def test_failure_run_if_and_repair(fake_client, nbs):
    w = fake_client
    key = str(time.time_ns())
    job_id = make_job(
        w,
        "repair-job",
        [
            task("flaky", nbs["flaky"], params={"k": key}),
            task("after", nbs["ok"], deps=["flaky"], params={"x": "1"}),
            task("cleanup", nbs["ok"], deps=["flaky"], params={"x": "2"}, run_if=jobs.RunIf.ALL_DONE),
        ],
    )
    run = wait(w, w.jobs.run_now(job_id).run_id)
    t = by_key(run)
    assert result(run) == jobs.RunResultState.FAILED
    assert t["flaky"].state.result_state == jobs.RunResultState.FAILED
    assert t["after"].state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    assert t["cleanup"].state.result_state == jobs.RunResultState.SUCCESS
    assert "first try fails" in w.jobs.get_run_output(t["flaky"].run_id).error
    with pytest.raises(InvalidParameterValue, match="ghost"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["ghost"])
    repair_id = w.jobs.repair_run(
        run.run_id, rerun_all_failed_tasks=True, rerun_dependent_tasks=True
    ).response.repair_id
    repaired = wait(w, run.run_id)
    t2 = by_key(repaired)
    assert result(repaired) == jobs.RunResultState.SUCCESS
    assert all(t2[k].run_id != t[k].run_id for k in t)  # rerun_dependent_tasks pulls in both dependents
    history = repaired.repair_history
    assert history is not None
    assert [h.type for h in history] == [
        jobs.RepairHistoryItemType.ORIGINAL,
        jobs.RepairHistoryItemType.REPAIR,
    ]
    assert history[1].task_run_ids is not None
    assert sorted(history[1].task_run_ids) == sorted(x.run_id for x in t2.values())
    assert (
        t2["flaky"].cluster_instance.cluster_id != t["flaky"].cluster_instance.cluster_id
    )  # a new job cluster per repair
    with pytest.raises(InvalidParameterValue, match="latest_repair_id"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["cleanup"], latest_repair_id=repair_id + 1000)
    w.jobs.repair_run(run.run_id, rerun_tasks=["cleanup"], latest_repair_id=repair_id)
    assert result(wait(w, run.run_id)) == jobs.RunResultState.SUCCESS


def test_cancel_stops_the_task_process(fake_client, nbs, fake_workspace):
    w = fake_client
    run_id = w.jobs.submit(
        run_name="cancel-me",
        tasks=[
            jobs.SubmitTask(
                task_key="s", notebook_task=jobs.NotebookTask(notebook_path=nbs["sleep"]), new_cluster=CLUSTER
            )
        ],
    ).run_id
    deadline = time.monotonic() + 30
    while by_key(w.jobs.get_run(run_id))["s"].state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    task_run_id = by_key(w.jobs.get_run(run_id))["s"].run_id
    pid_file = fake_workspace.paths.task_runs / str(task_run_id) / "pid"
    while not pid_file.exists():
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    started = time.monotonic()
    w.jobs.cancel_run(run_id)
    run = wait(w, run_id, timeout=10)
    assert time.monotonic() - started < 5
    assert (
        result(run) == jobs.RunResultState.CANCELED
        and by_key(run)["s"].state.result_state == jobs.RunResultState.CANCELED
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_idempotency_timeout_and_listing(fake_client, nbs):
    w = fake_client
    token = f"tok-{time.time_ns()}"
    spec = [
        jobs.SubmitTask(
            task_key="t",
            notebook_task=jobs.NotebookTask(notebook_path=nbs["sleep"]),
            new_cluster=CLUSTER,
            timeout_seconds=1,
        )
    ]
    first = w.jobs.submit(run_name="timeout", tasks=spec, idempotency_token=token).run_id
    assert w.jobs.submit(run_name="timeout", tasks=spec, idempotency_token=token).run_id == first
    active = [r.run_id for r in w.jobs.list_runs(active_only=True)]
    assert first in active
    run = wait(w, first, timeout=30)
    assert by_key(run)["t"].state.result_state == jobs.RunResultState.TIMEDOUT
    assert first not in [r.run_id for r in w.jobs.list_runs(active_only=True)]
    all_runs = list(w.jobs.list_runs(limit=2))  # pages of 2 followed through next_page_token
    assert len(all_runs) >= 3 and len({r.run_id for r in all_runs}) == len(all_runs)
    assert [r.run_id for r in all_runs] == sorted((r.run_id for r in all_runs), reverse=True)


def test_max_concurrent_runs_skips_or_queues(fake_client, nbs):
    w = fake_client
    job_id = make_job(w, "single", [task("s", nbs["sleep"])])
    first = w.jobs.run_now(job_id).run_id
    second = w.jobs.get_run(w.jobs.run_now(job_id).run_id)
    assert second.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    w.jobs.update(job_id, new_settings=jobs.JobSettings(queue=jobs.QueueSettings(enabled=True)))
    queued = w.jobs.run_now(job_id).run_id
    assert w.jobs.get_run(queued).state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    w.jobs.cancel_all_runs(job_id=job_id)
    assert result(wait(w, first)) == jobs.RunResultState.CANCELED
    assert result(wait(w, queued)) == jobs.RunResultState.CANCELED


def test_cluster_start_failure_ends_run_internal_error(fake_client, nbs):
    w = fake_client
    broken = compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0, spark_conf={"fake.fail_start": "1"})
    waiter = w.jobs.submit(
        run_name="broken",
        tasks=[
            jobs.SubmitTask(task_key="t", notebook_task=jobs.NotebookTask(notebook_path=nbs["ok"]), new_cluster=broken)
        ],
    )
    with pytest.raises(OperationFailed, match="fake.fail_start"):
        waiter.result(timeout=timedelta(seconds=60))


def test_clusters_lifecycle(fake_client):
    w = fake_client
    with pytest.raises(InvalidParameterValue, match="spark_version"):
        w.clusters.create(spark_version="", num_workers=0)
    with pytest.raises(InvalidParameterValue, match="num_workers"):
        w.clusters.create(spark_version="15.4.x-scala2.12")
    c = w.clusters.create(cluster_name="ap", spark_version="15.4.x-scala2.12", num_workers=0).result(
        timeout=timedelta(seconds=60)
    )
    assert c.state == compute.State.RUNNING and c.cluster_source == compute.ClusterSource.API
    assert c.cluster_id in [x.cluster_id for x in w.clusters.list()]
    w.clusters.delete(c.cluster_id).result(timeout=timedelta(seconds=30))
    assert w.clusters.get(c.cluster_id).state == compute.State.TERMINATED
    assert w.clusters.start(c.cluster_id).result(timeout=timedelta(seconds=60)).state == compute.State.RUNNING
    w.clusters.permanent_delete(c.cluster_id)
    with pytest.raises(NotFound):
        w.clusters.get(c.cluster_id)
