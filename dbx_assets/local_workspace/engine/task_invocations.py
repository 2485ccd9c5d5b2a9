"""What a cluster runs for each task of a run: the task's settings, the run's parameters and
dynamic value references become a TaskInvocation (runtime/contract.py).

One builder per task kind, registered in TASK_KINDS under the task settings field that declares
it (`notebook_task`, `spark_python_task`, `python_wheel_task`, `dbt_task`, `sql_task`); a task is built by the
first kind it has.
A new kind of task is one function and one entry in the table. A task that cannot be built
(missing notebook, bad path, unknown warehouse) raises TaskSetupError: it fails, the run goes on.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.contract import DbtInvocation, StoragePaths, TaskInvocation
from ..runtime.task_values import reference_text
from .clusters import cluster_spec
from .git_sources import GitCheckoutError, GitCheckouts, repo_file, task_uses_git
from .serverless import environment_spec, is_serverless
from .warehouses import WarehouseNotFound, Warehouses


class TaskSetupError(Exception):
    """The task cannot be turned into an invocation (missing notebook, bad path): it fails, the run goes on."""


@dataclass
class Resolvers:
    """How task fields become local things; provided by the workspace and DBFS APIs."""

    read_notebook: Callable[[str], str]
    workspace_local: Callable[[str], Path]
    dbfs_local: Callable[[str], Path]
    # PYTHON/SQL/SCALA/R of a workspace notebook (an R notebook's source has Python's header)
    notebook_language: Callable[[str], str | None] = lambda path: None


_REF = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def substitute(value: str, refs: dict[str, str]) -> str:
    """Databricks dynamic value references: {{job.parameters.x}}, {{job.run_id}}, {{task.name}}, ..."""
    return _REF.sub(lambda m: refs.get(m.group(1), m.group(0)), value)


@dataclass
class TaskToBuild:
    """One task of a run, with what every kind of task gets."""

    run: dict
    task: dict  # the task run (its view in runs/get); a builder may add resolved_values
    spec: dict  # the task's settings
    params: dict[str, Any]  # the run's overriding parameters (notebook_params, python_params, ...)
    job_params: dict[str, Any]
    refs: dict[str, str]  # dynamic value references -> their values
    env: dict[str, str]
    common: dict[str, Any]  # TaskInvocation fields every kind sets

    @property
    def key(self) -> str:
        return self.task["task_key"]

    @property
    def git_source(self) -> dict | None:
        return self.run["_spec"].get("git_source")

    @property
    def git_url(self) -> str:
        """The job's git_source URL (for a task whose source is GIT: it has one)."""
        return self.run["_spec"]["git_source"]["git_url"]


