"""Declaring notebook assets: load-time validation, code versions, job spec shape, deploy diffs."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
from workflow_support import NOTEBOOKS, make_workflow, new_name

from dbx_assets.integration.jobs.deploy import WorkflowDeployer
from dbx_assets.integration.jobs.model import WorkflowDefinitionError, spec_hash, task_key_for
from dbx_assets.integration.jobs.runner import PollPolicy, idempotency_token
from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks, exit_value_metadata
from dbx_assets.integration.sources.notebook_file import NotebookFileError
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow


@pytest.fixture
def notebooks_dir(tmp_path):
    target = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, target)
    return target


def _wf(notebooks_dir, *declarations, **kwargs):
    return Workflow(name="w", sources=[NotebookTasks(list(declarations), notebooks_dir=notebooks_dir)], **kwargs)


def _target(root: str) -> DeployTarget:
    return DeployTarget(workspace_root=root)


def test_missing_notebook_names_the_file(notebooks_dir):
    with pytest.raises(NotebookFileError, match=r"nope\.py does not exist\. Create it in .*/notebooks/ or fix"):
        _wf(notebooks_dir, NotebookAsset(key="a", notebook="nope.py"))


def test_malformed_notebook_names_file_and_fix(notebooks_dir):
    (notebooks_dir / "bad.py").write_text("print('no header')\n")
    with pytest.raises(
        NotebookFileError, match=r"bad\.py is not in Databricks SOURCE format.*# Databricks notebook source"
    ):
        _wf(notebooks_dir, NotebookAsset(key="a", notebook="bad.py"))


def test_unknown_dep_and_duplicate_key_are_named(notebooks_dir):
    with pytest.raises(WorkflowDefinitionError, match=r"Task 'a' of workflow 'w' depends on unknown asset 'ghost'"):
        _wf(notebooks_dir, NotebookAsset(key="a", notebook="sink.py", deps=["ghost"]))
    with pytest.raises(WorkflowDefinitionError, match=r"'a' is declared twice"):
        _wf(notebooks_dir, NotebookAsset(key="a", notebook="sink.py"), NotebookAsset(key="a", notebook="slow.py"))
    # an external dep is fine once declared
    _wf(notebooks_dir, NotebookAsset(key="a", notebook="sink.py", deps=["ghost"]), external_deps=["ghost"])


def test_bad_cluster_specs_are_rejected_at_load(notebooks_dir):
    nb = NotebookAsset(key="a", notebook="sink.py", job_cluster="big")
    with pytest.raises(WorkflowDefinitionError, match=r"Task 'a' .* names job cluster 'big'.*defined: shared"):
        _wf(notebooks_dir, nb)
    with pytest.raises(WorkflowDefinitionError, match=r"no 'spark_version'"):
        _wf(notebooks_dir, nb, job_clusters={"big": {"num_workers": 2}})
    with pytest.raises(WorkflowDefinitionError, match=r"needs 'num_workers' or 'autoscale'"):
        _wf(notebooks_dir, nb, job_clusters={"big": {"spark_version": "15.4.x-scala2.12"}})


def test_description_and_code_version_follow_the_notebook(notebooks_dir):
    name = new_name()
    before = {s.key: s for s in build_workflow_assets(make_workflow(name, notebooks_dir=notebooks_dir)).specs}
    source_key = dg.AssetKey([name, "source"])
    description = before[source_key].description
    assert description is not None and description.startswith("Test source: ten rows")
    (notebooks_dir / "source.py").write_text((notebooks_dir / "source.py").read_text() + "\nprint('changed')\n")
    after = {s.key: s for s in build_workflow_assets(make_workflow(name, notebooks_dir=notebooks_dir)).specs}
    assert after[source_key].code_version != before[source_key].code_version
    sink_key = dg.AssetKey([name, "sink"])
    assert after[sink_key].code_version == before[sink_key].code_version


def test_job_spec_mirrors_asset_deps_on_one_shared_job_cluster(notebooks_dir):
    wf = make_workflow("w", notebooks_dir=notebooks_dir)
    settings = wf.spec(_target("/Shared/x")).job_settings()
    tasks = {t["task_key"]: t for t in settings["tasks"]}
    assert tasks["w__flaky"]["depends_on"] == [{"task_key": "w__source"}]
    assert tasks["w__sink"]["depends_on"] == [{"task_key": "w__flaky"}]
    assert "depends_on" not in tasks["w__slow"]
    assert {t["job_cluster_key"] for t in tasks.values()} == {"shared"}
    assert [c["job_cluster_key"] for c in settings["job_clusters"]] == ["shared"]
    assert tasks["w__source"]["notebook_task"]["notebook_path"] == "/Shared/x/notebooks/source"
    # the hash is stable and changes with the spec
    assert settings["tags"]["dbx_assets_spec_hash"] == spec_hash(wf.spec(_target("/Shared/x")).job_settings())
    assert (
        settings["tags"]["dbx_assets_spec_hash"]
        != wf.spec(_target("/Shared/y")).job_settings()["tags"]["dbx_assets_spec_hash"]
    )


def test_pure_helpers():
    assert task_key_for(("a", "b c")) == "a__b_c"
    assert len(task_key_for(("x" * 200,))) == 100
    assert idempotency_token("run", "step") == idempotency_token("run", "step") != idempotency_token("run", "step2")
    assert len(idempotency_token("r" * 100)) <= 64
    delays = PollPolicy(initial_seconds=1, max_seconds=5, factor=2).delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]
    meta = exit_value_metadata('{"rows": 3, "ok": true, "nested": {"a": 1}}')
    assert meta["rows"] == 3 and meta["ok"].value == "True" and meta["nested"].value == {"a": 1}
    assert exit_value_metadata("[1, 2]")["notebook_exit_value"].value == "[1, 2]"
    assert exit_value_metadata(None) == {}


def test_deploy_uploads_only_changed_files_and_resets_only_on_spec_change(fake_client, notebooks_dir):
    name = new_name()
    deployer = WorkflowDeployer(fake_client, f"/Shared/tests/{name}")
    wf = make_workflow(name, notebooks_dir=notebooks_dir)
    first = deployer.deploy(wf.spec(_target(f"/Shared/tests/{name}")), wf.files())
    assert first.job_created and len(first.uploaded) == 4
    again = deployer.deploy(wf.spec(_target(f"/Shared/tests/{name}")), wf.files())
    assert (again.job_id, again.uploaded, again.job_reset, again.job_created) == (first.job_id, (), False, False)
    (notebooks_dir / "sink.py").write_text((notebooks_dir / "sink.py").read_text() + "\nprint('v2')\n")
    wf2 = make_workflow(name, notebooks_dir=notebooks_dir)
    changed = deployer.deploy(wf2.spec(_target(f"/Shared/tests/{name}")), wf2.files())
    assert changed.uploaded == ("notebooks/sink",) and not changed.job_reset
    exported = fake_client.workspace.export(f"/Shared/tests/{name}/notebooks/sink")
    import base64

    assert "print('v2')" in base64.b64decode(exported.content).decode()
    wf3 = Workflow(
        name=name, sources=wf2.sources, job_clusters={"shared": {"spark_version": "15.4.x-scala2.12", "num_workers": 2}}
    )
    reset = deployer.deploy(wf3.spec(_target(f"/Shared/tests/{name}")), wf3.files())
    assert reset.job_reset and reset.job_id == first.job_id
    job = fake_client.jobs.get(first.job_id)
    assert job.settings.job_clusters[0].new_cluster.num_workers == 2


def test_materializations_are_capped_by_the_databricks_pool():
    from dbx_assets.demo.definitions import demo_assets

    assert demo_assets.op.pool == "databricks"
    assert build_workflow_assets(make_workflow("w"), pool="nightly").op.pool == "nightly"


# ----------------------------------------------------------------------------------- notebook formats
SQL_NOTEBOOK = """-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Orders by region
-- MAGIC One row per region.

