"""Deployments that never collide: what one deployment of a code location creates in a workspace
(its job, its folder, its catalog's tables) is its own, whatever other deployments share the workspace.

The two-deployment test runs on the no-JVM runtime (`fake_dbx`): its notebook cannot write a Spark
table, so it writes its rows where its catalog's data lives, a volume of that catalog
(`/Volumes/<catalog>/bronze/...`), with the same `catalog` parameter a Spark notebook uses for
`<catalog>.bronze.orders`. That isolates exactly what table isolation depends on (which catalog
each deployment's tasks are told to write to) without a JVM start per run; the demo graph test
writes real tables in the dev deployment's catalog on Spark and dbt.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from workflow_support import new_name

from dbx_assets.demo.definitions import databricks_resource as demo_resource
from dbx_assets.demo.definitions import workflow as demo_workflow
from dbx_assets.demo.pool import DEMO_POOL_NAME
from dbx_assets.integration.deployment import (
    DEPLOYMENT_ENV,
    MAX_LENGTH,
    job_name,
    normalize_deployment,
    validate_deployment,
)
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.local_workspace.runtime import uc_names, uc_sql

# Writes its "table" under its catalog's volume: one JSON document per run, replaced each run.
WRITER = textwrap.dedent(
    """\
    # Databricks notebook source
    import json, os

    dbutils.widgets.text("catalog", "")
    dbutils.widgets.text("deployment", "")
    dbutils.widgets.text("dagster_run_id", "")
    catalog = dbutils.widgets.get("catalog")
    folder = f"/Volumes/{catalog}/bronze/tables/orders"
    os.makedirs(folder, exist_ok=True)
    row = {"deployment": dbutils.widgets.get("deployment"), "dagster_run_id": dbutils.widgets.get("dagster_run_id")}
    with open(f"{folder}/part-0.json", "w") as f:
        json.dump(row, f)
    dbutils.notebook.exit(json.dumps({"catalog": catalog, **row}))
    """
)


# -- the name ------------------------------------------------------------------------------------
def test_the_deployment_is_dagster_plus_s_made_safe_else_dev(monkeypatch):
    monkeypatch.delenv(DEPLOYMENT_ENV, raising=False)
    assert DatabricksResource().deployment_name() == "dev"
    monkeypatch.setenv(DEPLOYMENT_ENV, "prod")
    assert DatabricksResource().deployment_name() == "prod"
    monkeypatch.setenv(DEPLOYMENT_ENV, "feature/New-Report")  # a branch deployment's name
    assert DatabricksResource().deployment_name() == "feature_new_report"
    # the setting wins over the environment
    assert DatabricksResource(deployment="staging").deployment_name() == "staging"


def test_made_safe_names_are_valid_and_bounded():
    for raw in ("feature/New-Report", "123", "--", "a" * 100, "Ünïcode branch", "x__y_"):
        name = normalize_deployment(raw)
        assert validate_deployment(name) == name and len(name) <= MAX_LENGTH, raw
    # long names keep a hash, so two long branches do not become one deployment
    assert normalize_deployment("b" * 60 + "1") != normalize_deployment("b" * 60 + "2")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"deployment": "Prod Env"}, r"Deployment name 'Prod Env'.*lowercase letters.*e\.g\. 'prod_env'"),
        ({"deployment": "dev__me"}, r"Deployment name 'dev__me'.*single underscores"),
        ({"catalog": "analytics_{env}"}, r"catalog=.*uses placeholder\(s\) \{env\}; the only placeholder is"),
        ({"schema_name": "s_{deployment"}, r"schema_name=.*not a valid template"),
    ],
)
def test_a_bad_deployment_or_template_fails_when_the_resource_is_defined(settings, message):
    with pytest.raises(Exception, match=message):
        DatabricksResource(**settings)


def test_a_deployment_from_an_env_var_is_checked_once_resolved(monkeypatch):
    resource = DatabricksResource(deployment=dg.EnvVar("MY_DEPLOYMENT"))  # the variable's name is no value

    @dg.asset
    def which(databricks: DatabricksResource) -> str:
        return databricks.deployment_name()

    monkeypatch.setenv("MY_DEPLOYMENT", "qa")
    ok = dg.materialize([which], resources={"databricks": resource})
    assert ok.output_for_node("which") == "qa"
    monkeypatch.setenv("MY_DEPLOYMENT", "QA env")
    bad = dg.materialize([which], resources={"databricks": resource}, raise_on_error=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert "Deployment name 'QA env'" in str(failure.event_specific_data)


# -- what a deployment names ----------------------------------------------------------------------
def _demo_spec(deployment: str) -> dict:
    resource = demo_resource.model_copy(update={"deployment": deployment})
    target = dataclasses.replace(
        resource.deploy_target(needs_sql_warehouse=False),
        sql_warehouse_id="wh-1",
        instance_pool_ids=((DEMO_POOL_NAME, "pool-1"),),
    )
    return demo_workflow.spec(target).job_settings()


def test_each_deployment_gets_its_own_job_folder_and_catalog():
    dev, prod = _demo_spec("dev"), _demo_spec("prod")
    assert (dev["name"], prod["name"]) == ("dbx_assets_demo [dev]", "dbx_assets_demo [prod]")
    assert dev["tags"]["dbx_assets_spec_hash"] != prod["tags"]["dbx_assets_spec_hash"]
    for settings, deployment in ((dev, "dev"), (prod, "prod")):
        folder = f"/Shared/dbx_assets/{deployment}/"
        notebook_tasks = [t["notebook_task"] for t in settings["tasks"] if "notebook_task" in t]
        assert notebook_tasks and all(t["notebook_path"].startswith(folder) for t in notebook_tasks)
        for task in notebook_tasks:  # every notebook task is told where its deployment writes
            assert task["base_parameters"]["deployment"] == deployment
            assert task["base_parameters"]["catalog"] == f"dbx_demo_{deployment}"
        (dbt,) = [t["dbt_task"] for t in settings["tasks"] if "dbt_task" in t]
        assert dbt["project_directory"] == f"/Shared/dbx_assets/{deployment}/dbt_project"
        assert (dbt["catalog"], dbt["schema"]) == (f"dbx_demo_{deployment}", "analytics")


def test_a_schema_per_deployment_is_a_setting_too():
    resource = DatabricksResource(deployment="ci", catalog="analytics", schema_name="dbt_{deployment}")
    target = resource.deploy_target(needs_sql_warehouse=False)
    assert (target.catalog, target.schema, target.workspace_root) == ("analytics", "dbt_ci", "/Shared/dbx_assets/ci")
    assert target.task_parameters == {"deployment": "ci", "catalog": "analytics", "schema": "dbt_ci"}
    # nothing set: only the deployment, and the workspace's default catalog (no parameter at all)
    assert DatabricksResource(deployment="ci").deploy_target(needs_sql_warehouse=False).task_parameters == {
        "deployment": "ci"
    }


def test_a_dbt_task_process_resolves_two_level_names_in_its_catalog():
    """Locally dbt-spark's SQL names `schema.table` for models and sources; a dbt task with a
    catalog reads and writes that catalog's schemas, as dbt-databricks' three-level names do."""
    uc_names.set_process_catalog("dbx_demo_ci")
    try:
        current = uc_names.process_current_database()
        assert current == "dbx_demo_ci__default"
        ctx = uc_names.Context(current, frozenset({"dbx_demo_ci"}))
        assert uc_names.spark_table_name("silver.orders_enriched", ctx) == "dbx_demo_ci__silver.orders_enriched"
        # dbt-spark's own statements, each behind dbt's `/* {"app": "dbt", ...} */` comment
        dbt = '/* {"app": "dbt"} */\n'
        assert uc_sql.plan_sql(dbt + "show databases", ctx) == uc_sql.ShowSchemas("dbx_demo_ci", None)
        listed = uc_sql.plan_sql(dbt + "show table extended in analytics like '*'", ctx)
        assert isinstance(listed, uc_sql.Sql) and listed.show_tables_in == "dbx_demo_ci__analytics"
        assert "in dbx_demo_ci__analytics like" in listed.text and listed.text.startswith(dbt)
        recover = uc_sql.plan_sql(dbt + "alter table analytics.fct recover partitions", ctx)
        assert isinstance(recover, uc_sql.Sql) and "alter table dbx_demo_ci__analytics.fct recover" in recover.text
    finally:
        uc_names.set_process_catalog(None)
    assert uc_names.process_current_database() is None
    uc_names.set_process_catalog("main")  # the default catalog changes nothing
    assert uc_names.process_current_database() is None


# -- two deployments, one workspace -------------------------------------------------------------
def _volume_row(client, catalog: str) -> dict:
    return json.loads(client.files.download(f"/Volumes/{catalog}/bronze/tables/orders/part-0.json").contents.read())


def test_two_deployments_share_a_workspace_without_touching_each_other(dbx_env, tmp_path: Path):
    ws = dbx_env
    name = new_name()
    notebooks_dir = tmp_path / "notebooks"
    notebooks_dir.mkdir()
    (notebooks_dir / "writer.py").write_text(WRITER)
    assets = build_workflow_assets(
        Workflow(
            name=name,
            sources=[NotebookTasks([NotebookAsset(key="orders", notebook="writer.py")], notebooks_dir=notebooks_dir)],
        )
    )
    root = f"/Shared/tests/{name}"

    def resource(deployment: str) -> DatabricksResource:
        return DatabricksResource(
            host=dg.EnvVar("DATABRICKS_HOST"),
            token=dg.EnvVar("DATABRICKS_TOKEN"),
            workspace_root=root,
            deployment=deployment,
            catalog=name + "_{deployment}",
        )

    def materialize(deployment: str) -> dg.ExecuteInProcessResult:
        result = dg.materialize([assets], resources={"databricks": resource(deployment)}, raise_on_error=False)
        assert result.success, deployment
        return result

    def job_id(deployment: str) -> int:
        (job,) = ws.client.jobs.list(name=job_name(name, deployment))
        assert job.job_id is not None
        return job.job_id

    alpha_run = materialize("alpha")
    alpha_row = {"deployment": "alpha", "dagster_run_id": alpha_run.run_id}
    assert _volume_row(ws.client, f"{name}_alpha") == alpha_row
    beta_run = materialize("beta")
    assert _volume_row(ws.client, f"{name}_beta") == {"deployment": "beta", "dagster_run_id": beta_run.run_id}
    assert _volume_row(ws.client, f"{name}_alpha") == alpha_row  # beta's run left alpha's table alone

    # two jobs, two folders, each job running its own folder's notebook
    jobs = {d: job_id(d) for d in ("alpha", "beta")}
    assert jobs["alpha"] != jobs["beta"]
    assert {o.path for o in ws.client.workspace.list(root)} == {f"{root}/alpha", f"{root}/beta"}
    for deployment, jid in jobs.items():
        settings = ws.client.jobs.get(jid).settings
        assert settings is not None and settings.tasks
        assert settings.tasks[0].notebook_task is not None
        assert settings.tasks[0].notebook_task.notebook_path == f"{root}/{deployment}/notebooks/writer"
    meta = beta_run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["catalog"].value == f"{name}_beta" and meta["databricks_job_id"].value == jobs["beta"]

    # Deleting alpha's job: beta's runs go on in beta's job, and alpha's table stays as it was.
    ws.client.jobs.delete(jobs["alpha"])
    assert not list(ws.client.jobs.list(name=job_name(name, "alpha")))
    again = materialize("beta")
    assert job_id("beta") == jobs["beta"]  # the same job, not redeployed
    assert _volume_row(ws.client, f"{name}_beta") == {"deployment": "beta", "dagster_run_id": again.run_id}
    assert _volume_row(ws.client, f"{name}_alpha") == alpha_row
