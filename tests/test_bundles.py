"""Databricks Asset Bundles as task sources, at definitions load (no workspace, no Spark): the bundles
in tests/data/bundles (shaped like Databricks' default_python, default_sql and dbt_sql templates,
and a two-target bundle) read as the CLI reads them, each job a Workflow whose tasks are assets.

With DBX_BUNDLE_EXAMPLES naming a checkout of github.com/databricks/bundle-examples, the upstream
templates themselves are loaded too."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from dbx_assets import (
    DatabricksBundle,
    DatabricksResource,
    DbtManifestError,
    DbtProjectTasks,
    WorkflowDefinitionError,
)
from dbx_assets.integration.bundles.config import BundleError, load_bundle
from dbx_assets.integration.sources.base import DeployTarget

BUNDLES = Path(__file__).parent / "data" / "bundles"
TARGET = DeployTarget(workspace_root="/Workspace/Shared/dbx_assets/dev", sql_warehouse_id="wh1", deployment="dev")
USER = "Ann.Lee@example.com"


def _tasks(workflow) -> dict[str, dict]:
    return {t["task_key"]: t for t in workflow.spec(TARGET).job_settings()["tasks"]}


def _graph(workflow) -> dict[str, list[str]]:
    return {
        s.key.to_user_string(): sorted(d.asset_key.to_user_string() for d in s.deps) for s in workflow.asset_specs()
    }


# -- default_python's shape ---------------------------------------------------------------------------


def test_python_bundle_tasks_deps_and_job_spec():
    bundle = DatabricksBundle(BUNDLES / "python_bundle", user_name=USER)
    assert (bundle.name, bundle.target, bundle.config.mode) == ("python_bundle", "dev", "development")
    assert bundle.config.variables == {"catalog": "main", "schema": "ann_lee"}  # ${workspace.current_user.short_name}
    settings = bundle.job_settings("sample_job")
    assert settings["name"] == "[dev ann_lee] sample_job"
    assert settings["trigger"]["pause_status"] == "PAUSED"
    workflow = bundle.workflow()
    assert workflow.name == "sample_job"
    assert _graph(workflow) == {
        "notebook_task": [],
        "python_wheel_task": ["notebook_task"],
        "refresh_pipeline": ["notebook_task"],
    }
    tasks = _tasks(workflow)
    notebook = tasks["notebook_task"]["notebook_task"]
    assert notebook["notebook_path"] == "/Workspace/Shared/dbx_assets/dev/notebooks/src/sample_notebook"
    assert notebook["base_parameters"] == {"deployment": "dev"}
    # the bundle's modules are deployed next to the notebook (its `sys.path.append("../src")` finds them)
    files = workflow.files()
    assert not files["notebooks/src/python_bundle/taxis.py"].is_notebook
    assert {"notebooks/src/python_bundle/main.py", "notebooks/src/python_bundle/__init__.py"} <= set(files)
    # the bundle job's parameters are the job's (they reach the notebook as widgets), after dbx_assets' own
    parameters = workflow.spec(TARGET).job_settings()["parameters"]
    assert [(p["name"], p["default"]) for p in parameters][-2:] == [("catalog", "main"), ("schema", "ann_lee")]
    wheel = tasks["python_wheel_task"]
    assert wheel["python_wheel_task"]["parameters"] == ["--catalog", "main", "--schema", "ann_lee"]
    assert wheel["python_wheel_task"]["package_name"] == "python_bundle"
    assert wheel["environment_key"] == "default" and wheel["depends_on"] == [{"task_key": "notebook_task"}]
    env = workflow.spec(TARGET).job_settings()["environments"][0]["spec"]
    assert env["environment_version"] == "4"
    # the bundle's ../dist/*.whl is replaced by the wheel PythonWheelTasks builds from the whl artifact
    assert len(env["dependencies"]) == 1 and env["dependencies"][0].endswith("-py3-none-any.whl")
    # pipeline_task: one asset whose task fails with the reason
    stub = tasks["refresh_pipeline"]["spark_python_task"]["python_file"]
    assert stub.endswith("/bundle/unsupported/refresh_pipeline.py")
    content = workflow.files()["bundle/unsupported/refresh_pipeline.py"].content.decode()
    assert "pipeline_task" in content and "not run by dbx_assets" in content
    specs = {s.key.to_user_string(): s for s in workflow.asset_specs()}
    assert (specs["notebook_task"].description or "").startswith("# Sample notebook")
    assert specs["refresh_pipeline"].metadata["bundle_task_type"] == "pipeline_task"
    assert {s.group_name for s in specs.values()} == {"python_bundle"}
    dg.Definitions.validate_loadable(
        dg.Definitions(assets=[_assets(workflow)], resources={"databricks": DatabricksResource()})
    )


def _assets(workflow):
    from dbx_assets import build_workflow_assets

    return build_workflow_assets(workflow)


def test_python_bundle_prod_target():
    bundle = DatabricksBundle(BUNDLES / "python_bundle", target="prod", user_name=USER)
    assert bundle.config.mode == "production"
    assert bundle.config.variables == {"catalog": "main", "schema": "prod"}
    settings = bundle.job_settings("sample_job")
    assert settings["name"] == "sample_job" and "pause_status" not in settings["trigger"]
    assert bundle.config.workspace["root_path"] == "/Workspace/Users/deployer@example.com/.bundle/python_bundle/prod"
    assert bundle.config.workspace["file_path"].endswith("/python_bundle/prod/files")
    assert bundle.config.pipelines["python_bundle_etl"]["environment"]["dependencies"] == [
        "--editable /Workspace/Users/deployer@example.com/.bundle/python_bundle/prod/files"
    ]


# -- default_sql's shape ------------------------------------------------------------------------------


def test_sql_bundle_keeps_sql_file_tasks():
    workflow = DatabricksBundle(BUNDLES / "sql_bundle", user_name=USER).workflow("sql_bundle_sql_job")
    assert workflow.needs_sql_warehouse
    assert _graph(workflow) == {"orders_raw": [], "orders_daily": ["orders_raw"]}
    sql = _tasks(workflow)["orders_daily"]["sql_task"]
    assert sql["file"] == {
        "path": "/Workspace/Shared/dbx_assets/dev/bundle/src/orders_daily.sql",
        "source": "WORKSPACE",
    }
    assert sql["warehouse_id"] == "wh1"  # the deploy target's warehouse: one spec for both workspaces
    assert "orders_daily" in workflow.files()["bundle/src/orders_daily.sql"].content.decode()
    params = DatabricksBundle(BUNDLES / "sql_bundle", user_name=USER).job_settings("sql_bundle_sql_job")["parameters"]
    assert {p["name"]: p["default"] for p in params} == {"catalog": "main", "schema": "ann_lee", "bundle_target": "dev"}


# -- dbt_sql's shape ----------------------------------------------------------------------------------


def test_dbt_bundle_models_become_dbt_assets(tmp_path, monkeypatch):
    from dbx_assets.integration.dbt.manifest import prepare

    project = tmp_path / "dbt_bundle"
    shutil.copytree(BUNDLES / "dbt_bundle", project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("DBT_HOST", "example.cloud.databricks.com")  # the template's profile reads them
    monkeypatch.setenv("DBT_ACCESS_TOKEN", "unused")
    prepare(project, target="dev", profiles_dir=project / "dbt_profiles", dbt_vars={"dev_schema": "ann_lee"})
    workflow = DatabricksBundle(project, user_name=USER).workflow()
    # depends_on: the dbt task's root models wait on the Python file task
    assert _graph(workflow) == {
        "land": [],
        "orders_raw": ["land"],
        "orders_daily": ["orders_raw"],
        "web_orders": ["land"],
        "web_orders_daily": ["web_orders"],
        "web_orders_stream": ["web_orders"],
    }
    task = _tasks(workflow)["dbt"]
    # the commands' --vars (the dev schema) reach every build, and the models' schema is the generated profile's
    assert task["dbt_task"]["schema"] == "ann_lee"
    dbt = next(s for s in workflow.sources if isinstance(s, DbtProjectTasks))
    assert dbt.dbt_vars == {"dev_schema": "ann_lee"}
    assert len(dbt.check_keys()) == 6  # the commands run `dbt build`: the project's tests are asset checks
    assert task["depends_on"] == [{"task_key": "land"}]
    assert task["environment_key"] == "default"
    assert "dbt_task" in task
    specs = {s.key.to_user_string(): s for s in workflow.asset_specs()}
    assert "dbt" in specs["orders_daily"].kinds


def test_dbt_bundle_without_manifest_names_the_command(tmp_path):
    project = tmp_path / "dbt_bundle"
    shutil.copytree(BUNDLES / "dbt_bundle", project, ignore=shutil.ignore_patterns("target", "logs"))
    with pytest.raises(DbtManifestError, match="prepare --project-dir .*--target dev --profiles-dir"):
        DatabricksBundle(project).workflow()


# -- two targets --------------------------------------------------------------------------------------


def test_two_targets_variables_modes_and_overrides():
    dev = DatabricksBundle(BUNDLES / "two_targets", user_name=USER)
    prod = DatabricksBundle(BUNDLES / "two_targets", target="prod", user_name=USER)
    assert dev.config.variables["schema"] == "dev_ann_lee" and prod.config.variables["schema"] == "reporting"
    assert dev.job_settings("report_job")["name"] == "[dev ann_lee] report dev"
    assert prod.job_settings("report_job")["name"] == "report prod"
    assert dev.job_settings("report_job")["schedule"]["pause_status"] == "PAUSED"
    assert "pause_status" not in prod.job_settings("report_job")["schedule"]
    dev_wf, prod_wf = dev.workflow(), prod.workflow()
    # complex variable as a whole cluster, and one of its fields
    assert dev_wf.job_clusters["small"] == {
        "spark_version": "15.4.x-scala2.12",
        "node_type_id": "i3.xlarge",
        "num_workers": 1,
    }
    assert dev_wf.job_clusters["main"]["node_type_id"] == "i3.xlarge"
    # the prod target's resources merge over the job: the cluster by key, the task by task_key
    assert dev_wf.job_clusters["main"]["num_workers"] == 2 and prod_wf.job_clusters["main"]["num_workers"] == 4
    assert prod_wf.job_clusters["main"]["spark_version"] == "15.4.x-scala2.12"
    assert (dev_wf.timeout_seconds, prod_wf.timeout_seconds) == (0, 3600)
    dev_tasks, prod_tasks = _tasks(dev_wf), _tasks(prod_wf)
    assert dev_tasks["summarize"]["spark_python_task"]["parameters"] == ["--rows", "10", "--target", "dev"]
    assert prod_tasks["summarize"]["spark_python_task"]["parameters"] == [
        "--rows",
        "1000",
        "--target",
        "prod",
        "--prod",
    ]
    assert prod_tasks["summarize"]["libraries"] == [{"pypi": {"package": "tabulate==0.9.0"}}]
    assert dev_tasks["load"]["notebook_task"]["base_parameters"]["rows"] == "10"
    assert dev_tasks["load"]["job_cluster_key"] == "small"
    assert _graph(dev_wf) == {"load": [], "summarize": ["load"], "notify": ["summarize"]}
    # run_job_task keeps its reference in the asset's metadata; its task fails with the reason
    notify = {s.key.to_user_string(): s for s in dev_wf.asset_specs()}["notify"]
    assert notify.metadata["bundle_task"].data == {"run_job_task": {"job_id": "${resources.jobs.report_job.id}"}}
    assert prod.config.workspace["root_path"] == "/Workspace/Shared/.bundle/two_targets/prod"


def test_variable_overrides_from_python_and_environment():
    bundle = DatabricksBundle(BUNDLES / "two_targets", variables={"rows": "5"}, user_name=USER)
    assert _tasks(bundle.workflow())["load"]["notebook_task"]["base_parameters"]["rows"] == "5"
    config = load_bundle(BUNDLES / "two_targets", target="prod", environ={"BUNDLE_VAR_schema": "x"}, user_name=USER)
    assert config.variables["schema"] == "x"  # BUNDLE_VAR_ beats the target's value, --var beats both
    config = load_bundle(
        BUNDLES / "two_targets", target="prod", variables={"schema": "y"}, environ={"BUNDLE_VAR_schema": "x"}
    )
    assert config.variables["schema"] == "y"


def test_key_prefix_keeps_jobs_apart():
    workflow = DatabricksBundle(BUNDLES / "two_targets", key_prefix=["reports"], user_name=USER).workflow()
    assert set(_graph(workflow)) == {"reports/load", "reports/summarize", "reports/notify"}
    assert set(_tasks(workflow)) == {"reports__load", "reports__summarize", "reports__notify"}


# -- errors at load -----------------------------------------------------------------------------------


def _bundle(tmp_path: Path, databricks_yml: str, job_yml: str | None = None) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "databricks.yml").write_text(databricks_yml)
    if job_yml is not None:
        (tmp_path / "resources").mkdir()
        (tmp_path / "resources" / "job.yml").write_text(job_yml)
    return tmp_path


JOB = """
resources:
  jobs:
    j:
      tasks:
        - task_key: t
          notebook_task:
            notebook_path: ../src/nb.py
            base_parameters: {x: "${var.missing}"}
