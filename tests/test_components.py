"""dbx_assets' Dagster components in a dg project (tests/data/components_project): each folder's defs.yaml
names one (`type: dbx_assets.DatabricksBundleComponent`, ...). The project loads through Dagster's own
loading (`dg.load_from_defs_folder`), its bundle's assets materialize on the fake workspace, and the real
`dg` CLI validates and lists it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dbx_assets import DatabricksResource

PROJECT = Path(__file__).parent / "data" / "components_project"
BUNDLE_KEYS = {"orders/extract", "orders/load"}
WORKFLOW_KEYS = {"bronze_customers", "silver_orders", "fct_daily_revenue"}
JOB_KEYS = {"finance_nightly/ledger", "finance_nightly/close"}


@pytest.fixture(scope="module")
def project_defs() -> dg.Definitions:
    sys.path.insert(0, str(PROJECT))
    try:
        return dg.load_from_defs_folder(path_within_project=PROJECT)
    finally:
        sys.path.remove(str(PROJECT))


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_all_asset_keys()}


def test_the_project_loads_with_dagsters_component_loading(project_defs):
    keys = _keys(project_defs)
    assert keys >= BUNDLE_KEYS | WORKFLOW_KEYS | JOB_KEYS
    graph = project_defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get(dg.AssetKey(["orders", "load"])).parent_keys} == {"orders/extract"}
    assert {k.to_user_string() for k in graph.get(dg.AssetKey(["silver_orders"])).parent_keys} == {"bronze_customers"}
    assert (
        dg.AssetKey(["finance_nightly", "ledger"]) in graph.get(dg.AssetKey(["finance_nightly", "close"])).parent_keys
    )
    resource = project_defs.resources["databricks"]  # one resource component for the whole project
    assert isinstance(resource, DatabricksResource) and resource.workspace_root == "/Shared/components_example"


def test_the_bundle_component_materializes_on_the_workspace(project_defs, dbx_env):
    ws = dbx_env
    job = project_defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey.from_user_string(k) for k in sorted(BUNDLE_KEYS)]
    result = job.execute_in_process(asset_selection=selection, raise_on_error=False)
    assert result.success
    events = result.get_asset_materialization_events()
    assert {e.asset_key.to_user_string() for e in events} == BUNDLE_KEYS
    run_ids = {e.materialization.metadata["databricks_run_id"].value for e in events}
    assert len(run_ids) == 1  # one run of the bundle's job
    with ws.client.dbfs.download("dbfs:/tmp/components_example/load.txt") as fh:
        assert fh.read() == b"2026-01-01"  # the bundle job parameter's default

    # the bundle job's parameters are the deployed job's, set per run from the step's config
    config = {"ops": {"orders_job": {"config": {"run_date": "2026-03-04"}}}}
    result = job.execute_in_process(asset_selection=selection, run_config=config, raise_on_error=False)
    assert result.success
    run_id = result.get_asset_materialization_events()[0].materialization.metadata["databricks_run_id"].value
    run = ws.client.jobs.get_run(run_id)
    assert {p.name: p.value for p in run.job_parameters}["run_date"] == "2026-03-04"
    declared = ws.client.jobs.get(run.job_id).settings.parameters
    assert ("run_date", "2026-01-01") in {(p.name, p.default) for p in declared}
    with ws.client.dbfs.download("dbfs:/tmp/components_example/load.txt") as fh:
        assert fh.read() == b"2026-03-04"
    with pytest.raises(dg.DagsterInvalidConfigError, match="run_day"):  # a parameter the job does not declare
        job.execute_in_process(
            asset_selection=selection, run_config={"ops": {"orders_job": {"config": {"run_day": "x"}}}}
        )


def _dg(*args: str, project: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(project / ".dagster_home"), "DAGSTER_DISABLE_TELEMETRY": "1"}
    (project / ".dagster_home").mkdir(exist_ok=True)
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg_cli = Path(sys.executable).parent / "dg"
    return subprocess.run([str(dg_cli), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_dg_validates_lists_the_defs_and_knows_the_components(tmp_path):
    check = _dg("check", "defs")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = _dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assert {a["asset_key"] for a in defs["assets"]} >= BUNDLE_KEYS | WORKFLOW_KEYS | JOB_KEYS
    assert [r["name"] for r in defs["resources"]] == ["databricks"]
    components = _dg("list", "components", "--json")
    assert components.returncode == 0, components.stderr
    keys = {c["key"] for c in json.loads(components.stdout)["items"]}
    assert {
        "dbx_assets.DatabricksBundleComponent",
        "dbx_assets.DatabricksJobsComponent",
        "dbx_assets.DatabricksResourceComponent",
        "dbx_assets.DatabricksWorkflowComponent",
    } <= keys

    # `dg scaffold defs` writes a defs.yaml that loads: a copy of the project, its bundle scaffolded anew
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".dagster_home", "workflow", "bundle"))
    shutil.copytree(PROJECT / "bundle", project / "bundle")
    scaffold = _dg(
        "scaffold", "defs", "dbx_assets.DatabricksBundleComponent", "sales", "--bundle-path",
        "bundle/databricks.yml", "--target", "prod", project=project,
    )  # fmt: skip
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    written = (project / "components_example" / "defs" / "sales" / "defs.yaml").read_text()
    assert "type: dbx_assets.DatabricksBundleComponent" in written
    assert "{{ context.project_root }}/bundle/databricks.yml" in written and "target: prod" in written
    listed = _dg("list", "defs", "--json", project=project)
    assert listed.returncode == 0, listed.stderr
    assert {"extract", "load"} <= {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