class TaskInvocations:
    """Builds the invocation of one task of a run, by its kind (TASK_KINDS)."""

    def __init__(self, paths: StoragePaths, resolvers: Resolvers, warehouses: Warehouses | None = None):
        self.paths = paths
        self.resolvers = resolvers
        self.warehouses = warehouses  # dbt tasks with a warehouse_id need it
        self.git = GitCheckouts(paths.state_dir / "git_checkouts")

    def build(self, run: dict, task: dict, spec: dict) -> TaskInvocation:
        params = run["_spec"].get("params", {})
        job_params = {p["name"]: p.get("value", p.get("default", "")) for p in run.get("job_parameters", [])}
        refs = {f"job.parameters.{k}": str(v) for k, v in job_params.items()}
        refs.update(
            {
                "job.id": str(run.get("job_id", "")),
                "job.run_id": str(run["run_id"]),
                "run_id": str(run["run_id"]),
                "job_id": str(run.get("job_id", "")),
                "task.run_id": str(task["run_id"]),
                "task.name": task["task_key"],
                "job.name": run.get("run_name", ""),
            }
        )
        # Finished tasks' values: for dbutils.jobs.taskValues.get and {{tasks.<key>.values.<name>}} references.
        task_values = {k: dict(v) for k, v in (run.get("_task_values") or {}).items()}
        refs.update(
            {
                f"tasks.{k}.values.{name}": reference_text(v)
                for k, vals in task_values.items()
                for name, v in vals.items()
            }
        )
        output_dir = self.paths.task_runs / str(task["run_id"])
        output_dir.mkdir(parents=True, exist_ok=True)
        packages: list[str] = []
        wheels: dict[str, str] = {}
        for lib in spec.get("libraries", []):
            if isinstance(lib, dict) and lib.get("pypi"):
                packages.append(str(lib["pypi"]["package"]))
            elif isinstance(lib, dict) and lib.get("whl"):
                wheels[str(lib["whl"])] = str(self.library_file(str(lib["whl"]), task["task_key"]))
        if is_serverless(spec):  # the environment's dependencies, installed once per serverless runtime
            for dep in environment_spec(run["_spec"].get("environments") or [], spec).get("dependencies") or []:
                if is_wheel_path(str(dep)):  # a wheel file on the workspace, a volume or DBFS
                    wheels[str(dep)] = str(self.library_file(str(dep), task["task_key"]))
                else:
                    packages.append(dep)
        cluster_env = {}
        if spec.get("new_cluster"):
            cluster_env = cluster_spec(spec["new_cluster"]).spark_env_vars
        elif spec.get("job_cluster_key"):
            jc: dict[str, Any] = next(
                (
                    c["new_cluster"]
                    for c in run["_spec"].get("job_clusters", [])
                    if c["job_cluster_key"] == spec["job_cluster_key"]
                ),
                {},
            )
            cluster_env = cluster_spec(jc).spark_env_vars
        env = dict(cluster_env)
        env.update(
            {
                "DATABRICKS_JOB_ID": str(run.get("job_id", "")),
                "DATABRICKS_RUN_ID": str(run["run_id"]),
                "DATABRICKS_TASK_RUN_ID": str(task["run_id"]),
                "DATABRICKS_TASK_KEY": task["task_key"],
            }
        )
        common = dict(
            task_run_id=task["run_id"],
            output_dir=output_dir,
            env=env,
            pypi_packages=tuple(packages),
            wheel_libraries=wheels,
            timeout_seconds=int(spec.get("timeout_seconds") or 0),
            upstream_task_values=task_values,
        )
        kind = next((k for k in TASK_KINDS if spec.get(k)), None)
        if kind is None:
            kinds = list(TASK_KINDS)
            raise TaskSetupError(
                f"Task {task['task_key']} has no {', '.join(kinds[:-1])} or {kinds[-1]}; other task types are not supported locally."
            )
        return TASK_KINDS[kind](self, TaskToBuild(run, task, spec, params, job_params, refs, env, common))

    # -- what the builders share -------------------------------------------------------------
    @staticmethod
    def uses_git(block: dict, git_source: dict | None, key: str) -> bool:
        try:
            return task_uses_git(block, git_source)
        except GitCheckoutError as e:
            raise TaskSetupError(f"Task {key}: {e}") from None

    def git_checkout(self, run: dict) -> Path:
        """The run's checkout of its git_source; the first call pins the commit for the whole run."""
        declared = run["_spec"]["git_source"]
        shown = run.setdefault("git_source", copy.deepcopy(declared))
        try:
            path, commit = self.git.checkout(run["run_id"], shown)
        except GitCheckoutError as e:
            raise TaskSetupError(str(e)) from None
        shown.setdefault("git_snapshot", {})["used_commit"] = commit
        return path

    def prepare_warehouse(self, dt: dict, warehouse_id: str, key: str, env: dict[str, str]) -> None:
        """A dbt task on a SQL warehouse, as Databricks runs one: the profile is generated (so a
        profiles_directory is refused), the warehouse is started if stopped, and the run-as
        principal's token is injected as DBT_ACCESS_TOKEN (locally: the workspace's token)."""
        if dt.get("profiles_directory"):
            raise TaskSetupError(
                f"Task {key}: dbt_task.profiles_directory can only be specified if no warehouse_id is specified."
            )
        if self.warehouses is None:  # a workspace assembled without the warehouses API has none
            raise TaskSetupError(f"SQL warehouse {warehouse_id} does not exist.")
        try:
            self.warehouses.ensure_started(warehouse_id)
        except WarehouseNotFound as e:
            raise TaskSetupError(e.message) from None
        env["DBT_ACCESS_TOKEN"] = self.warehouses.token

    def library_file(self, path: str, key: str) -> Path:
        """The local file a `whl` library names: a workspace file (`/Workspace/...`), a volume file
        (`/Volumes/...`) or DBFS (`dbfs:/...`, `/dbfs/...`). Whether it exists is the install's concern
        (a missing wheel fails the task as a failed library installation, as on Databricks)."""
        if path.startswith("dbfs:/"):
            return self.resolvers.dbfs_local(path)
        if path == "/dbfs" or path.startswith("/dbfs/"):
            return self.resolvers.dbfs_local("dbfs:" + path[len("/dbfs") :])
        if path.startswith("/Volumes/"):
            local = (self.paths.volumes / path[len("/Volumes/") :]).resolve()
            if local.is_relative_to(self.paths.volumes.resolve()):
                return local
        if path.startswith("/Workspace/"):
            return self.resolvers.workspace_local(path)
        raise TaskSetupError(
            f"Task {key}: library {path!r} is not a path the local workspace can install from: use a workspace "
            "file (/Workspace/...), a volume file (/Volumes/...) or DBFS (dbfs:/...)."
        )

    def git_file(self, t: TaskToBuild, block: dict, path: str, what: str) -> Path | None:
        """The task's file in its Git checkout when `block` takes it from Git; None when it comes
        from the workspace or DBFS instead."""
        if not self.uses_git(block, t.git_source, t.key):
            return None
        found = repo_file(self.git_checkout(t.run), path, ("",))
        if found is None:
            raise TaskSetupError(f"{what} not found: {path} in the Git repository {t.git_url}.")
        return found

    def local_file(self, file: str, key: str) -> Path:
        if file.startswith("dbfs:/"):
            p = self.resolvers.dbfs_local(file)
        elif file.startswith("/"):
            p = self.resolvers.workspace_local(file)
        else:
            raise TaskSetupError(
                f"Task {key}: python_file must be dbfs:/... or an absolute workspace path, got {file!r}"
            )
        if not p.is_file():
            raise TaskSetupError(f"Python file not found: {file}")
        return p


