"""Python file and wheel tasks without a JVM: how their declarations become asset specs and job
tasks next to a notebook (one job), what fails at definitions load, that loading builds nothing,
that the wheel is rebuilt only when its sources change, how a finished task becomes events, and
how the local workspace turns a wheel task into an invocation (argv, named parameters, job parameter
pushdown, whl libraries)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from workflow_support import NOTEBOOKS

from dbx_assets.integration.jobs.model import WorkflowDefinitionError, serverless_environment
from dbx_assets.integration.jobs.runner import TaskFinished
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.base import DeployTarget, Selection
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.sources.python_file import PythonFileAsset, PythonFileTasks
from dbx_assets.integration.sources.python_wheel import PythonWheelAsset, PythonWheelTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow
from dbx_assets.local_workspace.engine.task_invocations import Resolvers, TaskInvocations, TaskSetupError
from dbx_assets.local_workspace.runtime.contract import StoragePaths

WHEEL_PROJECT = Path(__file__).parent / "data" / "orders_wheel"
TARGET = DeployTarget(workspace_root="/Shared/dbx_assets/dev", catalog="main", schema="sales", deployment="dev")

LOAD_ORDERS = '''"""Lands the day's orders into {catalog}.{schema}.orders."""
import sys

print(sys.argv)
'''


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    (folder / "lib").mkdir(parents=True)
    (folder / "load_orders.py").write_text(LOAD_ORDERS)
    (folder / "lib" / "helpers.py").write_text("RATE = 1\n")
    return folder


@pytest.fixture
def wheel_project(tmp_path: Path) -> Path:
    target = tmp_path / "orders_wheel"
    shutil.copytree(WHEEL_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return target


def _files(files_dir: Path, **kwargs) -> PythonFileTasks:
    declaration = PythonFileAsset(
        key="sales/orders",
        python_file="load_orders.py",
        parameters=["--catalog", "{catalog}", "--schema={schema}", "--day", "{{job.parameters.partition_key}}"],
        table="{catalog}.sales.orders",
        libraries=["requests==2.32.3"],
        owners=["team:sales"],
        **kwargs,
    )
    return PythonFileTasks([declaration], files_dir=files_dir, include=["lib/*.py"])


def _wheels(project: Path, build_dir: Path, **kwargs) -> PythonWheelTasks:
    return PythonWheelTasks(
        [
            PythonWheelAsset(
                key="sales/daily_totals",
                entry_point="summarize",
                deps=["sales/orders"],
                named_parameters={"source": "orders", "catalog": "ignored: the deployment's wins"},
                table="main.sales.daily_totals",
                **kwargs,
            ),
            PythonWheelAsset(
                key="sales/order_count",
                entry_point="count_orders",
                package_name="orders_wheel",
                deps=["sales/orders"],
                parameters=["{catalog}.{schema}.orders"],
            ),
        ],
        project_dir=project,
        build_dir=build_dir,
    )


def _workflow(files_dir: Path, project: Path, build_dir: Path, **kwargs) -> Workflow:
    notebooks = NotebookTasks(
        [NotebookAsset(key="sales/report", notebook="sink.py", deps=["sales/daily_totals"])], notebooks_dir=NOTEBOOKS
    )
    return Workflow(name="w", sources=[notebooks, _files(files_dir), _wheels(project, build_dir)], **kwargs)


def test_a_notebook_a_python_file_and_wheel_entry_points_are_one_job(files_dir, wheel_project, tmp_path):
    workflow = _workflow(files_dir, wheel_project, tmp_path / "wheels")
    tasks = {t["task_key"]: t for t in workflow.spec(TARGET).job_settings()["tasks"]}
    assert set(tasks) == {"sales__report", "sales__orders", "sales__daily_totals", "sales__order_count"}

    orders = tasks["sales__orders"]
    assert orders["spark_python_task"] == {
        "python_file": "/Shared/dbx_assets/dev/files/load_orders.py",
        "parameters": ["--catalog", "main", "--schema=sales", "--day", "{{job.parameters.partition_key}}"],
        "source": "WORKSPACE",
    }
    assert orders["libraries"] == [{"pypi": {"package": "requests==2.32.3"}}]
    assert orders["job_cluster_key"] == "shared" and "depends_on" not in orders

    project = workflow.sources[2].project  # type: ignore[attr-defined]
    wheel = f"/Workspace/Shared/dbx_assets/dev/wheels/orders_wheel-{project.source_hash}/orders_wheel-0.1.0-py3-none-any.whl"
    totals = tasks["sales__daily_totals"]
    assert totals["python_wheel_task"] == {
        "package_name": "orders-wheel",
        "entry_point": "summarize",
        # the deployment's parameters win, as they do for a notebook's widgets
        "named_parameters": {"source": "orders", "catalog": "main", "deployment": "dev", "schema": "sales"},
    }
    assert totals["libraries"] == [{"whl": wheel}]
    assert totals["depends_on"] == [{"task_key": "sales__orders"}]
    count = tasks["sales__order_count"]
    assert count["python_wheel_task"] == {
        "package_name": "orders_wheel",
        "entry_point": "count_orders",
        "parameters": ["main.sales.orders"],
    }
    assert tasks["sales__report"]["depends_on"] == [{"task_key": "sales__daily_totals"}]

    # Without a catalog or schema the placeholders are empty and named parameters leave them out.
    bare = DeployTarget(workspace_root="/Users/me@x.com/w", deployment="dev")
    bare_tasks = {t["task_key"]: t for t in workflow.spec(bare).job_settings()["tasks"]}
    assert bare_tasks["sales__orders"]["spark_python_task"]["parameters"][:3] == ["--catalog", "", "--schema="]
    assert bare_tasks["sales__daily_totals"]["python_wheel_task"]["named_parameters"] == {
        "source": "orders",
        "catalog": "ignored: the deployment's wins",
        "deployment": "dev",
    }
    assert bare_tasks["sales__daily_totals"]["libraries"][0]["whl"].startswith("/Workspace/Users/me@x.com/w/wheels/")


def test_asset_specs_say_what_runs_and_version_it(files_dir, wheel_project, tmp_path):
    specs = {s.key: s for s in build_workflow_assets(_workflow(files_dir, wheel_project, tmp_path / "w")).specs}
    orders = specs[dg.AssetKey(["sales", "orders"])]
    assert orders.description == "Lands the day's orders into {catalog}.{schema}.orders."  # the module docstring
    assert orders.kinds == {"databricks", "python"} and orders.owners == ["team:sales"]
    assert orders.metadata["python_file"] == "load_orders.py"
    assert orders.metadata["databricks_task_key"] == "sales__orders"
    totals = specs[dg.AssetKey(["sales", "daily_totals"])]
    assert totals.description == "Daily order totals, as a Python wheel task (entry point orders-wheel:summarize)"
    assert totals.metadata["dagster/table_name"] == "main.sales.daily_totals"  # no {catalog}: known at load
    assert totals.metadata["entry_point"] == "orders-wheel:summarize"
    assert [d.asset_key for d in totals.deps] == [dg.AssetKey(["sales", "orders"])]

    # An included helper is part of the file's code version; a wheel source is part of every entry point's.
    (files_dir / "lib" / "helpers.py").write_text("RATE = 2\n")
    (wheel_project / "src" / "orders_wheel" / "main.py").write_text("def summarize():\n    pass\n")
    after = {s.key: s for s in build_workflow_assets(_workflow(files_dir, wheel_project, tmp_path / "w")).specs}
    for key, spec in specs.items():
        changed = after[key].code_version != spec.code_version
        assert changed == (key != dg.AssetKey(["sales", "report"])), key


def test_loading_definitions_builds_nothing(files_dir, wheel_project, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no uv: a build attempt would fail
    build_dir = tmp_path / "wheels"
    workflow = _workflow(files_dir, wheel_project, build_dir)
    resource = DatabricksResource(host="https://example.invalid", token="unused", workspace_root="/Shared/x")
    defs = dg.Definitions(assets=[build_workflow_assets(workflow)], resources={"databricks": resource})
    assert len(defs.resolve_all_asset_specs()) == 4
    assert not build_dir.exists()


def test_the_wheel_is_built_at_deploy_only_when_its_sources_change(wheel_project, tmp_path):
    build_dir = tmp_path / "wheels"
    first = _wheels(wheel_project, build_dir)
    files = first.files()
    assert first.last_build is not None and first.last_build.built
    [(rel, wheel)] = files.items()
    assert rel == first.wheel_relative_path and rel.endswith("/orders_wheel-0.1.0-py3-none-any.whl")
    assert wheel.content[:2] == b"PK"  # a zip

    again = _wheels(wheel_project, build_dir)  # a later deploy, e.g. the next run worker
    assert again.files()[rel].content == wheel.content
    assert again.last_build is not None and not again.last_build.built

    # What is not a source (caches, build outputs) changes nothing.
    (wheel_project / "src" / "orders_wheel" / "__pycache__").mkdir()
    (wheel_project / "src" / "orders_wheel" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    (wheel_project / "dist").mkdir()
    (wheel_project / "dist" / "old.whl").write_bytes(b"x")
    unchanged = _wheels(wheel_project, build_dir)
    unchanged.files()
    assert unchanged.last_build is not None and not unchanged.last_build.built
    assert unchanged.wheel_relative_path == rel

    main = wheel_project / "src" / "orders_wheel" / "main.py"
    main.write_text(main.read_text() + "\n# changed\n")
    changed = _wheels(wheel_project, build_dir)
    assert changed.wheel_relative_path != rel  # a new folder: the job spec names the new build
    changed.files()
    assert changed.last_build is not None and changed.last_build.built


def test_what_cannot_run_fails_at_load_naming_it(files_dir, wheel_project, tmp_path):
    def file_asset(**kwargs) -> PythonFileTasks:
        return PythonFileTasks([PythonFileAsset(key="a", **kwargs)], files_dir=files_dir)

    with pytest.raises(WorkflowDefinitionError, match=r"nope\.py does not exist"):
        file_asset(python_file="nope.py")
    with pytest.raises(WorkflowDefinitionError, match=r"outside the files folder"):
        file_asset(python_file="../x.py")
    (files_dir / "broken.py").write_text("def f(:\n")
    with pytest.raises(WorkflowDefinitionError, match=r"broken\.py does not parse: line 1"):
        file_asset(python_file="broken.py")
    (files_dir / "nb.py").write_text("# Databricks notebook source\nprint(1)\n")
    with pytest.raises(WorkflowDefinitionError, match=r"nb\.py is a Databricks notebook.*NotebookAsset"):
        file_asset(python_file="nb.py")
    with pytest.raises(WorkflowDefinitionError, match=r"names \{day\}, which is not a placeholder"):
        file_asset(python_file="load_orders.py", parameters=["{day}"])
    with pytest.raises(WorkflowDefinitionError, match=r"'a' is declared twice"):
        PythonFileTasks(
            [PythonFileAsset(key="a", python_file="load_orders.py")] * 2,
            files_dir=files_dir,
        )

    with pytest.raises(WorkflowDefinitionError, match=r"both parameters and named_parameters"):
        PythonWheelTasks(
            [PythonWheelAsset(key="a", entry_point="summarize", parameters=["x"], named_parameters={"a": "b"})],
            project_dir=wheel_project,
        )
    with pytest.raises(WorkflowDefinitionError, match=r"build_dir .* is inside the wheel project"):
        _wheels(wheel_project, wheel_project / "builds")
    _wheels(wheel_project, wheel_project / "dist" / "dbx")  # dist/ is never hashed
    pyproject = wheel_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'dynamic = ["version"]'))
    with pytest.raises(WorkflowDefinitionError, match=r"needs a static version"):
        PythonWheelTasks([PythonWheelAsset(key="a", entry_point="summarize")], project_dir=wheel_project)
    with pytest.raises(WorkflowDefinitionError, match=r"has no pyproject\.toml"):
        PythonWheelTasks([PythonWheelAsset(key="a", entry_point="summarize")], project_dir=tmp_path)

    git = {"git_url": "https://github.com/x/y", "git_provider": "gitHub", "git_branch": "main"}
    pyproject.write_text(WHEEL_PROJECT.joinpath("pyproject.toml").read_text())
    with pytest.raises(WorkflowDefinitionError, match=r"git_source uploads no files, but a wheel task"):
        Workflow(name="w", sources=[_wheels(wheel_project, tmp_path)], git_source=git)


def test_serverless_wheel_tasks_install_the_wheel_through_their_environment(files_dir, wheel_project, tmp_path):
    workflow = _workflow(
        files_dir, wheel_project, tmp_path, environments={"default": serverless_environment(["pandas"])}
    )
    serverless = Workflow(
        name="w",
        sources=[_wheels(wheel_project, tmp_path, environment="default")],
        environments={"default": serverless_environment(["pandas"])},
        external_deps=["sales/orders"],
    )
    settings = serverless.spec(TARGET).job_settings()
    totals = next(t for t in settings["tasks"] if t["task_key"] == "sales__daily_totals")
    assert totals["environment_key"] == "default" and "libraries" not in totals
    [environment] = settings["environments"]
    wheel = workflow.sources[2].wheel_path(TARGET)  # type: ignore[attr-defined]
    assert environment["spec"]["dependencies"] == sorted(["pandas", wheel])


def test_submit_settings_carry_the_selections_parameters(files_dir, wheel_project, tmp_path):
    selection = Selection(
        assets=frozenset({dg.AssetKey(["sales", "orders"])}),
        checks=frozenset(),
        parameters={"partition_key": "2026-11-02"},
    )
    files = _files(files_dir)
    [task] = files.tasks(TARGET)
    assert files.submit_settings(task, selection, TARGET)["spark_python_task"]["parameters"][-1] == "2026-11-02"
    wheels = _wheels(wheel_project, tmp_path)
    named, positional = wheels.tasks(TARGET)
    assert wheels.submit_settings(named, selection, TARGET)["python_wheel_task"]["named_parameters"][
        "partition_key"
    ] == ("2026-11-02")
    assert wheels.submit_settings(positional, selection, TARGET)["python_wheel_task"]["parameters"] == [
        "main.sales.orders"
    ]


def _finished(task_key: str, succeeded: bool, error: str = "") -> TaskFinished:
    from databricks.sdk.service.jobs import RunOutput

    return TaskFinished(
        task_key=task_key,
        task_run_id=7,
        succeeded=succeeded,
        result_state="SUCCESS" if succeeded else "FAILED",
        state_message="" if succeeded else error,
        cluster_id="c-1",
        setup_seconds=1.0,
        execution_seconds=2.0,
        output=RunOutput(error=error or None, logs="printed\n"),
    )


def test_a_finished_task_becomes_its_assets_event_or_failure(files_dir):
    files = _files(files_dir)
    key = dg.AssetKey(["sales", "orders"])
    selection = Selection(assets=frozenset({key}), checks=frozenset())
    ok = files.report(_finished("sales__orders", True), selection, TARGET, {"databricks_run_id": 1})
    [event] = ok.events
    assert isinstance(event, dg.MaterializeResult) and event.asset_key == key
    assert event.metadata == {"databricks_run_id": 1, "dagster/table_name": "main.sales.orders"}
    failed = files.report(_finished("sales__orders", False, "ValueError: bad day"), selection, TARGET, {})
    assert failed.failures == {key: "FAILED: ValueError: bad day"} and not failed.events
    other = Selection(assets=frozenset({dg.AssetKey("x")}), checks=frozenset())
    assert not files.report(_finished("sales__orders", True), other, TARGET, {}).events


# -- the local workspace's side: a python_wheel_task becomes an invocation -------------------------------


def _invocations(tmp_path: Path) -> TaskInvocations:
    paths = StoragePaths(tmp_path / "state").ensure()
    resolvers = Resolvers(
        read_notebook=lambda path: "",
        workspace_local=lambda path: paths.workspace / path.removeprefix("/Workspace").lstrip("/"),
        dbfs_local=lambda path: paths.dbfs / path.removeprefix("dbfs:").lstrip("/"),
    )
    return TaskInvocations(paths, resolvers)


def _run(task: dict, job_parameters: dict[str, str], params: dict | None = None) -> tuple[dict, dict]:
    run = {
        "run_id": 1,
        "job_id": 2,
        "run_name": "w",
        "job_parameters": [{"name": k, "value": v} for k, v in job_parameters.items()],
        "_spec": {"params": params or {}, "tasks": [task]},
    }
    return run, {"task_key": task["task_key"], "run_id": 10}


def test_the_local_workspace_runs_a_wheel_task_as_databricks_does(tmp_path):
    invocations = _invocations(tmp_path)
    named = {
        "task_key": "t",
        "python_wheel_task": {
            "package_name": "orders-wheel",
            "entry_point": "summarize",
            "named_parameters": {"source": "orders", "run": "{{job.run_id}}", "day": "task's"},
        },
        "libraries": [
            {"whl": "/Workspace/Shared/w/wheels/orders_wheel-0.1.0-py3-none-any.whl"},
            {"whl": "/Volumes/main/libs/wheels/other-1.0-py3-none-any.whl"},
            {"whl": "dbfs:/libs/third-1.0-py3-none-any.whl"},
            {"pypi": {"package": "requests"}},
        ],
    }
    run, task = _run(named, {"day": "2026-11-02"})
    inv = invocations.build(run, task, named)
    assert (inv.kind, inv.wheel_package, inv.wheel_entry_point) == ("python_wheel", "orders-wheel", "summarize")
    # named parameters as --key=value; the job's parameters are pushed down over the task's own
    assert inv.python_parameters == ("--source=orders", "--run=1", "--day=2026-11-02")
    assert task["resolved_values"] == {
        "python_wheel_task": {"named_parameters": {"source": "orders", "run": "1", "day": "2026-11-02"}}
    }
    paths = invocations.paths
    assert inv.wheel_libraries == {
        "/Workspace/Shared/w/wheels/orders_wheel-0.1.0-py3-none-any.whl": str(
            paths.workspace / "Shared/w/wheels/orders_wheel-0.1.0-py3-none-any.whl"
        ),
        "/Volumes/main/libs/wheels/other-1.0-py3-none-any.whl": str(
            (paths.volumes / "main/libs/wheels/other-1.0-py3-none-any.whl").resolve()
        ),
        "dbfs:/libs/third-1.0-py3-none-any.whl": str(paths.dbfs / "libs/third-1.0-py3-none-any.whl"),
    }
    assert inv.pypi_packages == ("requests",)

    positional = {
        "task_key": "t",
        "python_wheel_task": {"package_name": "p", "entry_point": "e", "parameters": ["a", "{{job.parameters.day}}"]},
    }
    run, task = _run(positional, {"day": "2026-11-02"})
    assert invocations.build(run, task, positional).python_parameters == ("a", "2026-11-02")  # no pushdown
    run, task = _run(positional, {"day": "x"}, params={"python_params": ["override"]})
    assert invocations.build(run, task, positional).python_parameters == ("override",)

    bad = {**positional, "libraries": [{"whl": "s3://bucket/x-1.0-py3-none-any.whl"}]}
    run, task = _run(bad, {})
    with pytest.raises(TaskSetupError, match=r"not a path the local workspace can install from"):
        invocations.build(run, task, bad)
    escaping = {**positional, "libraries": [{"whl": "/Volumes/../../etc/x-1.0-py3-none-any.whl"}]}
    run, task = _run(escaping, {})
    with pytest.raises(TaskSetupError):
        invocations.build(run, task, escaping)


def test_a_serverless_environment_installs_wheel_dependencies_as_wheels(tmp_path):
    invocations = _invocations(tmp_path)
    task = {
        "task_key": "t",
        "environment_key": "default",
        "python_wheel_task": {"package_name": "p", "entry_point": "e"},
    }
    run, view = _run(task, {})
    run["_spec"]["environments"] = [
        {
            "environment_key": "default",
            "spec": {
                "environment_version": "2",
                "dependencies": ["pandas", "/Workspace/Shared/w/p-1.0-py3-none-any.whl"],
            },
        }
    ]
    inv = invocations.build(run, view, task)
    assert inv.pypi_packages == ("pandas",)
    assert list(inv.wheel_libraries) == ["/Workspace/Shared/w/p-1.0-py3-none-any.whl"]
    assert inv.python_parameters == ()  # neither kind of parameters: nothing is pushed down


def test_the_local_workspace_runs_a_sql_file_task_as_a_sql_notebook(tmp_path):
    invocations = _invocations(tmp_path)
    sql_file = invocations.paths.workspace / "Shared/w/bundle/src/orders.sql"
    sql_file.parent.mkdir(parents=True)
    sql_file.write_text(
        "USE CATALOG {{catalog}};\nUSE IDENTIFIER({{ schema }});\nSELECT {{target}} = 'prod', '{{other}}'"
    )
    task = {
        "task_key": "orders",
        "sql_task": {
            "warehouse_id": "",
            "file": {"path": "/Workspace/Shared/w/bundle/src/orders.sql", "source": "WORKSPACE"},
            "parameters": {"target": "it's {{job.run_id}}"},
        },
    }
    invocation = invocations.build(*_run(task, {"catalog": "main", "schema": "dev"}), task)
    assert (invocation.kind, invocation.notebook_language) == ("notebook", "SQL")
    # task parameters over the job's, each a SQL string literal; an unknown name is left for Spark to reject
    assert invocation.notebook_source == (
        "-- Databricks notebook source\n"
        "USE CATALOG 'main';\nUSE IDENTIFIER('dev');\nSELECT 'it\\'s 1' = 'prod', '{{other}}'"
    )
    missing = {"task_key": "q", "sql_task": {"file": {"path": "/Workspace/Shared/w/none.sql"}}}
    with pytest.raises(TaskSetupError, match="SQL file not found: /Workspace/Shared/w/none.sql"):
        invocations.build(*_run(missing, {}), missing)
    query = {"task_key": "q", "sql_task": {"query": {"query_id": "1"}, "warehouse_id": "w"}}
    with pytest.raises(TaskSetupError, match="sql_task.query is not supported locally"):
        invocations.build(*_run(query, {}), query)
