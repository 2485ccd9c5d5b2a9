"""Cluster log delivery (local workspace) and tailing (the Dagster step), without a JVM.

The local workspace delivers a cluster's driver logs to its `cluster_log_conf` destination in
Databricks' layout, `<destination>/<cluster_id>/driver/{stdout,stderr,log4j-active.log}`, while
the cluster runs and completely when it terminates; the step tails stdout/stderr through the
DBFS / Files APIs into its compute logs, labelled by cluster.
"""

from __future__ import annotations

import io
import time
import uuid

import dagster as dg
import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import compute, jobs
from sdk_helpers import upload_notebook, wait_for_run
from workflow_support import captured_compute_logs, make_resource, materialization_metadata

from dbx_assets.integration.jobs.cluster_logs import ClusterLogTailer, log_destination
from dbx_assets.integration.jobs.model import DEFAULT_CLUSTER_SPEC, WorkflowDefinitionError
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

DRIVER_FILES = {"stdout", "stderr", "log4j-active.log"}
SPARK_VERSION = "15.4.x-scala2.12"


def _printing_notebook(tag: str) -> str:
    # The last line has no newline: only the delivery at termination may copy it.
    return f'print("{tag} first line")\nprint("{tag} second line")\nprint("{tag} last words", end="")\n'


def _driver_files_dbfs(w, folder: str) -> set[str]:
    return {(f.path or "").rsplit("/", 1)[-1] for f in w.dbfs.list(folder)}


def _read_dbfs(w, path: str) -> str:
    with w.dbfs.download(path) as fh:
        return fh.read().decode()


def _read_volume(w, path: str) -> str:
    contents = w.files.download(path).contents
    assert contents is not None
    return contents.read().decode()


def test_job_cluster_delivers_driver_logs_in_databricks_layout(fake_dbx):
    w = fake_dbx.client
    tag = "job" + uuid.uuid4().hex[:8]
    notebook = upload_notebook(w, f"/Shared/cluster_logs/{tag}", _printing_notebook(tag))
    destination = f"dbfs:/cluster-logs/{tag}"
    cluster = compute.ClusterSpec(
        spark_version=SPARK_VERSION,
        num_workers=0,
        cluster_log_conf=compute.ClusterLogConf(dbfs=compute.DbfsStorageInfo(destination=destination)),
    )
    job = w.jobs.create(
        name=tag,
        job_clusters=[jobs.JobCluster(job_cluster_key="logged", new_cluster=cluster)],
        tasks=[
            jobs.Task(task_key="a", job_cluster_key="logged", notebook_task=jobs.NotebookTask(notebook_path=notebook)),
            jobs.Task(
                task_key="b",
                job_cluster_key="logged",
                depends_on=[jobs.TaskDependency(task_key="a")],
                notebook_task=jobs.NotebookTask(notebook_path=notebook),
            ),
        ],
    )
    assert job.job_id is not None
    run = wait_for_run(w, w.jobs.run_now(job.job_id).response.run_id)
    assert run.state and run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    cluster_ids = {t.cluster_instance.cluster_id for t in run.tasks or [] if t.cluster_instance}
    assert len(cluster_ids) == 1, cluster_ids
    cluster_id = cluster_ids.pop()

    folder = f"{destination}/{cluster_id}/driver"
    assert _driver_files_dbfs(w, folder) == DRIVER_FILES
    stdout = _read_dbfs(w, f"{folder}/stdout")
    # Both tasks' prints, whole, in the driver's stdout; the unterminated last line came with the
    # delivery at termination, which happens before the run is reported TERMINATED.
    assert stdout.count(f"{tag} first line\n") == 2, stdout
    assert stdout.count(f"{tag} last words") == 2, stdout
    assert stdout.endswith(f"{tag} last words"), stdout
    status = w.clusters.get(cluster_id).cluster_log_status
    assert status is not None and status.last_attempted, "clusters/get reports the delivery"


