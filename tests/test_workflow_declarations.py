"""Declaring notebook assets: load-time validation, code versions, job spec shape, deploy diffs."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
from workflow_support import NOTEBOOKS, make_workflow, new_name

from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks, exit_value_metadata
from dbx_assets.integration.sources.notebook_file import NotebookFileError
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.integration.workflow.deploy import WorkflowDeployer
from dbx_assets.integration.workflow.model import WorkflowDefinitionError, spec_hash, task_key_for
from dbx_assets.integration.workflow.runner import PollPolicy, idempotency_token


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
