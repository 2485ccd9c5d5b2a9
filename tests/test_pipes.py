"""Dagster Pipes inside the one shared Databricks run, on the no-JVM local workspace: each
pipes-enabled task has its own context and channel, and what it reports lands on its own asset."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster_pipes import PipesBufferedFilesystemMessageWriterChannel
from workflow_support import (
    NOTEBOOKS,
    PIPES_LABELS,
    captured_compute_logs,
    make_resource,
    materialization_metadata,
    pipes_workflow,
)

from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.pipes.merge import merge_reported
from dbx_assets.integration.pipes.reader import TaskChannelReader
from dbx_assets.integration.sources.base import Selection, SourceTask, TaskReport
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.sources.pipes_layout import CHANNEL_PARAMETER, PipesLocation, TaskChannel, task_channel
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workspace_files import WorkspaceFiles


def test_three_pipes_notebooks_report_checks_metadata_and_lines_on_their_own_assets(dbx_env, tmp_path):
    ws, name = dbx_env, "p" + uuid.uuid4().hex[:8]
    workflow = pipes_workflow(name)
    ws.set_faults()  # no faults; request counts from zero
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize(
            [build_workflow_assets(workflow)], resources={"databricks": make_resource(name)}, instance=instance
        )
        assert result.success
        stdout, _ = captured_compute_logs(instance, result)
        logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    counts = ws.counts()["requests"]
    metas = {label: materialization_metadata(result, dg.AssetKey([name, label])) for label in PIPES_LABELS}
    # each asset carries its own task's value (and its exit value, as without Pipes)
    for label, meta in metas.items():
        assert meta["label"] == label and meta["label_length"] == len(label)
        assert meta["notebook_exit_value"] == "reported through pipes"
    versions = {
        e.materialization.asset_key.path[-1]: (e.materialization.tags or {}).get("dagster/data_version")
        for e in result.get_asset_materialization_events()
    }
    assert versions == {label: label for label in PIPES_LABELS}
    checks = {
        e.asset_check_evaluation_data.asset_key.path[-1]: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert sorted(checks) == sorted(PIPES_LABELS)
    assert all(c.passed and c.check_name == "label_is_set" for c in checks.values())
    assert {label: checks[label].metadata["label"].value for label in PIPES_LABELS} == {
        label: label for label in PIPES_LABELS
    }
    # each task's printed lines, labelled by task, in the step's compute logs; pipes.log lines in the step's log
    for label in PIPES_LABELS:
        assert f"[{name}__{label}] first line printed by {label}\n" in stdout
        assert f"[{name}__{label}] last line printed by {label}\n" in stdout
        assert any(f"[{name}__{label}] {label} is reporting for {name}/{label}" in m for m in logged)
    # one Databricks run, one cluster
    run_ids = {m["databricks_run_id"] for m in metas.values()}
    clusters = {m["databricks_cluster_id"] for m in metas.values()}
    assert len(run_ids) == 1 and len(clusters) == 1
    run = ws.client.jobs.get_run(run_ids.pop())
    assert len(run.tasks or []) == 3 and {t.cluster_instance.cluster_id for t in run.tasks or []} == clusters
    # the channel costs a bounded number of calls: each task's context, folder, listings and chunk reads
    runs_get = counts.get("GET /api/2.1/jobs/runs/get", 0) + counts.get("GET /api/2.2/jobs/runs/get", 0)
    assert counts.get("POST /api/2.0/dbfs/put", 0) == 3 and counts.get("POST /api/2.0/dbfs/mkdirs", 0) == 3
    assert counts.get("GET /api/2.0/dbfs/list", 0) <= 3 * (runs_get + 2 * 3), counts


def test_the_job_spec_stays_static_and_declares_dagster_pipes():
    name = "static"
    workflow = pipes_workflow(name)
    spec = workflow.spec(workflow_target())
    task = spec.task(f"{name}__beta").job_settings()
    channel = task["notebook_task"]["base_parameters"][CHANNEL_PARAMETER]
    assert channel == f"/dbfs/tmp/{name}/pipes/{{{{job.parameters.dagster_run_id}}}}/{name}__beta"
    version = __import__("importlib.metadata").metadata.version("dagster-pipes")
    assert {"pypi": {"package": f"dagster-pipes=={version}"}} in task["libraries"]
    assert [c.key.name for c in workflow.check_specs()] == ["label_is_set"] * 3
    # the channel folder the step reads is the one the parameter names, once Databricks fills in the run id
    assert task_channel(f"{name}__beta", channel, "run1") == TaskChannel(
        f"{name}__beta", f"dbfs:/tmp/{name}/pipes/run1/{name}__beta"
    )


def workflow_target():
    from dbx_assets.integration.sources.base import DeployTarget

    return DeployTarget(workspace_root="/Shared/tests/static")


def test_declaration_errors_name_the_fix():
    with pytest.raises(WorkflowDefinitionError, match="set pipes=True"):
        NotebookTasks([NotebookAsset(key="x", notebook="pipes_report.py", checks=["c"])], notebooks_dir=NOTEBOOKS)
    with pytest.raises(WorkflowDefinitionError, match="neither a DBFS folder nor a Unity Catalog volume"):
        PipesLocation("/tmp/pipes")
    assert (
        PipesLocation("/Volumes/main/default/landing/pipes/")
        .channel_parameter("t")
        .startswith("/Volumes/main/default/landing/pipes/{{job.parameters.dagster_run_id}}/t")
    )


def _write_chunk(local_dir: Path, index: int, *messages: dict) -> None:
    """A chunk as dagster_pipes' own filesystem message writer writes it."""
    import io

    channel = PipesBufferedFilesystemMessageWriterChannel(str(local_dir))
    channel.upload_messages_chunk(io.StringIO("\n".join(json.dumps(m) for m in messages)), index)


