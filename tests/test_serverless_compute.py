"""Serverless jobs compute and mixed compute in one run, without a JVM: the job spec's shape, the
declarations refused at definitions load, what the local workspace refuses through the SDK (as
Databricks does), and one Dagster materialization whose tasks run on two job clusters and a
serverless environment in one Databricks run, each asset saying where it ran."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.jobs import JobEnvironment, JobSettings, PerformanceTarget, Task
from workflow_support import NOTEBOOKS, key, make_resource, materialization_metadata, materialize, new_name

from dbx_assets.integration.dbt.source import DBT_DATABRICKS_LIBRARY
from dbx_assets.integration.jobs.model import (
    DEFAULT_CLUSTER_SPEC,
    WorkflowDefinitionError,
    WorkflowSpec,
    WorkflowTask,
    serverless_environment,
)
from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

LARGE = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.2xlarge", "num_workers": 4}
TARGET = DeployTarget(workspace_root="/Shared/serverless_tests")


@pytest.fixture
def notebooks_dir(tmp_path):
    target = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, target)
    return target


def _mixed(name: str, notebooks_dir, **kwargs: Any) -> Workflow:
    """source on the default job cluster, sink on the 'large' one, slow serverless."""
    notebooks = NotebookTasks(
        [
            NotebookAsset(key=f"{name}/source", notebook="source.py", params={"out": f"/dbfs/tmp/{name}/rows.txt"}),
            NotebookAsset(key=f"{name}/sink", notebook="sink.py", deps=[f"{name}/source"], job_cluster="large"),
            NotebookAsset(
                key=f"{name}/slow",
                notebook="slow.py",
                params={"seconds": "0"},
                environment="default",
                libraries=("requests==2.32.3",),
            ),
        ],
        notebooks_dir=notebooks_dir,
    )
    kwargs.setdefault("job_clusters", {"shared": DEFAULT_CLUSTER_SPEC, "large": LARGE})
    kwargs.setdefault("environments", {"default": serverless_environment(["pyyaml>=6"])})
    return Workflow(name=name, sources=[notebooks], **kwargs)


def _tasks(settings: dict) -> dict[str, dict]:
    return {t["task_key"].split("__")[-1]: t for t in settings["tasks"]}


# -- the job spec -----------------------------------------------------------------------------------


def test_mixed_spec_puts_each_task_on_its_compute_and_libraries_into_the_environment(notebooks_dir):
    settings = _mixed("m", notebooks_dir, performance_target="STANDARD").spec(TARGET).job_settings()
    tasks = _tasks(settings)
    assert tasks["source"]["job_cluster_key"] == "shared" and "environment_key" not in tasks["source"]
    assert tasks["sink"]["job_cluster_key"] == "large"
    assert tasks["slow"]["environment_key"] == "default"
    assert "job_cluster_key" not in tasks["slow"] and "libraries" not in tasks["slow"]
    assert settings["job_clusters"] == [
        {"job_cluster_key": "large", "new_cluster": LARGE},
        {"job_cluster_key": "shared", "new_cluster": DEFAULT_CLUSTER_SPEC},
    ]
    assert settings["environments"] == [
        {
            "environment_key": "default",
            "spec": {"environment_version": "2", "dependencies": ["pyyaml>=6", "requests==2.32.3"]},
        }
    ]
    assert settings["performance_target"] == "STANDARD"
    JobSettings.from_dict(settings)  # the SDK's own shape


def test_an_all_serverless_workflow_has_no_job_clusters_and_dbt_pins_its_adapter_in_the_environment():
    spec = WorkflowSpec(
        name="s",
        tasks=(
            WorkflowTask("nb", {"notebook_task": {"notebook_path": "/x"}}, environment_key="default"),
            WorkflowTask(
                "dbt_build",
                {"dbt_task": {"commands": ["dbt build"]}},
                depends_on=("nb",),
                environment_key="dbt",
                libraries=(DBT_DATABRICKS_LIBRARY,),
            ),
        ),
        environments={"default": serverless_environment(), "dbt": serverless_environment(version="3")},
    )
    settings = spec.job_settings()
    assert "job_clusters" not in settings
    assert settings["environments"] == [
        {
            "environment_key": "dbt",
            "spec": {"environment_version": "3", "dependencies": [DBT_DATABRICKS_LIBRARY["pypi"]["package"]]},
        },
        {"environment_key": "default", "spec": {"environment_version": "2", "dependencies": []}},
    ]
    assert [t.get("environment_key") for t in settings["tasks"]] == ["default", "dbt"]
    assert all("libraries" not in t for t in settings["tasks"])


def test_default_environment_runs_undeclared_tasks_serverless(notebooks_dir):
    wf = Workflow(
        name="d",
        sources=[
            NotebookTasks(
                [
                    NotebookAsset(key="a", notebook="sink.py"),
                    NotebookAsset(key="b", notebook="sink.py", job_cluster="big"),
                ],
                notebooks_dir=notebooks_dir,
            )
        ],
        job_clusters={"big": LARGE},
        environments={"default": serverless_environment()},
        default_environment="default",
    )
    tasks = _tasks(wf.spec(TARGET).job_settings())
    assert tasks["a"]["environment_key"] == "default" and "job_cluster_key" not in tasks["a"]
    assert tasks["b"]["job_cluster_key"] == "big" and "environment_key" not in tasks["b"]


# -- refused at definitions load ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "declaration", "message"),
    [
        (
            {},
            {"environment": "gpu"},
            r"names serverless environment 'gpu', which the workflow does not define \(defined: default\)",
        ),
        (
            {},
            {"environment": "default", "job_cluster": "large"},
            r"names both job cluster 'large' and serverless environment 'default'",
        ),
        (
            {"environments": {"default": {"environment_version": "2", "spark_conf": {"a": "b"}}}},
            {},
            r"Environment 'default' of workflow 'w': spark_conf cannot be set on serverless compute",
        ),
        ({"environments": {"default": {"dependencies": ["x"]}}}, {}, r"needs 'environment_version'"),
        ({"performance_target": "FAST"}, {}, r"performance_target 'FAST'; use one of PERFORMANCE_OPTIMIZED, STANDARD"),
        ({"default_environment": "nope"}, {}, r"has no environment 'nope' \(its default_environment\)"),
        ({"compute": "all_purpose"}, {}, r"compute='all_purpose'.*cannot declare serverless environments"),
    ],
)
def test_bad_serverless_declarations_are_named_at_load(notebooks_dir, kwargs, declaration, message):
    nb = NotebookAsset(key="a", notebook="sink.py", **declaration)
    kwargs.setdefault("environments", {"default": serverless_environment()})
    with pytest.raises(WorkflowDefinitionError, match=message):
        Workflow(
            name="w",
            sources=[NotebookTasks([nb], notebooks_dir=notebooks_dir)],
            job_clusters={"shared": DEFAULT_CLUSTER_SPEC, "large": LARGE},
            **kwargs,
        )


def test_a_library_serverless_cannot_install_is_named_at_load(notebooks_dir):
    class JarNotebooks(NotebookTasks):  # a source whose task needs a jar, which environments cannot take
        def tasks(self, target):
            import dataclasses

            return [dataclasses.replace(t, libraries=({"jar": "dbfs:/x.jar"},)) for t in super().tasks(target)]

    with pytest.raises(
        WorkflowDefinitionError, match=r"Task 'a' of workflow 'w': library .*jar.* cannot run on serverless"
    ):
        Workflow(
            name="w",
            sources=[
                JarNotebooks([NotebookAsset(key="a", notebook="sink.py", environment="e")], notebooks_dir=notebooks_dir)
            ],
            environments={"e": serverless_environment()},
        )


# -- the local workspace refuses what Databricks refuses -------------------------------------------------

NOTEBOOK = {"notebook_task": {"notebook_path": "/Shared/x"}}
DBT = {"dbt_task": {"commands": ["dbt build"], "project_directory": "/Shared/p"}}
ENV = {"environment_key": "default", "spec": {"environment_version": "2", "dependencies": ["requests"]}}


@pytest.mark.parametrize(
    ("task", "environments", "message"),
    [
        (
            {**NOTEBOOK, "environment_key": "default", "libraries": [{"pypi": {"package": "requests"}}]},
            [ENV],
            r"^Libraries field is not supported for serverless task, please specify libraries in environment\.$",
        ),
        ({**NOTEBOOK, "libraries": [{"pypi": {"package": "requests"}}]}, [], r"^Libraries field is not supported"),
        (DBT, [ENV], r"dbt_task on serverless compute without an environment_key"),
        (
            {**NOTEBOOK, "environment_key": "gpu"},
            [ENV],
            r"environment_key 'gpu', which is not defined .*\(defined: default\)",
        ),
        (
            {**NOTEBOOK, "environment_key": "default", "new_cluster": DEFAULT_CLUSTER_SPEC},
            [ENV],
            r"sets both environment_key and new_cluster",
        ),
        (
            {**NOTEBOOK, "environment_key": "default"},
            [{"environment_key": "default", "spec": {"dependencies": ["requests"]}}],
            r"either environment_version or base_environment needs to be provided",
        ),
    ],
)
def test_local_workspace_rejects_invalid_serverless_jobs_like_databricks(fake_dbx, task, environments, message):
    with pytest.raises(InvalidParameterValue, match=message) as err:
        fake_dbx.client.jobs.create(
            name=new_name(),
            tasks=[Task.from_dict({"task_key": "t", **task})],
            environments=[JobEnvironment.from_dict(e) for e in environments] or None,
        )
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_local_workspace_accepts_serverless_notebooks_and_dbt_and_echoes_environments(fake_dbx):
    client = fake_dbx.client
    created = client.jobs.create(
        name=new_name(),
        tasks=[
            Task.from_dict({"task_key": "nb", **NOTEBOOK}),  # a notebook without an environment uses its own
            Task.from_dict({"task_key": "dbt", **DBT, "environment_key": "default"}),
        ],
        environments=[JobEnvironment.from_dict(ENV)],
        performance_target=PerformanceTarget.PERFORMANCE_OPTIMIZED,
    )
    assert created.job_id is not None
    job = client.jobs.get(created.job_id)
    assert job.settings is not None
    assert [e.as_dict() for e in job.settings.environments or []] == [ENV]
    assert job.settings.performance_target == PerformanceTarget.PERFORMANCE_OPTIMIZED


# -- one run on mixed compute, through Dagster ----------------------------------------------------------------


def test_mixed_compute_is_one_run_and_each_asset_says_where_it_ran(dbx_env, notebooks_dir):
    name = new_name()
    workflow = _mixed(name, notebooks_dir, performance_target="STANDARD")
    result = materialize(name, assets=build_workflow_assets(workflow), resource=make_resource(name))
    assert result.success
    meta = {a: materialization_metadata(result, key(name, a)) for a in ("source", "sink", "slow")}
    assert len({m["databricks_run_id"] for m in meta.values()}) == 1  # one Databricks run

    shared_id, large_id = meta["source"]["databricks_cluster_id"], meta["sink"]["databricks_cluster_id"]
    assert shared_id != large_id
    assert meta["source"]["databricks_compute"] == f"job cluster 'shared' (cluster id {shared_id})"
    assert meta["sink"]["databricks_compute"] == f"job cluster 'large' (cluster id {large_id})"
    assert meta["slow"]["databricks_compute"] == "serverless environment 'default'"

    client = dbx_env.client
    run = client.jobs.get_run(meta["slow"]["databricks_run_id"])
    assert run.effective_performance_target == PerformanceTarget.STANDARD
    by_key = {t.task_key.split("__")[-1]: t for t in run.tasks or [] if t.task_key}
    assert by_key["slow"].environment_key == "default" and by_key["slow"].job_cluster_key is None
    assert by_key["sink"].job_cluster_key == "large"
    # the serverless task ran on its environment's own runtime, not on either job cluster
    serverless_id = by_key["slow"].cluster_instance.cluster_id if by_key["slow"].cluster_instance else None
    assert serverless_id not in (None, shared_id, large_id)
    assert (client.clusters.get(serverless_id).cluster_name or "").endswith("-serverless-default")
