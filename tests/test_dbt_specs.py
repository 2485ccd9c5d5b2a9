"""dbt models as assets: specs from the real manifest, exact dbt commands, and events from
run_results.json produced by REALLY running `dbt build` (dbt-spark session mode on local Spark).

The dbt runs happen once per module in one subprocess (one SparkSession, ~30 s): it creates the
notebook-owned source tables, then runs the commands that `DbtProjectAssets.build_command`
produced, keeping each run's run_results.json and the incremental model's row count.
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
from pathlib import Path

import dagster as dg
import pytest

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt.project import (
    DbtManifestError,
    DbtProjectAssets,
    UnknownDbtAssetError,
    load_dbt_project,
    read_outcomes,
    run_results_from_artifacts,
)

REPO = Path(__file__).resolve().parent.parent
PROJECT_DIR = REPO / "dbt_project"

K = dg.AssetKey
STG_ORDERS, STG_CUSTOMERS = K("stg_orders"), K("stg_customers")
DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE = K("dim_customers"), K("fct_daily_revenue"), K("customer_revenue")
COUNTRY_WARN = dg.AssetCheckKey(DIM_CUSTOMERS, "accepted_values_dim_customers_country__US__GB__DE__FR__NL__ES__IT")
ORDER_ID_UNIQUE = dg.AssetCheckKey(STG_ORDERS, "unique_stg_orders_order_id")
REVENUE_NOT_NEGATIVE = dg.AssetCheckKey(FCT, "assert_daily_revenue_not_negative")
RUN_URL = dg.MetadataValue.url("https://example.test/#job/1/run/2")


@pytest.fixture(scope="module")
def project() -> DbtProjectAssets:
    if not dbt_manifest.manifest_is_current(PROJECT_DIR):
        dbt_manifest.prepare(PROJECT_DIR)  # what `make setup` does; a no-op when already current
    return load_dbt_project()


# ---------------------------------------------------------------------------------------------
# specs from the real manifest


def test_specs_cover_models_with_source_deps_and_group(project: DbtProjectAssets):
    specs = {s.key: s for s in project.specs}
    assert set(specs) == {STG_ORDERS, STG_CUSTOMERS, DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE}
    assert project.model_keys() == set(specs)
    # dbt sources map (via meta.dagster.asset_key) to the notebook assets
    assert {d.asset_key for d in specs[STG_ORDERS].deps} == {K("silver_orders")}
    assert {d.asset_key for d in specs[STG_CUSTOMERS].deps} == {K("bronze_customers")}
    assert {d.asset_key for d in specs[CUSTOMER_REVENUE].deps} == {STG_ORDERS, DIM_CUSTOMERS}
    assert project.upstream_keys() == {K("silver_orders"), K("bronze_customers")}
    assert all(s.skippable and s.group_name == "analytics" and s.code_version for s in specs.values())
    assert specs[FCT].metadata["dagster-dbt/materialization_type"] == "incremental"
    assert specs[FCT].description.startswith("Revenue per day from completed orders")


def test_spec_building_matches_dagster_dbts_build_dbt_specs(project: DbtProjectAssets):
    from dagster_dbt import DagsterDbtTranslator
    from dagster_dbt.asset_utils import build_dbt_specs

    from dbx_assets.integration.dbt.project import build_all_specs

    ours = build_all_specs(project.manifest, DagsterDbtTranslator())
    theirs = build_dbt_specs(
        translator=DagsterDbtTranslator(), manifest=project.manifest, select="fqn:*", exclude="", selector="",
        io_manager_key=None, project=None,
    )  # fmt: skip

    def shape(specs, checks):
        return (
            {s.key: (s.deps, s.description, s.code_version, s.group_name, s.kinds) for s in specs},
            {c.key: (c.additional_deps, c.blocking) for c in checks},
        )

    assert shape(*ours) == shape(*theirs)


def test_check_specs_are_dbt_tests_with_warn_not_blocking(project: DbtProjectAssets):
    checks = {c.key: c for c in project.check_specs}
    assert REVENUE_NOT_NEGATIVE in checks  # the singular test attaches to the one model it refs
    assert checks[ORDER_ID_UNIQUE].blocking
    assert not checks[COUNTRY_WARN].blocking  # severity: warn
    relationships = next(c for k, c in checks.items() if k.name.startswith("relationships_stg_orders_customer_id"))
    assert {d.asset_key for d in relationships.additional_deps} == {STG_CUSTOMERS}
    assert {c.asset_key for c in checks} <= project.model_keys()


def test_specs_work_in_a_skippable_multi_asset_with_partitions(project: DbtProjectAssets):
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    partitioned = load_dbt_project(partitions_def=daily)
    assert all(s.partitions_def == daily for s in partitioned.specs)

    @dg.multi_asset(specs=partitioned.specs, check_specs=partitioned.check_specs, can_subset=True)
    def dbt_models(context):  # no annotation: this module uses postponed annotations
        for key in sorted(context.selected_asset_keys, key=str):
            yield dg.MaterializeResult(asset_key=key)

    upstream = [dg.AssetSpec("silver_orders", partitions_def=daily), dg.AssetSpec("bronze_customers", partitions_def=daily)]
    graph = dg.Definitions(assets=[dbt_models, *upstream]).resolve_asset_graph()
    assert graph.get(FCT).parent_keys == {STG_ORDERS}
    assert graph.get(STG_ORDERS).parent_keys == {K("silver_orders")}
    # a subset (one model, none of its checks) runs and materializes only that model's partition
    result = dg.materialize([dbt_models], selection=[FCT], partition_key="2024-01-02")
    assert result.success
    assert [(e.asset_key, e.partition) for e in result.get_asset_materialization_events()] == [(FCT, "2024-01-02")]


def test_project_files_exclude_dbt_outputs(project: DbtProjectAssets):
    files = project.project_files()
    assert "dbt_project.yml" in files and "profiles.yml" in files
    assert "models/marts/fct_daily_revenue.sql" in files
    assert files["models/marts/fct_daily_revenue.sql"] == (PROJECT_DIR / "models/marts/fct_daily_revenue.sql").read_bytes()
    assert not [p for p in files if p.split("/")[0] in {"target", "logs", "dbt_packages"} or p.endswith(".user.yml")]


# ---------------------------------------------------------------------------------------------
# exact selection


def test_select_args_one_model_is_exactly_that_model(project: DbtProjectAssets):
    assert project.select_args([FCT]) == ["fqn:dbx_assets_demo.marts.fct_daily_revenue"]
    assert project.select_args([STG_ORDERS, FCT]) == [
        "fqn:dbx_assets_demo.marts.fct_daily_revenue",
        "fqn:dbx_assets_demo.staging.stg_orders",
    ]


def test_build_command_is_exact_and_shell_safe(project: DbtProjectAssets):
    cmd = project.build_command([FCT], [REVENUE_NOT_NEGATIVE], target="local", vars={"partition_key": "2024-01-02"})
    assert shlex.split(cmd) == [
        "dbt", "build", "--target", "local",
        "--select", "fqn:dbx_assets_demo.marts.fct_daily_revenue", "fqn:dbx_assets_demo.assert_daily_revenue_not_negative",
        "--indirect-selection", "empty",
        "--vars", '{"partition_key": "2024-01-02"}',
    ]  # fmt: skip
    assert "--vars" not in project.build_command([FCT], [], target="databricks", vars={})


def test_unknown_keys_raise_a_clear_error(project: DbtProjectAssets):
    with pytest.raises(UnknownDbtAssetError, match=r"Asset silver_orders is not a model of dbt project dbx_assets_demo.*stg_orders"):
        project.select_args([STG_ORDERS, K("silver_orders")])
    with pytest.raises(UnknownDbtAssetError, match=r"Asset check stg_orders:nope is not a test"):
        project.build_command([], [dg.AssetCheckKey(STG_ORDERS, "nope")], target="local", vars={})
    with pytest.raises(ValueError, match="Nothing to build"):
        project.build_command([], [], target="local", vars={})


def test_task_payload_is_stable_and_targets_the_workspace(project: DbtProjectAssets):
    payload = project.task_payload(workspace_project_dir="/Shared/dbx_assets/dbt_project", target="databricks")
    assert payload == {
        "dbt_task": {
            "project_directory": "/Shared/dbx_assets/dbt_project",
            "commands": ["dbt build --target databricks"],
            "schema": "analytics",
            "source": "WORKSPACE",
        }
    }
    assert project.task_libraries(target="local") == ()
    assert project.task_libraries(target="databricks")[0]["pypi"]["package"].startswith("dbt-databricks")


def test_missing_manifest_names_the_command_and_dagster_dev_prepares_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    for rel, content in dbt_manifest.project_files(PROJECT_DIR).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    with pytest.raises(DbtManifestError, match=rf"dbt manifest not found at {tmp_path}.*python -m dbx_assets.integration.dbt.project prepare --project-dir {tmp_path}"):
        load_dbt_project(tmp_path)
    # under `dagster dev` (like dagster-dbt's prepare_if_dev) a missing manifest is parsed on load
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    assert load_dbt_project(tmp_path).model_keys() == load_dbt_project(PROJECT_DIR).model_keys()
    assert dbt_manifest.manifest_is_current(tmp_path)


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


def test_run_results_from_artifacts_archive():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in [("proj/target/compiled/x/run_results.json", b'{"results": [1]}'), ("proj/target/run_results.json", b'{"results": []}')]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    assert run_results_from_artifacts(buf.getvalue()) == {"results": []}
    with pytest.raises(ValueError, match="no run_results.json"):
        run_results_from_artifacts(_empty_tar())


def _empty_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz"):
        pass
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# real dbt runs

DBT_RUNNER = textwrap.dedent(
    """
    import json, shlex, shutil, sys, time
    t0 = time.monotonic()
    from datetime import date, datetime
    from pathlib import Path
    from pyspark.sql import SparkSession

    work, project = Path(sys.argv[1]), Path(sys.argv[2])
    steps = json.loads(Path(sys.argv[3]).read_text())
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )  # dbt-spark session mode picks this session up with getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
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
        res = runner.invoke(args[1:] + ["--project-dir", str(project), "--profiles-dir", str(project),
                                        "--target-path", str(work / "target"), "--log-path", str(work / "logs")])
        shutil.copy(work / "target" / "run_results.json", work / f"{step['name']}.run_results.json")
        fct = {str(r.revenue_date): r.revenue for r in spark.sql("select * from analytics.fct_daily_revenue").collect()}
        summary[step["name"]] = {"success": res.success, "fct_daily_revenue": fct, "seconds": time.monotonic() - started}
    (work / "summary.json").write_text(json.dumps(summary))
    """
)


@pytest.fixture(scope="module")
def dbt_runs(project: DbtProjectAssets, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("dbt_runs")
    copy = work / "project"
    for rel, content in project.project_files().items():  # exactly what would be synced to a workspace
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(content)
    everything = project.model_keys(), {c.key for c in project.check_specs}
    steps = [
        {"name": "day1_all", "command": project.build_command(*everything, target="local", vars={"partition_key": "2024-01-01"})},
        {"name": "day2_fct", "command": project.build_command([FCT], [], target="local", vars={"partition_key": "2024-01-02"})},
        {"name": "day2_again", "command": project.build_command([FCT], [], target="local", vars={"partition_key": "2024-01-02"})},
        {
            "name": "duplicate_order",
            "before": ["insert into silver.orders_enriched select * from silver.orders_enriched where order_id = 'o4'"],
            "command": project.build_command(*everything, target="local", vars={}),
        },
    ]
    (work / "steps.json").write_text(json.dumps(steps))
    (work / "runner.py").write_text(DBT_RUNNER)
    proc = subprocess.run(
        [sys.executable, str(work / "runner.py"), str(work), str(copy), str(work / "steps.json")],
        capture_output=True, text=True, timeout=300, cwd=work,
        env={**os.environ, "DO_NOT_TRACK": "1", "PYSPARK_PYTHON": sys.executable},
    )  # fmt: skip
    assert proc.returncode == 0, f"dbt runner failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    print(*[line for line in proc.stderr.splitlines() if line.startswith(("spark started", "sources written"))], sep="\n")
    summary = json.loads((work / "summary.json").read_text())
    return {name: {**summary[name], "run_results": json.loads((work / f"{name}.run_results.json").read_text())} for name in summary}


def test_full_build_materializes_every_model_and_checks_every_test(project: DbtProjectAssets, dbt_runs: dict):
    run = dbt_runs["day1_all"]
    all_checks = {c.key for c in project.check_specs}
    events, failures = project.events_from_run_results(
        run["run_results"], selected_models=project.model_keys(), selected_checks=all_checks, metadata={"run_url": RUN_URL}
    )
    assert run["success"] and failures == {}
    materialized = {e.asset_key: e for e in events if isinstance(e, dg.MaterializeResult)}
    assert set(materialized) == project.model_keys()
    fct_meta = materialized[FCT].metadata
    assert fct_meta["run_url"] == RUN_URL and fct_meta["status"] == "success" and fct_meta["execution_duration"] > 0
    checks = {dg.AssetCheckKey(e.asset_key, e.check_name): e for e in events if isinstance(e, dg.AssetCheckResult)}
    assert set(checks) == all_checks  # every selected test ran (and nothing else was reported)
    # BR is not in the accepted list: the warn test fails softly
    assert checks[COUNTRY_WARN].passed is False
    assert checks[COUNTRY_WARN].severity == dg.AssetCheckSeverity.WARN
    assert checks[COUNTRY_WARN].metadata["dagster_dbt/failed_row_count"].value == 1
    assert all(c.passed for k, c in checks.items() if k != COUNTRY_WARN)
    assert run["fct_daily_revenue"] == {"2024-01-01": 30.0}  # completed orders of the day only


def test_one_model_command_builds_exactly_that_model(project: DbtProjectAssets, dbt_runs: dict):
    run = dbt_runs["day2_fct"]
    assert set(read_outcomes(run["run_results"])) == {"model.dbx_assets_demo.fct_daily_revenue"}
    events, failures = project.events_from_run_results(run["run_results"], selected_models=[FCT], selected_checks=[], metadata={})
    assert failures == {} and [e.asset_key for e in events] == [FCT]


def test_incremental_model_appends_a_new_day_and_replaces_a_rerun(dbt_runs: dict):
    assert dbt_runs["day2_fct"]["fct_daily_revenue"] == {"2024-01-01": 30.0, "2024-01-02": 7.5}  # grew by a day
    assert dbt_runs["day2_again"]["fct_daily_revenue"] == {"2024-01-01": 30.0, "2024-01-02": 7.5}  # no duplicate


def test_failing_test_fails_its_check_and_skips_downstream_models(project: DbtProjectAssets, dbt_runs: dict):
    run = dbt_runs["duplicate_order"]
    all_checks = {c.key for c in project.check_specs}
    events, failures = project.events_from_run_results(
        run["run_results"], selected_models=project.model_keys(), selected_checks=all_checks, metadata={}
    )
    assert run["success"] is False
    checks = {dg.AssetCheckKey(e.asset_key, e.check_name): e for e in events if isinstance(e, dg.AssetCheckResult)}
    assert checks[ORDER_ID_UNIQUE].passed is False
    assert checks[ORDER_ID_UNIQUE].severity == dg.AssetCheckSeverity.ERROR
    assert checks[ORDER_ID_UNIQUE].metadata["dagster_dbt/failed_row_count"].value == 1
    assert REVENUE_NOT_NEGATIVE not in checks  # skipped with its model: no result, like dagster-dbt
    materialized = {e.asset_key for e in events if isinstance(e, dg.MaterializeResult)}
    assert materialized == {STG_ORDERS, STG_CUSTOMERS}
    assert set(failures) == {DIM_CUSTOMERS, FCT, CUSTOMER_REVENUE}
    assert failures[FCT] == "skipped because upstream dbt test unique_stg_orders_order_id failed"


def test_selected_model_missing_from_run_results_is_reported(project: DbtProjectAssets, dbt_runs: dict):
    events, failures = project.events_from_run_results(
        dbt_runs["day2_fct"]["run_results"], selected_models=[FCT, DIM_CUSTOMERS], selected_checks=[], metadata={}
    )
    assert [e.asset_key for e in events] == [FCT]
    assert failures[DIM_CUSTOMERS].startswith("dbt did not run dim_customers: it is not in run_results.json")


def test_errored_model_reports_dbt_message_and_skipped_test_is_silent(project: DbtProjectAssets):
    run_results = {
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
    checks = {c.key for c in project.check_specs if c.asset_key == STG_CUSTOMERS}
    events, failures = project.events_from_run_results(
        run_results, selected_models=[STG_CUSTOMERS, STG_ORDERS], selected_checks=checks, metadata={}
    )
    assert failures == {STG_CUSTOMERS: run_results["results"][0]["message"]}
    [materialized] = events  # the skipped test yields no check result
    assert materialized.asset_key == STG_ORDERS
    assert materialized.metadata["rows_affected"] == 4 and materialized.metadata["invocation_id"] == "abc"