def test_all_purpose_cluster_delivers_to_a_volume_while_it_runs(fake_dbx):
    w = fake_dbx.client
    tag = "ap" + uuid.uuid4().hex[:8]
    notebook = upload_notebook(w, f"/Shared/cluster_logs/{tag}", _printing_notebook(tag))
    destination = f"/Volumes/main/ops/logs/{tag}"
    cluster_id = (
        w.clusters.create(
            cluster_name=tag,
            spark_version=SPARK_VERSION,
            num_workers=0,
            cluster_log_conf=compute.ClusterLogConf(volumes=compute.VolumesStorageInfo(destination=destination)),
        )
        .result()
        .cluster_id
    )
    assert cluster_id is not None
    try:
        submitted = w.jobs.submit(
            run_name=tag,
            tasks=[
                jobs.SubmitTask(
                    task_key="a",
                    existing_cluster_id=cluster_id,
                    notebook_task=jobs.NotebookTask(notebook_path=notebook),
                )
            ],
        )
        run = wait_for_run(w, submitted.response.run_id)
        assert run.state and run.state.result_state == jobs.RunResultState.SUCCESS, run.state
        stdout_path = f"{destination}/{cluster_id}/driver/stdout"
        deadline = time.monotonic() + 60  # delivered every few seconds while the cluster runs
        stdout = ""
        while f"{tag} second line" not in stdout:
            assert time.monotonic() < deadline, f"nothing delivered to {stdout_path} while the cluster runs"
            time.sleep(0.3)
            try:
                stdout = _read_volume(w, stdout_path)
            except Exception:  # not delivered yet
                continue
        assert w.clusters.get(cluster_id).state == compute.State.RUNNING
        assert f"{tag} last words" not in stdout  # an unfinished line waits for its newline (or termination)
    finally:
        w.clusters.permanent_delete(cluster_id)
    names = {
        (e.path or "").rsplit("/", 1)[-1] for e in w.files.list_directory_contents(f"{destination}/{cluster_id}/driver")
    }
    assert names == DRIVER_FILES
    assert _read_volume(w, stdout_path).endswith(f"{tag} last words")  # complete at termination


def test_malformed_cluster_log_conf_is_refused_by_the_workspace_and_at_load(fake_dbx):
    with pytest.raises(InvalidParameterValue, match="dbfs:/"):
        fake_dbx.client.clusters.create(
            cluster_name="bad-logs",
            spark_version=SPARK_VERSION,
            num_workers=0,
            cluster_log_conf=compute.ClusterLogConf(dbfs=compute.DbfsStorageInfo(destination="/no/scheme")),
        )
    with pytest.raises(WorkflowDefinitionError, match="Job cluster 'shared' of workflow 'w'.*cluster_log_conf"):
        Workflow(
            name="w",
            sources=[],
            job_clusters={"shared": {**DEFAULT_CLUSTER_SPEC, "cluster_log_conf": {"volumes": {"destination": "/tmp"}}}},
        )
    assert log_destination({"cluster_log_conf": {"s3": {"destination": "s3://b/p"}}}, "x") is None  # not tailed


def test_tailer_reads_only_new_bytes_and_whole_lines(fake_dbx):
    """The tailer against files delivered through the real DBFS and Files APIs: offsets, lines
    split across deliveries, a rewritten (shorter) file, stdout vs stderr, labels."""
    w = fake_dbx.client
    tag = uuid.uuid4().hex[:8]
    destinations: dict[str | None, str] = {"shared": f"dbfs:/tail/{tag}", "other": f"/Volumes/main/ops/logs/{tag}"}
    lines: list[tuple[str, str]] = []
    tailer = ClusterLogTailer(
        w, destinations, emit=lambda s, t: lines.append((s, t)), warn=lambda m: lines.append(("warn", m))
    )
    tasks = [
        jobs.RunTask(task_key="a", job_cluster_key="shared", cluster_instance=jobs.ClusterInstance(cluster_id="c1")),
        jobs.RunTask(task_key="b", job_cluster_key="other", cluster_instance=jobs.ClusterInstance(cluster_id="c2")),
        jobs.RunTask(task_key="c", job_cluster_key="unlogged", cluster_instance=jobs.ClusterInstance(cluster_id="c3")),
    ]

    def put(cluster: str, name: str, text: str) -> None:
        if cluster == "c1":
            w.dbfs.upload(f"dbfs:/tail/{tag}/c1/driver/{name}", io.BytesIO(text.encode()), overwrite=True)
        else:
            w.files.upload(f"/Volumes/main/ops/logs/{tag}/c2/driver/{name}", io.BytesIO(text.encode()), overwrite=True)

    tailer.poll(tasks)  # nothing delivered yet: no output, no warning
    assert lines == []
    put("c1", "stdout", "one\ntw")
    put("c2", "stderr", "oops\n")
    tailer.poll(tasks)
    assert lines == [("stdout", "[shared c1] one"), ("stderr", "[other c2] oops")]
    lines.clear()
    put("c1", "stdout", "one\ntwo\nthree")
    tailer.poll(tasks)
    assert lines == [("stdout", "[shared c1] two")]
    lines.clear()
    put("c1", "stdout", "new\n")  # rewritten shorter: read from the start again
    tailer.poll(tasks, final=True)
    assert lines == [("stdout", "[shared c1] new")]
    lines.clear()
    tailer.poll(tasks, final=True)
    assert lines == []