# -- one builder per task kind ---------------------------------------------------------------


def notebook_invocation(b: TaskInvocations, t: TaskToBuild) -> TaskInvocation:
    nt = t.spec["notebook_task"]
    path = nt.get("notebook_path") or ""
    if b.uses_git(nt, t.git_source, t.key):
        checkout = b.git_checkout(t.run)
        notebook_file = repo_file(checkout, path)
        if notebook_file is None:
            raise TaskSetupError(
                f"Notebook not found: {path} in the Git repository {t.git_url} at "
                f"commit {t.run['git_source']['git_snapshot']['used_commit']}."
            )
        t.common["source_root"] = checkout
        source = notebook_file.read_text(encoding="utf-8")
        language = {".r": "R", ".scala": "SCALA", ".sql": "SQL"}.get(notebook_file.suffix.lower())
    else:
        try:
            source = b.resolvers.read_notebook(path)
        except Exception:
            raise TaskSetupError(f"Notebook not found: {path}. Import it into the workspace first.") from None
        language = b.resolvers.notebook_language(path)
    widgets = {k: substitute(str(v), t.refs) for k, v in (nt.get("base_parameters") or {}).items()}
    # runs/get shows the parameters after dynamic value references were resolved.
    t.task["resolved_values"] = {"notebook_task": {"base_parameters": dict(widgets)}}
    widgets.update({k: str(v) for k, v in t.job_params.items()})
    widgets.update({k: str(v) for k, v in (t.params.get("notebook_params") or {}).items()})
    return TaskInvocation(
        kind="notebook",
        notebook_path=path,
        notebook_source=source,
        notebook_language=language,
        widgets=widgets,
        **t.common,
    )


