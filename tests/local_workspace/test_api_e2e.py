"""End to end on the real cluster runtime (local PySpark): a notebook job through run-now,
two tasks sharing one job cluster. Prints the measured cluster start and run latency."""

from __future__ import annotations

import io
import time
from datetime import timedelta

from databricks.sdk.service import compute, jobs
from databricks.sdk.service.workspace import ImportFormat

NB = b"""# Databricks notebook source
n = spark.range(int(dbutils.widgets.get("n"))).count()
# COMMAND ----------
dbutils.notebook.exit(str(n))
"""


def test_notebook_job_on_real_local_cluster(workspace_client):
    w = workspace_client
    w.workspace.mkdirs("/Shared/e2e")
    w.workspace.upload("/Shared/e2e/count.py", io.BytesIO(NB), format=ImportFormat.AUTO, overwrite=True)
    job_id = w.jobs.create(
        name="e2e-count",
        job_clusters=[
            jobs.JobCluster(
                job_cluster_key="main", new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0)
            )
        ],
        tasks=[
            jobs.Task(
                task_key="first",
                job_cluster_key="main",
                notebook_task=jobs.NotebookTask(notebook_path="/Shared/e2e/count", base_parameters={"n": "5"}),
            ),
            jobs.Task(
                task_key="second",
                job_cluster_key="main",
                depends_on=[jobs.TaskDependency(task_key="first")],
                notebook_task=jobs.NotebookTask(notebook_path="/Shared/e2e/count", base_parameters={"n": "7"}),
            ),
        ],
    ).job_id
    submitted = time.monotonic()
    run = w.jobs.run_now(job_id).result(timeout=timedelta(minutes=5))
    latency = time.monotonic() - submitted
    tasks = {t.task_key: t for t in run.tasks}
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert tasks["first"].cluster_instance.cluster_id == tasks["second"].cluster_instance.cluster_id
    assert w.jobs.get_run_output(tasks["first"].run_id).notebook_output.result == "5"
    assert w.jobs.get_run_output(tasks["second"].run_id).notebook_output.result == "7"
    cluster = w.clusters.get(tasks["first"].cluster_instance.cluster_id)
    assert cluster.state == compute.State.TERMINATED and cluster.cluster_source == compute.ClusterSource.JOB
    print(
        f"\nMEASURED cluster start (first task setup_duration): {tasks['first'].setup_duration / 1000:.1f}s; "
        f"two-task run submit->TERMINATED: {latency:.1f}s"
    )