def _logging_notebook_workflow(name: str, destination: str, notebooks_dir) -> Workflow:
    (notebooks_dir / "talker.py").write_text(
        "# Databricks notebook source\n"
        f'print("{name} says hello")\n'
        f'print("{name} says goodbye")\n'
        'dbutils.notebook.exit("done")\n'
    )
    return Workflow(
        name=name,
        sources=[
            NotebookTasks([NotebookAsset(key=f"{name}/talker", notebook="talker.py")], notebooks_dir=notebooks_dir)
        ],
        job_clusters={"shared": {**DEFAULT_CLUSTER_SPEC, "cluster_log_conf": {"dbfs": {"destination": destination}}}},
    )


def test_printed_lines_reach_the_step_compute_logs_labelled_by_cluster(dbx_env, tmp_path):
    name = "cl" + uuid.uuid4().hex[:8]
    workflow = _logging_notebook_workflow(name, f"dbfs:/cluster-logs/{name}", tmp_path)
    dbx_env.set_faults()  # no faults; request counts from zero
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize(
            [build_workflow_assets(workflow)], resources={"databricks": make_resource(name)}, instance=instance
        )
        assert result.success
        cluster_id = materialization_metadata(result, dg.AssetKey([name, "talker"]))["databricks_cluster_id"]
        stdout, _ = captured_compute_logs(instance, result)
    assert f"[shared {cluster_id}] {name} says hello\n" in stdout
    assert f"[shared {cluster_id}] {name} says goodbye\n" in stdout
    assert stdout.count(f"{name} says hello") == 1  # each line once: offsets, not re-reads
    counts = dbx_env.counts()["requests"]
    runs_get = counts.get("GET /api/2.1/jobs/runs/get", 0) + counts.get("GET /api/2.2/jobs/runs/get", 0)
    listings = counts.get("GET /api/2.0/dbfs/list", 0)
    assert 0 < listings <= runs_get, counts  # at most one listing per cluster per poll


def test_no_cluster_log_conf_costs_no_log_calls(dbx_env, tmp_path):
    name = "nl" + uuid.uuid4().hex[:8]
    workflow = _logging_notebook_workflow(name, "dbfs:/unused", tmp_path)
    workflow = Workflow(name=name, sources=workflow.sources)  # the default cluster: no cluster_log_conf
    dbx_env.set_faults()
    result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": make_resource(name)})
    assert result.success
    counts = dbx_env.counts()["requests"]
    assert not any("dbfs/list" in k or "dbfs/read" in k or "fs/directories" in k for k in counts), counts


def test_the_demos_job_cluster_shows_what_notebooks_print_in_the_step_stdout(dbx_env, tmp_path):
    """What a newcomer sees by default: the demo's job cluster declares a cluster_log_conf, so a
    notebook's printed lines reach the run's stdout tab with no Pipes and no setting of theirs."""
    from dbx_assets.demo.definitions import CLUSTER_LOG_DESTINATION
    from dbx_assets.demo.definitions import workflow as demo_workflow
    from dbx_assets.demo.pool import ensure_demo_pool

    [(cluster_key, spec)] = demo_workflow.job_clusters.items()
    assert log_destination(spec, "the demo's job cluster") == CLUSTER_LOG_DESTINATION
    ensure_demo_pool(dbx_env.client)  # the demo's job cluster takes its driver from it (`make dev` makes it)
    name = "demo" + uuid.uuid4().hex[:8]
    talker = _logging_notebook_workflow(name, "dbfs:/unused", tmp_path)
    workflow = Workflow(name=name, sources=talker.sources, job_clusters=demo_workflow.job_clusters)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize(
            [build_workflow_assets(workflow)], resources={"databricks": make_resource(name)}, instance=instance
        )
        assert result.success
        cluster_id = materialization_metadata(result, dg.AssetKey([name, "talker"]))["databricks_cluster_id"]
        stdout, _ = captured_compute_logs(instance, result)
    assert f"[{cluster_key} {cluster_id}] {name} says hello\n" in stdout
    assert f"[{cluster_key} {cluster_id}] {name} says goodbye\n" in stdout
