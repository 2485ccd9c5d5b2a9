"""dbt models as assets: specs from the real manifest, exact dbt commands, the dbt task, and
events from run_results.json produced by REALLY running `dbt build` (dbt-databricks on a local
cluster's Spark session: its Delta conf, Unity Catalog names and the dbt task's generated profile).

Logic tests only read the demo manifest (built by `make setup`; parsed here in-process, no JVM,
when it is missing or stale). The real dbt runs happen ONCE per session in one subprocess (one
SparkSession): it creates the notebook-owned source tables, then runs the commands that
`DbtProjectTasks.build_command` produced, keeping each run's run_results.json and the incremental
model's rows. That fixture took 155 s measured under load average ~8 on 2 cores (Spark start
10.5 s, source tables 11 s, four dbt-databricks builds 49, 24, 35 and 20 s); it prints its timings
(`pytest -s`). The logic tests take ~20 s (one dbt parse in a subprocess) and start no JVM. The events are read the production way: `report()` downloads
the artifacts archive and extracts run_results.json from it.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from databricks.sdk.service.jobs import DbtOutput, RunOutput

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt import source as dbt_source
from dbx_assets.integration.dbt.manifest import DbtManifestError
from dbx_assets.integration.dbt.run_results import read_outcomes
from dbx_assets.integration.dbt.source import DbtProjectTasks, UnknownDbtAssetError
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.jobs.runner import TaskFinished
from dbx_assets.integration.sources.base import DeployTarget, Selection, TaskReport
from dbx_assets.local_workspace.runtime.java import java_env

REPO = Path(__file__).resolve().parent.parent
PROJECT_DIR = REPO / "dbt_project"

K = dg.AssetKey
STG_ORDERS, STG_CUSTOMERS = K("stg_orders"), K("stg_customers")
DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE = K("dim_customers"), K("fct_daily_revenue"), K("customer_revenue")
COUNTRY_WARN = dg.AssetCheckKey(DIM_CUSTOMERS, "accepted_values_dim_customers_country__US__GB__DE__FR__NL__ES__IT")
ORDER_ID_UNIQUE = dg.AssetCheckKey(STG_ORDERS, "unique_stg_orders_order_id")
REVENUE_NOT_NEGATIVE = dg.AssetCheckKey(FCT, "assert_daily_revenue_not_negative")
RUN_URL = dg.MetadataValue.url("https://example.test/#job/1/run/2")
TARGET = DeployTarget(workspace_root="/Shared/dbx_assets", sql_warehouse_id="wh-1", catalog="main")


@pytest.fixture(scope="module")
def project() -> DbtProjectTasks:
    if not dbt_manifest.manifest_is_current(PROJECT_DIR):
        dbt_manifest.prepare(PROJECT_DIR)  # what `make setup` does; in-process dbt parse, no JVM
    return DbtProjectTasks(PROJECT_DIR, schema="analytics")


# ---------------------------------------------------------------------------------------------
# specs from the real manifest


def test_specs_cover_models_with_source_deps_and_group(project: DbtProjectTasks):
    specs = {s.key: s for s in project.asset_specs()}
    assert set(specs) == {STG_ORDERS, STG_CUSTOMERS, DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE}
    assert project.model_keys() == set(specs)
    # dbt sources map (via meta.dagster.asset_key) to the notebook assets
    assert {d.asset_key for d in specs[STG_ORDERS].deps} == {K("silver_orders")}
    assert {d.asset_key for d in specs[STG_CUSTOMERS].deps} == {K("bronze_customers")}
    assert {d.asset_key for d in specs[CUSTOMER_REVENUE].deps} == {STG_ORDERS, DIM_CUSTOMERS}
    assert project.upstream_keys() == {K("silver_orders"), K("bronze_customers")}
    assert all(s.skippable and s.group_name == "analytics" and s.code_version for s in specs.values())
    assert specs[FCT].metadata["dagster-dbt/materialization_type"] == "incremental"
    description = specs[FCT].description
    assert description is not None and description.startswith("Revenue per day from completed orders")


def test_check_specs_are_dbt_tests_with_warn_not_blocking(project: DbtProjectTasks):
    checks = {c.key: c for c in project.check_specs()}
    assert REVENUE_NOT_NEGATIVE in checks  # the singular test attaches to the one model it refs
    assert checks[ORDER_ID_UNIQUE].blocking
    assert not checks[COUNTRY_WARN].blocking  # severity: warn
    relationships = next(c for k, c in checks.items() if k.name.startswith("relationships_stg_orders_customer_id"))
    assert {d.asset_key for d in relationships.additional_deps} == {STG_CUSTOMERS}
    assert {c.asset_key for c in checks} <= project.model_keys()
    assert project.check_keys() == set(checks)


def test_specs_work_in_a_skippable_multi_asset_with_partitions(project: DbtProjectTasks):
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    partitioned = DbtProjectTasks(PROJECT_DIR, partitions_def=daily, schema="analytics")
    assert all(s.partitions_def == daily for s in partitioned.asset_specs())
    assert not any(s.partitions_def for s in project.asset_specs())  # its own cache entry, not the partitioned one

    @dg.multi_asset(specs=partitioned.asset_specs(), check_specs=partitioned.check_specs(), can_subset=True)
    def dbt_models(context):  # no annotation: this module uses postponed annotations
        for key in sorted(context.selected_asset_keys, key=str):
            yield dg.MaterializeResult(asset_key=key)

    upstream = [
        dg.AssetSpec("silver_orders", partitions_def=daily),
        dg.AssetSpec("bronze_customers", partitions_def=daily),
    ]
    graph = dg.Definitions(assets=[dbt_models, *upstream]).resolve_asset_graph()
    assert graph.get(FCT).parent_keys == {STG_ORDERS}
    assert graph.get(STG_ORDERS).parent_keys == {K("silver_orders")}
    # a subset (one model, none of its checks) runs and materializes only that model's partition
    result = dg.materialize([dbt_models], selection=[FCT], partition_key="2024-01-02")
    assert result.success
    assert [(e.asset_key, e.partition) for e in result.get_asset_materialization_events()] == [(FCT, "2024-01-02")]


def test_project_files_exclude_dbt_outputs(project: DbtProjectTasks):
    files = project.files()
    assert "dbt_project/dbt_project.yml" in files and "dbt_project/profiles.yml" in files
    fct = files["dbt_project/models/marts/fct_daily_revenue.sql"]
    assert fct.relative_path == "dbt_project/models/marts/fct_daily_revenue.sql" and not fct.is_notebook
    assert fct.content == (PROJECT_DIR / "models/marts/fct_daily_revenue.sql").read_bytes()
    assert not [p for p in files if p.split("/")[1] in {"target", "logs", "dbt_packages"} or p.endswith(".user.yml")]


# ---------------------------------------------------------------------------------------------
# exact selection and the dbt task


def test_select_args_one_model_is_exactly_that_model(project: DbtProjectTasks):
    assert project.select_args([FCT]) == ["fqn:dbx_assets_demo.marts.fct_daily_revenue"]
    assert project.select_args([STG_ORDERS, FCT]) == [
        "fqn:dbx_assets_demo.marts.fct_daily_revenue",
        "fqn:dbx_assets_demo.staging.stg_orders",
    ]


def test_build_command_is_exact_and_shell_safe(project: DbtProjectTasks):
    cmd = project.build_command([FCT], [REVENUE_NOT_NEGATIVE], vars={"partition_key": "2024-01-02"})
    assert shlex.split(cmd) == [
        "dbt", "build",
        "--select", "fqn:dbx_assets_demo.marts.fct_daily_revenue", "fqn:dbx_assets_demo.assert_daily_revenue_not_negative",
        "--indirect-selection", "empty",
        "--vars", '{"partition_key": "2024-01-02"}',
    ]  # fmt: skip
    assert "--vars" not in project.build_command([FCT], [], vars={})


def test_unknown_keys_raise_a_clear_error(project: DbtProjectTasks):
    with pytest.raises(
        UnknownDbtAssetError, match=r"Asset silver_orders is not a model of dbt project dbx_assets_demo.*stg_orders"
    ):
        project.select_args([STG_ORDERS, K("silver_orders")])
    with pytest.raises(
        UnknownDbtAssetError,
        match=rf"Asset check stg_orders:nope is not a test.*python -m dbx_assets.integration.dbt prepare --project-dir {PROJECT_DIR}",
    ):
        project.build_command([], [dg.AssetCheckKey(STG_ORDERS, "nope")], vars={})
    with pytest.raises(ValueError, match="Nothing to build"):
        project.build_command([], [], vars={})


def test_task_runs_dbt_build_on_the_warehouse_with_dbt_databricks(project: DbtProjectTasks):
    [task] = project.tasks(TARGET)
    assert task.settings == {
        "dbt_task": {
            "project_directory": "/Shared/dbx_assets/dbt_project",
            "commands": ["dbt build"],
            "warehouse_id": "wh-1",
            "schema": "analytics",
            "catalog": "main",
            "source": "WORKSPACE",
        }
    }
    assert (task.asset_keys, task.check_keys, task.upstream_keys) == (
        project.model_keys(), project.check_keys(), project.upstream_keys()
    )  # fmt: skip
    [library] = task.libraries
    assert library["pypi"]["package"].startswith("dbt-databricks")
    # the deployment's schema wins; no catalog -> the workspace default (no key at all)
    [dev_task] = project.tasks(DeployTarget(workspace_root="/Users/me/x", sql_warehouse_id="wh-2", schema="dev_me"))
    assert dev_task.settings["dbt_task"]["schema"] == "dev_me" and "catalog" not in dev_task.settings["dbt_task"]
    with pytest.raises(WorkflowDefinitionError, match="needs a SQL warehouse"):
        project.tasks(DeployTarget(workspace_root="/Shared/dbx_assets"))


def test_selection_narrows_the_run_not_the_job(project: DbtProjectTasks):
    [task] = project.tasks(TARGET)
    selection = Selection(
        assets=frozenset({FCT, K("silver_orders")}), checks=frozenset(), parameters={"partition_key": "2024-01-02"}
    )
    command = project.build_command([FCT], [], vars={"partition_key": "2024-01-02"})
    assert project.run_overrides(selection, TARGET) == {"dbt_commands": [command]}
    assert project.submit_settings(task, selection, TARGET)["dbt_task"]["commands"] == [command]
    assert task.settings["dbt_task"]["commands"] == ["dbt build"]  # the job's own task is untouched
    assert project.run_overrides(Selection(assets=frozenset({K("silver_orders")}), checks=frozenset()), TARGET) == {}


# ---------------------------------------------------------------------------------------------
# the manifest on disk


def _copy_project(dest: Path) -> None:
    for rel, content in dbt_manifest.project_files(PROJECT_DIR).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(content)


def test_missing_manifest_names_the_command_and_dagster_dev_prepares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    _copy_project(tmp_path)
    with pytest.raises(
        DbtManifestError,
        match=rf"dbt manifest not found at {tmp_path}.*`python -m dbx_assets.integration.dbt prepare --project-dir {tmp_path}`",
    ):
        DbtProjectTasks(tmp_path)
    # under `dagster dev` (dagster-dbt's using_dagster_dev) a missing manifest is parsed on load,
    # in a subprocess started from elsewhere: nothing depends on the current directory
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    monkeypatch.chdir("/")
    assert DbtProjectTasks(tmp_path).model_keys() == DbtProjectTasks(PROJECT_DIR).model_keys()
    assert dbt_manifest.manifest_is_current(tmp_path)


def test_dagster_dev_never_runs_dbt_when_the_manifest_is_current(
    project: DbtProjectTasks, monkeypatch: pytest.MonkeyPatch
):
    def no_dbt(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dbt parse ran although the manifest is current")

    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    monkeypatch.setattr(dbt_manifest, "_prepare_in_subprocess", no_dbt)
    monkeypatch.setattr(dbt_manifest, "prepare", no_dbt)
    assert dbt_manifest.manifest_is_current(PROJECT_DIR)
    assert DbtProjectTasks(PROJECT_DIR).model_keys() == project.model_keys()


def test_manifest_staleness_follows_project_files(tmp_path: Path):
    (tmp_path / "target").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "target" / "manifest.json").write_text("{}")
    (tmp_path / "target" / dbt_manifest.FINGERPRINT_NAME).write_text(dbt_manifest.project_fingerprint(tmp_path))
    assert dbt_manifest.manifest_is_current(tmp_path)
    (tmp_path / "target" / "run_results.json").write_text("{}")  # dbt outputs don't make it stale
    assert dbt_manifest.manifest_is_current(tmp_path)
    (tmp_path / "model.sql").write_text("select 1")
    assert not dbt_manifest.manifest_is_current(tmp_path)


def test_cli_requires_the_project_dir_and_skips_a_current_manifest(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        dbt_manifest.main(["prepare"])
    assert exit_info.value.code == 2 and "--project-dir" in capsys.readouterr().err
    assert dbt_manifest.manifest_is_current(PROJECT_DIR)
    assert dbt_manifest.main(["prepare", "--project-dir", str(PROJECT_DIR), "--if-stale"]) == 0
    assert capsys.readouterr().out.startswith("dbt manifest is current:")
    assert dbt_manifest.main(["prepare", "--project-dir", "/nonexistent/dbt"]) == 1
    assert "No dbt_project.yml in /nonexistent/dbt" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# real dbt runs

DBT_RUNNER = textwrap.dedent(
    """
    import json, os, shlex, shutil, sys, time
    t0 = time.monotonic()
    from datetime import date, datetime
    from pathlib import Path
    from pyspark.sql import SparkSession
    from dbx_assets.local_workspace.runtime.cluster import BASE_SPARK_CONF, driver_class_path
    from dbx_assets.local_workspace.runtime.contract import DbtInvocation
    from dbx_assets.local_workspace.runtime.dbsql_session import install
    from dbx_assets.local_workspace.runtime.dbt_task import generated_profile
    from dbx_assets.local_workspace.runtime.delta_log_store import driver_jars
    from dbx_assets.local_workspace.runtime.jvm_options import driver_java_options
    from dbx_assets.local_workspace.runtime.uc_patches import install_uc_patches

    work, project = Path(sys.argv[1]), Path(sys.argv[2])
    steps = json.loads(Path(sys.argv[3]).read_text())
    # A local cluster's Spark conf (Delta as the default format, its catalog and extension) and JVM flags.
    class_path = driver_class_path(driver_jars(os.environ), {})
    conf = {
        **BASE_SPARK_CONF,
        "spark.driver.defaultJavaOptions": driver_java_options(dict(os.environ), class_path),
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.extraClassPath": class_path,
    }
    builder = SparkSession.builder.master("local[2]")
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    install_uc_patches(spark, work / "warehouse")  # what a task process has: Unity Catalog names
    install()  # dbt-databricks' connector on this session, as in a dbt task
    # The profile a dbt task on a SQL warehouse gets (catalog main, schema analytics).
    invocation = DbtInvocation(commands=(), project_dir=project, profiles_dir=None, schema="analytics",
                               catalog="main", warehouse_id="wh-1", workspace_host="127.0.0.1:1")
    profiles_dir = generated_profile(invocation, project, work, cluster_id="specs")
    os.environ["DBT_ACCESS_TOKEN"] = "local"
    print(f"spark started in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    for db in ("bronze", "silver"):
        spark.sql(f"create database if not exists {db}")
    spark.createDataFrame(
        [("c1", "Ada", "us", "2023-05-01"), ("c2", "Bo", "GB", "2023-06-01"), ("c3", "Cy", "BR", "2023-07-01"),
         ("c1", "Ada L.", "US", "2023-08-01")],
        "customer_id string, name string, country string, signup_date string",
    ).write.saveAsTable("bronze.customers")
    orders = [
        ("o1", "c1", date(2024, 1, 1), datetime(2024, 1, 1, 9), 10.0, "completed", "Ada L.", "US"),
        ("o2", "c2", date(2024, 1, 1), datetime(2024, 1, 1, 10), 20.0, "completed", "Bo", "GB"),
        ("o3", "c3", date(2024, 1, 1), datetime(2024, 1, 1, 11), 5.0, "cancelled", "Cy", "BR"),
        ("o4", "c1", date(2024, 1, 2), datetime(2024, 1, 2, 9), 7.5, "completed", "Ada L.", "US"),
    ]
    schema = ("order_id string, customer_id string, order_date date, order_ts timestamp, amount double, "
              "status string, customer_name string, country string")
    spark.createDataFrame(orders, schema).write.saveAsTable("silver.orders_enriched")

    print(f"sources written at {time.monotonic() - t0:.1f}s", file=sys.stderr)
    from dbt.cli.main import dbtRunner
    runner = dbtRunner()
    summary = {}
    for step in steps:
        for sql in step.get("before", []):
            spark.sql(sql)
        args = shlex.split(step["command"])
        assert args[0] == "dbt", args
        started = time.monotonic()
        res = runner.invoke(args[1:] + ["--project-dir", str(project), "--profiles-dir", str(profiles_dir),
                                        "--target-path", str(work / "target"), "--log-path", str(work / "logs")])
        shutil.copy(work / "target" / "run_results.json", work / f"{step['name']}.run_results.json")
        rows = spark.sql("select * from main.analytics.fct_daily_revenue").collect()
        fct = {str(r.revenue_date): r.revenue for r in rows}
        summary[step["name"]] = {"success": res.success, "fct_daily_revenue": fct, "fct_rows": len(rows),
                                 "fct_provider": next(r.data_type for r in spark.sql(
                                     "describe table extended main.analytics.fct_daily_revenue").collect()
                                     if r.col_name == "Provider"),
                                 "seconds": time.monotonic() - started}
    (work / "summary.json").write_text(json.dumps(summary))
    """
)


@pytest.fixture(scope="session")
def dbt_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four real `dbt build`s on local Spark, once per session (~155 s loaded; timings printed)."""
    project = DbtProjectTasks(PROJECT_DIR, schema="analytics")
    work = tmp_path_factory.mktemp("dbt_runs")
    copy = work / "project"
    for workspace_file in project.files().values():  # exactly what would be synced to a workspace
        path = work / workspace_file.relative_path.replace("dbt_project/", "project/", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(workspace_file.content)
    everything = project.model_keys(), project.check_keys()
    steps = [
        {"name": "day1_all", "command": project.build_command(*everything, vars={"partition_key": "2024-01-01"})},
        {"name": "day2_fct", "command": project.build_command([FCT], [], vars={"partition_key": "2024-01-02"})},
        {
            "name": "day2_again",  # a late order for day 2: the re-run merges it into day 2's row
            "before": [
                "insert into silver.orders_enriched values ('o5', 'c2', date'2024-01-02', "
                "timestamp'2024-01-02 12:00:00', 2.5, 'completed', 'Bo', 'GB')"
            ],
            "command": project.build_command([STG_ORDERS, FCT], [], vars={"partition_key": "2024-01-02"}),
        },
        {
            "name": "duplicate_order",
            "before": ["insert into silver.orders_enriched select * from silver.orders_enriched where order_id = 'o4'"],
            "command": project.build_command(*everything, vars={}),
        },
    ]
    (work / "steps.json").write_text(json.dumps(steps))
    (work / "runner.py").write_text(DBT_RUNNER)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(work / "runner.py"), str(work), str(copy), str(work / "steps.json")],
        capture_output=True, text=True, timeout=600, cwd=work,
        env={**os.environ, **java_env(dict(os.environ)), "DO_NOT_TRACK": "1", "PYSPARK_PYTHON": sys.executable},
    )  # fmt: skip
    assert proc.returncode == 0, f"dbt runner failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    summary = json.loads((work / "summary.json").read_text())
    print(
        *[line for line in proc.stderr.splitlines() if line.startswith(("spark started", "sources written"))], sep="\n"
    )
    print(
        ", ".join(f"{name} {step['seconds']:.1f}s" for name, step in summary.items()),
        f"-- total {time.monotonic() - started:.1f}s",
    )
    return {
        name: {**summary[name], "artifacts": _artifacts_archive(work / f"{name}.run_results.json")} for name in summary
    }


