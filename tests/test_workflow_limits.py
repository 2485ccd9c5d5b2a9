"""Databricks' documented Jobs API limits, said at definitions load (no workspace, no JVM).

A workflow over the cap fails when the Workflow is declared, naming the workflow, the limit, the
count and the fix; one at the cap (1,000 tasks) loads into Definitions and deploys as one job.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.source import DbtProjectTasks
from dbx_assets.integration.jobs.deploy import WorkflowDeployer
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.limits import (
    MAX_REQUEST_BYTES,
    MAX_TASKS_PER_JOB,
    job_problems,
    run_now_problems,
)

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_project"


@pytest.fixture
def notebooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "step.py").write_text("# Databricks notebook source\nprint('step')\n")
    return folder


def _notebooks(count: int, notebooks_dir: Path, **params: str) -> NotebookTasks:
    """`count` notebook assets in a chain of ten-long runs, all running the same small notebook."""
    return NotebookTasks(
        [
            NotebookAsset(
                key=f"n{i:04d}", notebook="step.py", deps=[f"n{i - 1:04d}"] if i % 10 else [], params=dict(params)
            )
            for i in range(count)
        ],
        notebooks_dir=notebooks_dir,
    )


def test_a_workflow_over_the_task_cap_fails_at_load_naming_count_limit_and_fix(notebooks_dir):
    with pytest.raises(WorkflowDefinitionError) as err:
        Workflow(name="huge", sources=[_notebooks(MAX_TASKS_PER_JOB + 1, notebooks_dir)])
    message = str(err.value)
    assert "Workflow 'huge'" in message
    assert "1,001 tasks" in message and "at most 1,000" in message
    assert "Split it into several Workflows" in message
    assert "dbt project is one task" in message


def test_a_workflow_at_the_task_cap_loads_into_definitions_and_deploys_as_one_job(notebooks_dir, fake_dbx):
    workflow = Workflow(name="limits_at_cap", sources=[_notebooks(1000, notebooks_dir)])
    assets = build_workflow_assets(workflow)
    resource = DatabricksResource(host=fake_dbx.host, token=fake_dbx.token)
    graph = dg.Definitions(assets=[assets], resources={"databricks": resource}).resolve_asset_graph()
    assert len(list(graph.get_all_asset_keys())) == 1000

    # The local workspace takes the 1,000-task job through the SDK, as Databricks does.
    target = DeployTarget(workspace_root=f"/Shared/limits/{workflow.name}")
    result = WorkflowDeployer(fake_dbx.client, target.workspace_root).deploy(workflow.spec(target), workflow.files())
    job = fake_dbx.client.jobs.get(result.job_id)
    assert job.settings is not None and job.settings.tasks is not None
    assert len(job.settings.tasks) == 1000


def test_oversized_notebook_parameters_name_the_task(notebooks_dir):
    big = "x" * 1_000_001
    with pytest.raises(WorkflowDefinitionError) as err:
        Workflow(name="params", sources=[_notebooks(1, notebooks_dir, blob=big)])
    assert "Workflow 'params'" in str(err.value)
    assert "parameters of task 'n0000'" in str(err.value) and "1,000,000" in str(err.value)


def test_job_settings_over_the_request_size_fail_even_with_each_task_under_its_own_cap(notebooks_dir):
    # Twelve tasks of ~0.9 MB of parameters each: every task is fine, the jobs/create request is not.
    with pytest.raises(WorkflowDefinitionError) as err:
        Workflow(name="heavy", sources=[_notebooks(12, notebooks_dir, blob="y" * 900_000)])
    message = str(err.value)
    assert "the job settings (jobs/create, jobs/reset)" in message
    assert f"{MAX_REQUEST_BYTES:,}" in message
    assert "parameters of task" not in message


def test_max_concurrent_runs_and_a_long_name_are_checked(notebooks_dir):
    with pytest.raises(WorkflowDefinitionError) as err:
        Workflow(name="n" * 4097, sources=[_notebooks(1, notebooks_dir)], max_concurrent_runs=1001)
    message = str(err.value)
    assert "max_concurrent_runs is 1001; Databricks allows 0 to 1000" in message
    # The job's name is the workflow's (plus the deployment's, where deployments name jobs).
    assert re.search(r"the job name is 4,[0-9]{3} bytes; Databricks allows 4,096\. Use a shorter name", message)


def test_a_dbt_task_key_databricks_rejects_fails_at_load():
    if not dbt_manifest.manifest_is_current(DBT_PROJECT):
        dbt_manifest.prepare(DBT_PROJECT)  # what `make setup` does; in-process dbt parse, no JVM
    project = DbtProjectTasks(DBT_PROJECT, task_key="dbt build")
    external = [key.to_user_string() for key in project.upstream_keys()]  # the notebook assets its sources read
    with pytest.raises(WorkflowDefinitionError) as err:
        Workflow(name="dbt_keys", sources=[project], external_deps=external)
    assert "task key 'dbt build' must be letters, digits, '_' and '-' only" in str(err.value)


def test_pure_checks_on_settings_and_run_requests():
    settings = {
        "name": "ok",
        "tasks": [{"task_key": "a" * 101}, {"task_key": "b", "dbt_task": {"commands": ["dbt run"] * 11}}],
        "job_clusters": [{"job_cluster_key": "big cluster"}],
        "parameters": [{"name": "fine.name-1", "default": ""}, {"name": "bad name", "default": ""}],
        "tags": {f"t{i}": "" for i in range(26)},
    }
    problems = list(job_problems(settings))
    assert any("task key 'aaaa" in p and "101 characters" in p for p in problems)
    assert any("dbt task 'b' has 11 commands; Databricks allows 10" in p for p in problems)
    assert any("job cluster key 'big cluster'" in p for p in problems)
    assert any("job parameter name 'bad name'" in p for p in problems)
    assert not any("fine.name-1" in p for p in problems)
    assert any("26 job tags; Databricks allows 25" in p for p in problems)
    assert list(job_problems({"name": "ok", "tasks": [{"task_key": "fine-key_1"}]})) == []

    assert list(run_now_problems({"only": ["a"], "dbt_commands": ["dbt build"]})) == []
    run_problems = list(run_now_problems({"only": ["task_a"] * 2_000_000, "dbt_commands": ["dbt build"] * 11}))
    assert any("the run-now request selecting every asset" in p and "10,000,000" in p for p in run_problems)
    assert any("11 dbt commands" in p for p in run_problems)