def _message(method: str, **params) -> dict:
    return {"__dagster_pipes_version": "0.1", "method": method, "params": params}


def test_a_task_closing_early_loses_no_message_of_another_task(fake_dbx):
    """dagster-io/dagster#33700: tasks sharing file names and one reader closing on the first
    'closed' lost every later task's messages. Here two tasks write the same chunk names, the
    first closes before the second has reported anything, and both arrive whole."""
    run = "r" + uuid.uuid4().hex[:8]
    storage = WorkspaceFiles(fake_dbx.client)
    context = dg.build_asset_context()
    lines: list[tuple[str, str]] = []
    readers = {}
    for task in ("first", "second"):
        channel = task_channel(task, f"/dbfs/tmp/pipes33700/{{{{job.parameters.dagster_run_id}}}}/{task}", run)
        storage.make_dir(channel.messages_dir)
        readers[task] = TaskChannelReader(
            context, storage, channel, write_stream=lambda stream, text: lines.append((stream, text))
        )
    local = fake_dbx.paths.dbfs / "tmp" / "pipes33700" / run
    opened = _message("opened", extras={})
    _write_chunk(
        local / "first" / "messages",
        1,
        opened,
        _message(
            "report_asset_materialization",
            asset_key="a",
            metadata={"n": {"raw_value": 1, "type": "int"}},
            data_version=None,
        ),
        _message("closed"),
    )
    _write_chunk(local / "second" / "messages", 1, opened)
    for reader in readers.values():
        reader.poll()
    assert readers["first"].closed and not readers["second"].closed
    _write_chunk(
        local / "second" / "messages",
        2,
        _message("log_external_stream", stream="stdout", text="hello from second\npartial"),
        _message("report_asset_check", asset_key="b", check_name="c", passed=True, severity="ERROR", metadata={}),
    )
    _write_chunk(
        local / "second" / "messages",
        3,
        _message("log_external_stream", stream="stdout", text=" line\n"),
        _message("closed"),
    )
    for reader in readers.values():
        reader.poll()
    assert readers["second"].closed
    first = readers["first"].handler.get_reported_results()
    second = readers["second"].handler.get_reported_results()
    assert [(type(r).__name__, r.asset_key) for r in first] == [("MaterializeResult", dg.AssetKey("a"))]
    assert [(type(r).__name__, r.asset_key, r.check_name) for r in second] == [
        ("AssetCheckResult", dg.AssetKey("b"), "c")
    ]
    assert lines == [("stdout", "[second] hello from second\n"), ("stdout", "[second] partial line\n")]
    # a retried task rewrites 1.json: its new attempt replaces what the first attempt reported
    _write_chunk(local / "first" / "messages", 1, opened, _message("closed"), _message("closed"))
    readers["first"].poll()
    assert readers["first"].attempts == 2 and readers["first"].handler.get_reported_results() == ()


def _task(check_names=("c",)) -> SourceTask:
    own = dg.AssetKey("own")
    return SourceTask(
        task_key="t",
        asset_keys=frozenset({own}),
        upstream_keys=frozenset(),
        settings={},
        check_keys=frozenset(dg.AssetCheckKey(own, n) for n in check_names),
    )


def test_merge_puts_reports_on_the_tasks_one_materialization_and_rejects_other_assets():
    own = dg.AssetKey("own")
    selection = Selection(assets=frozenset({own}), checks=frozenset({dg.AssetCheckKey(own, "c")}))
    report = TaskReport(events=[dg.MaterializeResult(asset_key=own, metadata={"databricks_run_id": 7, "x": 1})])
    merged = merge_reported(
        _task(),
        [
            dg.MaterializeResult(asset_key=own, metadata={"x": 2}),
            dg.MaterializeResult(asset_key=own, metadata={"y": 3}, data_version=dg.DataVersion("v2")),
            dg.AssetCheckResult(asset_key=own, check_name="c", passed=False),
        ],
        report,
        selection,
    )
    assert not merged.failures
    materialization, check = merged.events
    assert isinstance(materialization, dg.MaterializeResult) and isinstance(check, dg.AssetCheckResult)
    assert materialization.metadata == {"databricks_run_id": 7, "x": 2, "y": 3}
    assert materialization.data_version == dg.DataVersion("v2")
    assert check.check_name == "c" and not check.passed

    stray = merge_reported(_task(), [dg.MaterializeResult(asset_key=dg.AssetKey("someone_else"))], report, selection)
    assert stray.events == []
    assert "task t reported a materialization of asset someone_else" in stray.failures[own]
    undeclared = merge_reported(
        _task(), [dg.AssetCheckResult(asset_key=own, check_name="nope", passed=True)], report, selection
    )
    assert "check 'nope'" in undeclared.failures[own] and "declare it with checks=" in undeclared.failures[own]
