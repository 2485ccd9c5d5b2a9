"""A job cluster on an instance pool really runs a notebook on a driver the pool started ahead:
the notebook's SparkSession is the pool instance's JVM (its app is named after the instance, not
the cluster), which was up before the cluster was created."""

from __future__ import annotations

import json
import time

from databricks.sdk.service import compute, jobs
from sdk_helpers import upload_notebook, wait_for_run

SPARK_VERSION = "15.4.x-scala2.12"


def test_a_pooled_job_cluster_runs_a_notebook_on_the_driver_the_pool_started_ahead(workspace_client, local_workspace):
    w = workspace_client
    pool = w.instance_pools.create(instance_pool_name="spark-pool", node_type_id="local", min_idle_instances=1)
    pool_id = pool.instance_pool_id
    assert pool_id
    try:
        deadline = time.monotonic() + 180
        while (w.instance_pools.get(pool_id).stats or compute.InstancePoolStats()).idle_count != 1:
            assert time.monotonic() < deadline, "the pool's instance did not start"
            time.sleep(0.2)
        notebook = upload_notebook(
            w,
            "/Shared/pools/app_name",
            "dbutils.notebook.exit(json.dumps({'app': spark.conf.get('spark.app.name'), "
            "'rows': spark.range(5).count()}))\n".replace("json.dumps", "__import__('json').dumps"),
        )
        run = w.jobs.submit(
            run_name="pooled",
            tasks=[
                jobs.SubmitTask(
                    task_key="t",
                    notebook_task=jobs.NotebookTask(notebook_path=notebook),
                    new_cluster=compute.ClusterSpec(
                        spark_version=SPARK_VERSION, num_workers=0, instance_pool_id=pool_id
                    ),
                )
            ],
        ).run_id
        assert run is not None
        finished = wait_for_run(w, run, timeout=180)
        task = (finished.tasks or [])[0]
        assert finished.state and finished.state.result_state == jobs.RunResultState.SUCCESS, finished.state
        assert task.run_id and task.cluster_instance and task.cluster_instance.cluster_id
        output = json.loads(w.jobs.get_run_output(task.run_id).notebook_output.result)
        cluster = w.clusters.get(task.cluster_instance.cluster_id)
        instance = cluster.driver.instance_id if cluster.driver else None
        assert instance and instance.startswith(pool_id)
        assert output == {"app": f"dbx-local-{instance}", "rows": 5}  # the pool instance's JVM ran it
        gateway = local_workspace.paths.clusters / instance / "gateway.json"
        assert gateway.stat().st_mtime * 1000 < (cluster.start_time or 0)  # up before the cluster existed
        running = next(e for e in w.clusters.events(cluster.cluster_id or "") if e.type == compute.EventType.RUNNING)
        assert running.details and running.details.instance_id == instance
    finally:
        w.instance_pools.delete(pool_id)