def spark_python_invocation(b: TaskInvocations, t: TaskToBuild) -> TaskInvocation:
    pt = t.spec["spark_python_task"]
    file = pt.get("python_file") or ""
    local = b.git_file(t, pt, file, "Python file") or b.local_file(file, t.key)
    args = t.params.get("python_params")
    if args is None:
        args = [substitute(str(a), t.refs) for a in pt.get("parameters") or []]
    args = [str(a) for a in args]
    t.task["resolved_values"] = {"spark_python_task": {"parameters": list(args)}}
    return TaskInvocation(kind="spark_python", python_file=local, python_parameters=tuple(args), **t.common)


def python_wheel_invocation(b: TaskInvocations, t: TaskToBuild) -> TaskInvocation:
    """A Python wheel task: `package_name`'s entry point `entry_point` runs with sys.argv =
    [package_name, *parameters], or with named parameters as `--key=value`. Job parameters are
    pushed down to a wheel task configured with named (keyword) parameters, over its own, as
    Databricks pushes them to every task with key-value parameters; never to positional ones.
    run-now's python_params / python_named_params override the task's."""
    wt = t.spec["python_wheel_task"]
    package, entry_point = wt.get("package_name") or "", wt.get("entry_point") or ""
    if not package or not entry_point:
        raise TaskSetupError(f"Task {t.key}: python_wheel_task needs package_name and entry_point.")
    positional = t.params.get("python_params")
    if positional is None and wt.get("parameters"):
        positional = [substitute(str(a), t.refs) for a in wt["parameters"]]
    if positional is not None or not (wt.get("named_parameters") or t.params.get("python_named_params")):
        args = [str(a) for a in positional or []]
        t.task["resolved_values"] = {"python_wheel_task": {"parameters": list(args)}}
    else:
        named = {k: substitute(str(v), t.refs) for k, v in (wt.get("named_parameters") or {}).items()}
        named.update({k: str(v) for k, v in (t.params.get("python_named_params") or {}).items()})
        named.update({k: str(v) for k, v in t.job_params.items()})
        t.task["resolved_values"] = {"python_wheel_task": {"named_parameters": dict(named)}}
        args = [f"--{k}={v}" for k, v in named.items()]
    return TaskInvocation(
        kind="python_wheel",
        wheel_package=package,
        wheel_entry_point=entry_point,
        python_parameters=tuple(args),
        **t.common,
    )


def dbt_invocation(b: TaskInvocations, t: TaskToBuild) -> TaskInvocation:
    dt = t.spec["dbt_task"]
    if b.uses_git(dt, t.git_source, t.key):  # a repo-relative project dir ("" is the repo root)
        checkout = b.git_checkout(t.run)
        project = checkout / (dt.get("project_directory") or "")
        if not project.resolve().is_relative_to(checkout.resolve()):
            raise TaskSetupError(f"dbt project directory {dt.get('project_directory')} is outside the Git repository.")
    elif not dt.get("project_directory"):
        raise TaskSetupError(f"Task {t.key}: dbt_task.project_directory is required without a git_source.")
    else:
        project = b.resolvers.workspace_local(dt["project_directory"])
    if not project.is_dir():
        raise TaskSetupError(
            f"dbt project directory not found: {dt['project_directory']}. Sync the project into the workspace first."
        )
    warehouse_id = dt.get("warehouse_id") or None
    if warehouse_id:
        b.prepare_warehouse(dt, warehouse_id, t.key, t.env)
    elif dt.get("catalog"):  # schema without a warehouse is documented as unused, catalog as not allowed
        raise TaskSetupError(f"Task {t.key}: dbt_task.catalog can only be specified if a warehouse_id is specified.")
    profiles = b.resolvers.workspace_local(dt["profiles_directory"]) if dt.get("profiles_directory") else None
    commands = t.params.get("dbt_commands") or dt.get("commands") or []
    return TaskInvocation(
        kind="dbt",
        dbt=DbtInvocation(
            commands=tuple(substitute(c, t.refs) for c in commands),
            project_dir=project,
            profiles_dir=profiles,
            schema=dt.get("schema") if warehouse_id else None,
            catalog=dt.get("catalog"),
            warehouse_id=warehouse_id,
            # what a warehouse's connection details call its hostname: the workspace's, without a scheme
            workspace_host=b.warehouses.host().split("://", 1)[-1] if warehouse_id and b.warehouses else None,
        ),
        **t.common,
    )