def _artifacts_archive(run_results: Path) -> bytes:
    """The tar.gz a dbt task's artifacts_link serves (as the local workspace lays it out: target/...),
    plus a deeper run_results.json (a package's) that must not be picked."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(run_results, arcname="target/run_results.json")
        decoy = b'{"results": [{"unique_id": "model.other.decoy", "status": "error"}]}'
        info = tarfile.TarInfo("target/dbt_packages/other/target/run_results.json")
        info.size = len(decoy)
        tar.addfile(info, io.BytesIO(decoy))
    return buf.getvalue()


def _check_results(report: TaskReport) -> dict[dg.AssetCheckKey, dg.AssetCheckResult]:
    checks = {}
    for e in report.events:
        if isinstance(e, dg.AssetCheckResult):
            assert e.asset_key is not None and e.check_name is not None, e
            checks[dg.AssetCheckKey(e.asset_key, e.check_name)] = e
    return checks


def _report(
    project: DbtProjectTasks,
    monkeypatch: pytest.MonkeyPatch,
    archive: bytes,
    models: set[dg.AssetKey],
    checks: set[dg.AssetCheckKey],
) -> TaskReport:
    """`report()` of a finished dbt task whose artifacts link serves `archive` (no network)."""
    link = "https://artifacts.example.test/dbt/42.tar.gz"

    class Response:
        content = archive

        def raise_for_status(self) -> None: ...

    def fake_get(url: str, **kwargs: Any) -> Response:
        assert url == link
        return Response()

    monkeypatch.setattr(dbt_source.requests, "get", fake_get)
    finished = TaskFinished(
        task_key=project.task_key, task_run_id=42, succeeded=True, result_state="SUCCESS", state_message="",
        cluster_id=None, setup_seconds=None, execution_seconds=None,
        output=RunOutput(dbt_output=DbtOutput(artifacts_link=link)),
    )  # fmt: skip
    selection = Selection(assets=frozenset(models), checks=frozenset(checks))
    return project.report(finished, selection, TARGET, {"run_url": RUN_URL})


def test_full_build_materializes_every_model_and_checks_every_test(
    project: DbtProjectTasks, dbt_runs: dict, monkeypatch: pytest.MonkeyPatch
):
    run = dbt_runs["day1_all"]
    report = _report(project, monkeypatch, run["artifacts"], project.model_keys(), project.check_keys())
    assert run["success"] and report.failures == {}
    materialized = {e.asset_key: e for e in report.events if isinstance(e, dg.MaterializeResult)}
    assert set(materialized) == project.model_keys()
    fct_meta = materialized[FCT].metadata
    assert fct_meta is not None
    duration = fct_meta["execution_duration"]
    assert fct_meta["run_url"] == RUN_URL and fct_meta["status"] == "success"
    assert isinstance(duration, (int, float)) and duration > 0
    checks = _check_results(report)
    assert set(checks) == project.check_keys()  # every selected test ran (and nothing else was reported)
    # BR is not in the accepted list: the warn test fails softly
    assert checks[COUNTRY_WARN].passed is False
    assert checks[COUNTRY_WARN].severity == dg.AssetCheckSeverity.WARN
    assert checks[COUNTRY_WARN].metadata["dagster_dbt/failed_row_count"].value == 1
    assert all(c.passed for k, c in checks.items() if k != COUNTRY_WARN)
    assert run["fct_daily_revenue"] == {"2024-01-01": 30.0}  # completed orders of the day only


def test_one_model_command_builds_exactly_that_model(
    project: DbtProjectTasks, dbt_runs: dict, monkeypatch: pytest.MonkeyPatch
):
    archive = dbt_runs["day2_fct"]["artifacts"]
    run_results = dbt_source.run_results_from_artifacts(archive)
    assert set(read_outcomes(run_results)) == {"model.dbx_assets_demo.fct_daily_revenue"}
    report = _report(project, monkeypatch, archive, {FCT}, set())
    assert report.failures == {} and [e.asset_key for e in report.events] == [FCT]


def test_incremental_model_merges_by_its_unique_key_into_a_delta_table(dbt_runs: dict):
    assert dbt_runs["day1_all"]["fct_provider"] == "delta"  # no file_format in the project: Delta, as on Databricks
    assert dbt_runs["day2_fct"]["fct_daily_revenue"] == {"2024-01-01": 30.0, "2024-01-02": 7.5}  # grew by a day
    # the re-run of day 2 updated its row (the late order counts) and added none
    assert dbt_runs["day2_again"]["fct_daily_revenue"] == {"2024-01-01": 30.0, "2024-01-02": 10.0}
    assert dbt_runs["day2_again"]["fct_rows"] == 2


def test_failing_test_fails_its_check_and_skips_downstream_models(
    project: DbtProjectTasks, dbt_runs: dict, monkeypatch: pytest.MonkeyPatch
):
    run = dbt_runs["duplicate_order"]
    report = _report(project, monkeypatch, run["artifacts"], project.model_keys(), project.check_keys())
    assert run["success"] is False
    checks = _check_results(report)
    assert checks[ORDER_ID_UNIQUE].passed is False
    assert checks[ORDER_ID_UNIQUE].severity == dg.AssetCheckSeverity.ERROR
    assert checks[ORDER_ID_UNIQUE].metadata["dagster_dbt/failed_row_count"].value == 1
    assert REVENUE_NOT_NEGATIVE not in checks  # skipped with its model: no result, like dagster-dbt
    materialized = {e.asset_key for e in report.events if isinstance(e, dg.MaterializeResult)}
    assert materialized == {STG_ORDERS, STG_CUSTOMERS}
    assert set(report.failures) == {DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE}
    assert report.failures[FCT] == "skipped because upstream dbt test unique_stg_orders_order_id failed"


def test_selected_model_missing_from_run_results_is_reported(
    project: DbtProjectTasks, dbt_runs: dict, monkeypatch: pytest.MonkeyPatch
):
    report = _report(project, monkeypatch, dbt_runs["day2_fct"]["artifacts"], {FCT, DIM_CUSTOMERS}, set())
    assert [e.asset_key for e in report.events] == [FCT]
    assert report.failures[DIM_CUSTOMERS].startswith("dbt did not run dim_customers: it is not in run_results.json")


def test_errored_model_reports_dbt_message_and_skipped_test_is_silent(
    project: DbtProjectTasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run_results: dict[str, Any] = {
        "metadata": {"invocation_id": "abc"},
        "results": [
            {"unique_id": "model.dbx_assets_demo.stg_customers", "status": "error", "execution_time": 0.5,
             "message": "Runtime Error in model stg_customers (models/staging/stg_customers.sql)\n  Table not found: bronze.customers",
             "adapter_response": {}, "failures": None},
            {"unique_id": "model.dbx_assets_demo.stg_orders", "status": "success", "execution_time": 1.0,
             "message": "OK", "adapter_response": {"rows_affected": 4}, "failures": None},
            {"unique_id": next(uid for uid in project.manifest["nodes"] if uid.startswith("test.dbx_assets_demo.unique_stg_customers")),
             "status": "skipped", "execution_time": 0, "message": None, "adapter_response": {}, "failures": None},
        ],
    }  # fmt: skip
    (tmp_path / "run_results.json").write_text(json.dumps(run_results))
    checks = {c.key for c in project.check_specs() if c.asset_key == STG_CUSTOMERS}
    report = _report(
        project, monkeypatch, _artifacts_archive(tmp_path / "run_results.json"), {STG_CUSTOMERS, STG_ORDERS}, checks
    )
    assert report.failures == {STG_CUSTOMERS: run_results["results"][0]["message"]}
    [materialized] = report.events  # the skipped test yields no check result
    assert materialized.asset_key == STG_ORDERS
    assert materialized.metadata is not None
    assert materialized.metadata["rows_affected"] == 4 and materialized.metadata["invocation_id"] == "abc"


def test_task_without_artifacts_fails_every_selected_model(project: DbtProjectTasks):
    finished = TaskFinished(
        task_key=project.task_key, task_run_id=7, succeeded=False, result_state="FAILED", state_message="cluster lost",
        cluster_id=None, setup_seconds=None, execution_seconds=None, output=None,
    )  # fmt: skip
    report = project.report(
        finished, Selection(assets=frozenset({FCT, K("silver_orders")}), checks=frozenset()), TARGET, {}
    )
    assert report.events == [] and report.failures == {FCT: "dbt task FAILED: cluster lost"}
