"""A Workflow whose job cluster names an instance pool by name: deploy resolves the name to the
pool's id through the SDK, the run's job cluster takes its driver from that pool, and a pool that
does not exist fails the step with one message naming it and the fix (no-JVM workspace)."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from databricks.sdk.service import compute
from workflow_support import make_resource, materialization_metadata

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

SPARK_VERSION = "15.4.x-scala2.12"


def _workflow(name: str, notebooks_dir, pool_name: str) -> Workflow:
    (notebooks_dir / "hello.py").write_text('# Databricks notebook source\ndbutils.notebook.exit("hi")\n')
    return Workflow(
        name=name,
        sources=[NotebookTasks([NotebookAsset(key=f"{name}/hello", notebook="hello.py")], notebooks_dir=notebooks_dir)],
        job_clusters={"pooled": {"spark_version": SPARK_VERSION, "num_workers": 1, "instance_pool_name": pool_name}},
        default_job_cluster="pooled",
        dbu_rates={"local": 0.5},
    )


def test_a_job_cluster_naming_a_pool_by_name_runs_on_that_pools_instance(dbx_env, tmp_path):
    w = dbx_env.client
    pool_name = "wf-pool-" + uuid.uuid4().hex[:6]
    pool_id = w.instance_pools.create(instance_pool_name=pool_name, node_type_id="local", min_idle_instances=1)
    assert pool_id.instance_pool_id
    name = "pooled" + uuid.uuid4().hex[:8]
    workflow = _workflow(name, tmp_path, pool_name)
    assert workflow.instance_pool_names == (pool_name,)
    try:
        result = dg.materialize([build_workflow_assets(workflow)], resources={"databricks": make_resource(name)})
        assert result.success
        metadata = materialization_metadata(result, dg.AssetKey([name, "hello"]))
        cluster_id = metadata["databricks_cluster_id"]
        # Priced by the pool's node type (the job spec names none): driver + 1 worker at 0.5 DBU/h.
        assert "1 driver local + 1 workers local = 1 DBU/h" in metadata["databricks_dbu_basis"]
        cluster = w.clusters.get(cluster_id)
        assert cluster.instance_pool_id == pool_id.instance_pool_id and cluster.node_type_id is None
        [job] = w.jobs.list(name=f"{name} [dev]", expand_tasks=True) or [None]
        assert job and job.settings and job.settings.job_clusters
        deployed = job.settings.job_clusters[0].new_cluster
        assert deployed.instance_pool_id == pool_id.instance_pool_id  # the name went out as its id
        running = next(e for e in w.clusters.events(cluster_id) if e.type == compute.EventType.RUNNING)
        assert (
            running.details
            and running.details.instance_id
            and running.details.instance_id.startswith(pool_id.instance_pool_id)
        )
    finally:
        w.instance_pools.delete(pool_id.instance_pool_id)


def test_a_pool_that_does_not_exist_fails_the_step_naming_it_and_the_fix(dbx_env, tmp_path):
    name = "nopool" + uuid.uuid4().hex[:8]
    workflow = _workflow(name, tmp_path, "no-such-pool")
    result = dg.materialize(
        [build_workflow_assets(workflow)], resources={"databricks": make_resource(name)}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data)
    assert "Instance pool 'no-such-pool' does not exist" in message and "instance_pool_name" in message


def test_a_pool_named_with_a_node_type_is_refused_at_load():
    with pytest.raises(WorkflowDefinitionError, match="remove 'node_type_id'"):
        Workflow(
            name="typed",
            sources=[],
            job_clusters={
                "shared": {
                    "spark_version": SPARK_VERSION,
                    "num_workers": 1,
                    "instance_pool_name": "p",
                    "node_type_id": "x",
                }
            },
        )