_SQL_PARAMETER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


def sql_file_invocation(b: TaskInvocations, t: TaskToBuild) -> TaskInvocation:
    """A SQL file task (`sql_task.file`): the file's statements, separated by `;`, run in order as a
    SQL notebook would on the run's serverless compute (the local warehouse has no Spark). Its
    `{{name}}` parameters are the task's `parameters` over the job's, each written as a SQL string
    literal. Queries, dashboards and alerts are workspace objects the local workspace does not hold."""
    st = t.spec["sql_task"]
    file = st.get("file") or {}
    if not file.get("path"):
        other = next((k for k in ("query", "dashboard", "alert") if st.get(k)), "query")
        raise TaskSetupError(
            f"Task {t.key}: sql_task.{other} is not supported locally (the local workspace has no SQL queries, "
            "dashboards or alerts); use sql_task.file with a .sql file."
        )
    path = str(file["path"])
    local = b.git_file(t, file, path, "SQL file")
    if local is None:
        if not path.startswith("/"):
            raise TaskSetupError(f"Task {t.key}: sql_task.file.path must be an absolute workspace path, got {path!r}.")
        local = b.resolvers.workspace_local(path)
        if not local.is_file():
            raise TaskSetupError(f"SQL file not found: {path}. Upload it to the workspace first.")
    if st.get("warehouse_id") and b.warehouses is not None:  # the warehouse must exist; a stopped one starts
        try:
            b.warehouses.ensure_started(str(st["warehouse_id"]))
        except WarehouseNotFound as e:
            raise TaskSetupError(e.message) from None
    values = {k: str(v) for k, v in t.job_params.items()}
    values.update({k: substitute(str(v), t.refs) for k, v in (st.get("parameters") or {}).items()})
    t.task["resolved_values"] = {"sql_task": {"parameters": dict(values)}}

    def literal(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            return m.group(0)  # a dynamic value reference or a typo: left for Spark to reject, naming it
        return "'" + values[name].replace("\\", "\\\\").replace("'", "\\'") + "'"

    text = _SQL_PARAMETER.sub(literal, local.read_text(encoding="utf-8"))
    return TaskInvocation(
        kind="notebook",
        notebook_path=path,
        notebook_source="-- Databricks notebook source\n" + text,
        notebook_language="SQL",
        **t.common,
    )


# The task settings field that declares a kind of task -> its builder; a task is built by the first it has.
TASK_KINDS: dict[str, Callable[[TaskInvocations, TaskToBuild], TaskInvocation]] = {
    "notebook_task": notebook_invocation,
    "spark_python_task": spark_python_invocation,
    "python_wheel_task": python_wheel_invocation,
    "dbt_task": dbt_invocation,
    "sql_task": sql_file_invocation,
}


def is_wheel_path(requirement: str) -> bool:
    """A serverless environment dependency that names a wheel file rather than a pip requirement."""
    text = requirement.strip()
    return text.endswith(".whl") and text.startswith(("/", "dbfs:/"))