"""


def test_errors_name_file_key_and_fix(tmp_path):
    with pytest.raises(BundleError, match=r"unknown target 'qa'. Targets: dev, prod"):
        DatabricksBundle(BUNDLES / "two_targets", target="qa")
    with pytest.raises(BundleError, match=r"no value assigned to required variable 'schema'.*BUNDLE_VAR_schema"):
        load_bundle(_bundle(tmp_path / "a", "bundle: {name: a}\nvariables: {schema: {description: s}}\n"), environ={})
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "databricks.yml").write_text("bundle:\n  name: b\n  x: [1\n")
    with pytest.raises(BundleError, match=r"databricks.yml \(line \d+, column \d+\) is not valid YAML"):
        load_bundle(bad)
    (tmp_path / "c").mkdir()
    with pytest.raises(
        BundleError,
        match=r"job.yml: resources.jobs.j.tasks\[0\].notebook_task.base_parameters.x "
        r"references \$\{var.missing\}.*Declare it under `variables:`",
    ):
        load_bundle(_bundle(tmp_path / "c", "bundle: {name: c}\ninclude: [resources/*.yml]\n", JOB))
    (tmp_path / "d").mkdir()
    job = JOB.replace('"${var.missing}"', "y")
    with pytest.raises(
        BundleError, match=r"job.yml: tasks\[t\].notebook_task.notebook_path '../src/nb.py' does not exist"
    ):
        DatabricksBundle(_bundle(tmp_path / "d", "bundle: {name: d}\ninclude: [resources/*.yml]\n", job)).workflow()
    with pytest.raises(BundleError, match=r"has no job 'nope' under resources.jobs \(jobs: report_job\)"):
        DatabricksBundle(BUNDLES / "two_targets").workflow("nope")
    with pytest.raises(BundleError, match=r"does not exist"):
        load_bundle(tmp_path / "nowhere" / "databricks.yml")
    with pytest.raises(
        BundleError, match=r"variables=\{'nope': \.\.\.\} overrides a variable the bundle does not declare"
    ):
        load_bundle(BUNDLES / "two_targets", variables={"nope": 1})


def test_a_bundle_jobs_parameters_clashing_with_ours_fail_at_load(tmp_path):
    shutil.copytree(BUNDLES / "sql_bundle", tmp_path / "b")
    job_file = tmp_path / "b" / "resources" / "sql_bundle_sql.job.yml"
    job_file.write_text(job_file.read_text().replace("- name: bundle_target", "- name: partition_key"))
    with pytest.raises(WorkflowDefinitionError, match=r"declares job parameter 'partition_key', which dbx_assets sets"):
        DatabricksBundle(tmp_path / "b", user_name=USER).workflow()