-- COMMAND ----------

-- MAGIC %run ./setup

-- COMMAND ----------

CREATE WIDGET TEXT region DEFAULT 'emea';
SELECT * FROM orders WHERE region = :region
"""


def _ipynb(*cells: tuple[str, str], language: str = "python") -> str:
    import json

    return json.dumps(
        {
            "cells": [
                {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
                | ({"execution_count": 0, "outputs": []} if kind == "code" else {})
                for kind, source in cells
            ],
            "metadata": {"application/vnd.databricks.v1+notebook": {"language": language, "notebookName": "x"}},
            "nbformat": 4,
            "nbformat_minor": 0,
        },
        indent=1,
    )


def test_sql_and_ipynb_notebooks_are_assets_deployed_in_their_format(tmp_path, workspace_client):
    import base64

    from databricks.sdk.service.workspace import ExportFormat, Language

    (tmp_path / "orders_by_region.sql").write_text(SQL_NOTEBOOK)
    (tmp_path / "setup.py").write_text("# Databricks notebook source\nspark.sql('SELECT 1')\n")
    landing = _ipynb(
        ("markdown", "# Landed files\nLists and loads what landed."),
        ("code", "%run ./lib/common"),
        ("code", "%fs ls dbfs:/landing"),
        ("code", "%sql\nSELECT 1"),
    )
    (tmp_path / "landing.ipynb").write_text(landing)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.sql").write_text("-- Databricks notebook source\nSELECT 1\n")
    tasks = NotebookTasks(
        [
            NotebookAsset(key="orders_by_region", notebook="orders_by_region.sql"),
            NotebookAsset(key="landing", notebook="landing.ipynb", deps=["orders_by_region"]),
        ],
        notebooks_dir=tmp_path,
    )
    specs = {s.key.to_user_string(): s for s in tasks.asset_specs()}
    assert specs["orders_by_region"].description == "# Orders by region\nOne row per region."
    assert specs["landing"].description == "# Landed files\nLists and loads what landed."
    files = tasks.files()
    assert {p: (f.language, f.notebook_format) for p, f in files.items()} == {
        "notebooks/orders_by_region": ("SQL", "SOURCE"),
        "notebooks/setup": ("PYTHON", "SOURCE"),
        "notebooks/landing": ("PYTHON", "JUPYTER"),
        "notebooks/lib/common": ("SQL", "SOURCE"),
    }
    name = new_name()
    root = f"/Shared/tests/{name}"
    deployer = WorkflowDeployer(workspace_client, root)
    wf = Workflow(name=name, sources=[tasks])
    assert len(deployer.deploy(wf.spec(_target(root)), wf.files()).uploaded) == 4
    w = workspace_client.workspace
    assert w.get_status(f"{root}/notebooks/orders_by_region").language == Language.SQL
    assert w.get_status(f"{root}/notebooks/landing").language == Language.PYTHON
    exported = w.export(f"{root}/notebooks/orders_by_region", format=ExportFormat.SOURCE)
    assert base64.b64decode(exported.content or "").decode() == SQL_NOTEBOOK
    as_imported = w.export(f"{root}/notebooks/landing", format=ExportFormat.JUPYTER)
    assert base64.b64decode(as_imported.content or "").decode() == landing
    settings = wf.spec(_target(root)).job_settings()
    paths = sorted(t["notebook_task"]["notebook_path"] for t in settings["tasks"])
    assert paths == [f"{root}/notebooks/landing", f"{root}/notebooks/orders_by_region"]


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "orders.sql",
            "SELECT 1\n",
            r"orders\.sql is not in Databricks SOURCE format: its first line must be '-- Databricks notebook source' "
            r"\(cells separated by '-- COMMAND ----------'\)\. Export it from Databricks as 'Source file' or add",
        ),
        (
            "orders.ipynb",
            '{"cells": [',
            r"orders\.ipynb is not a valid Jupyter notebook \(Expecting value: line 1 column 12 \(char 11\)\)\. "
            r"Export it from Databricks as 'IPython Notebook', or fix the file\.",
        ),
        ("orders.ipynb", '{"cells": [{"source": "x"}]}', r"orders\.ipynb is not a valid Jupyter notebook: it needs"),
        (
            "orders.ipynb",
            _ipynb(("code", "x"), language="julia"),
            r"orders\.ipynb says its language is 'julia'; Databricks notebooks are python, sql, scala or r",
        ),
        ("orders.txt", "SELECT 1", r"orders\.txt is not a notebook file: use a SOURCE file \(\.py, \.sql"),
    ],
)
def test_a_malformed_notebook_file_is_one_clear_error_at_load(tmp_path, file, content, message):
    (tmp_path / file).write_text(content)
    with pytest.raises(NotebookFileError, match=message):
        NotebookTasks([NotebookAsset(key="orders", notebook=file)], notebooks_dir=tmp_path)


def test_two_files_that_would_be_one_workspace_notebook_are_rejected(tmp_path):
    (tmp_path / "orders.py").write_text("# Databricks notebook source\n# MAGIC %run ./orders_sql\n")
    (tmp_path / "orders.sql").write_text("-- Databricks notebook source\nSELECT 1\n")
    (tmp_path / "orders_sql.py").write_text("# Databricks notebook source\nx = 1\n")
    NotebookTasks([NotebookAsset(key="a", notebook="orders.py")], notebooks_dir=tmp_path)  # one of them: fine
    with pytest.raises(WorkflowDefinitionError, match=r"orders\.py and .*orders\.sql would both be deployed as"):
        NotebookTasks(
            [NotebookAsset(key="a", notebook="orders.py"), NotebookAsset(key="b", notebook="orders.sql")],
            notebooks_dir=tmp_path,
        )
