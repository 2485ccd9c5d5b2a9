"""A Databricks Asset Bundle's jobs as workflows: each bundle job is one `Workflow` (one Databricks job,
a selection one run with `only=`), each of its tasks one asset built by the task source that already
handles its kind:

    notebook_task      -> NotebookTasks       (.py / .sql / .scala / .r SOURCE notebooks, .ipynb)
    spark_python_task  -> PythonFileTasks
    python_wheel_task  -> PythonWheelTasks    (the bundle's `whl` artifact, built with `uv build`)
    dbt_task           -> DbtProjectTasks     (the project must be inside the bundle; its models are the assets)
    sql_task (file)    -> the bundle's task as declared, its file deployed with the workflow
    anything else      -> one asset whose task fails at run, saying dbx_assets does not run that kind

The task key is the bundle's (or `<key_prefix>__<task>` with a key prefix); deps come from
`depends_on`. Job clusters, environments, libraries and parameters come from the bundle's job; the
workflow deploys the job under dbx_assets' deployment naming, so one job spec serves the local
workspace and Databricks.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from dbx_assets.integration.bundles.config import BundleConfig, BundleError, LocalPath, load_bundle
from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import DEFAULT_CLUSTER_SPEC, DEFAULT_JOB_CLUSTER_KEY
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask
from dbx_assets.integration.sources.job_tasks import task_type, upstream_tasks
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.sources.python_file import PythonFileAsset, PythonFileTasks
from dbx_assets.integration.sources.python_wheel import PythonWheelAsset, PythonWheelTasks
from dbx_assets.integration.sources.task_assets import OneTaskPerAsset, TaskAsset
from dbx_assets.integration.workflow.definition import Workflow

BUNDLE_FILES_FOLDER = "bundle"  # sql files and the stubs of unsupported tasks, under the workflow's folder
_NAME_RE = re.compile(r"[^A-Za-z0-9_]")


class DatabricksBundle:
    """A Databricks Asset Bundle (`databricks.yml` and what it includes) for one target.

    path:       the bundle's databricks.yml, or its folder
    target:     a target of the bundle (default: the one marked `default: true`, as the CLI)
    variables:  the CLI's `--var name=value` (complex variables take a dict)
    user_name:  what `${workspace.current_user.userName}` (and `short_name`) stand for; default: this
                machine's login. Definitions load never asks Databricks.
    key_prefix: prefix of every asset key (e.g. ["sales"]); the default is the bare task key, so a
                task's Databricks task key stays the bundle's
    group:      the assets' group (default: the bundle's name)

    `workflow(job)` is the bundle job as a `Workflow`; `workflows()` all of them. Reads every file at
    construction: a bad YAML file, an unknown variable or target, a missing notebook raise here,
    naming the file, the key and the fix.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        target: str | None = None,
        variables: Mapping[str, Any] | None = None,
        user_name: str | None = None,
        key_prefix: Sequence[str] = (),
        group: str | None = None,
    ):
        self.config: BundleConfig = load_bundle(path, target=target, variables=variables, user_name=user_name)
        self.key_prefix = tuple(key_prefix)
        self.group = group or _NAME_RE.sub("_", self.config.name)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def job_keys(self) -> list[str]:
        return list(self.config.jobs)

    def job_settings(self, job: str) -> dict[str, Any]:
        """The bundle job's settings for this target, as the CLI would deploy them (mode applied,
        references resolved, local paths as `LocalPath`)."""
        return self.config.jobs[self._job_key(job)]

    def workflows(self, **workflow_options: Any) -> list[Workflow]:
        return [self.workflow(job, **workflow_options) for job in self.config.jobs]

    def workflow(self, job: str | None = None, **workflow_options: Any) -> Workflow:
        """The bundle job `job` (its key under resources.jobs; optional when the bundle has one job) as a
        Workflow named after the job key. `workflow_options` are the Workflow's own (timeout_seconds,
        external_deps, dbu_rates, ...), over what the bundle's job says."""
        key = self._job_key(job)
        return _JobBuilder(self, key).workflow(dict(workflow_options))

    def _job_key(self, job: str | None) -> str:
        jobs = self.config.jobs
        if job is None:
            if len(jobs) != 1:
                raise BundleError(
                    f"{self.config.file}: the bundle has {len(jobs)} jobs ({', '.join(jobs) or 'none'}); "
                    "name one: bundle.workflow('<job key>')."
                )
            return next(iter(jobs))
        if job not in jobs:
            raise BundleError(
                f"{self.config.file}: the bundle has no job '{job}' under resources.jobs "
                f"(jobs: {', '.join(jobs) or 'none'})."
            )
        return job


class _JobBuilder:
    def __init__(self, bundle: DatabricksBundle, key: str):
        self.bundle = bundle
        self.config = bundle.config
        self.key = key
        self.job = bundle.config.jobs[key]
        self.file = bundle.config.job_files[key]
        self.where = f"{self.file}: resources.jobs.{key}"

    def _asset_key(self, task_key: str) -> dg.AssetKey:
        return dg.AssetKey([*self.bundle.key_prefix, task_key])

    def _path(self, value: Any, where: str, *, must_exist: bool = True) -> Path:
        if not isinstance(value, LocalPath):
            raise BundleError(
                f"{self.where}.{where} is {value!r}: dbx_assets deploys the bundle's own files, so the path must be "
                "relative to the YAML file (e.g. ../src/notebook.ipynb), not a workspace path."
            )
        try:
            value.path.relative_to(self.config.root)
        except ValueError:
            raise BundleError(
                f"{value.file}: {where} '{value.declared}' points outside the bundle root {self.config.root}; "
                "keep the bundle's files inside its folder."
            ) from None
        if must_exist and not value.path.exists():
            raise BundleError(f"{value.file}: {where} '{value.declared}' does not exist ({value.path}). Fix the path.")
        return value.path

    def workflow(self, options: dict[str, Any]) -> Workflow:
        tasks = list(self.job.get("tasks") or [])
        if not tasks:
            raise BundleError(f"{self.where} has no tasks.")
        kinds = {t["task_key"]: self._kind(t) for t in tasks}
        # asset keys per task (a dbt task: its models), for depends_on
        dbt_sources: dict[str, Any] = {}
        produced: dict[str, list[dg.AssetKey]] = {}
        for t in tasks:
            if kinds[t["task_key"]] == "dbt_task":
                dbt_sources[t["task_key"]] = self._dbt(t)
                produced[t["task_key"]] = [s.key for s in dbt_sources[t["task_key"]].asset_specs()]
            else:
                produced[t["task_key"]] = [self._asset_key(t["task_key"])]

        def deps(t: Mapping[str, Any]) -> list[str]:
            upstream = upstream_tasks(t, produced, self.where, BundleError)
            return [k.to_user_string() for task_key in upstream for k in produced[task_key]]

        job_params = {p["name"]: str(p.get("default", "")) for p in self.job.get("parameters") or []}
        common = {"group": self.bundle.group}
        notebooks, files, wheels, raw = [], [], [], []
        for t in tasks:
            key, kind = t["task_key"], kinds[t["task_key"]]
            base = dict(
                key=self._asset_key(key).to_user_string(),
                deps=deps(t),
                libraries=self._libraries(t),
                job_cluster=t.get("job_cluster_key"),
                environment=t.get("environment_key"),
                max_retries=t.get("max_retries"),
                min_retry_interval_millis=t.get("min_retry_interval_millis"),
                retry_on_timeout=t.get("retry_on_timeout"),
                **common,
            )
            if kind == "notebook_task":
                nt = t["notebook_task"]
                path = self._path(nt.get("notebook_path"), f"tasks[{key}].notebook_task.notebook_path")
                params = {k: str(v) for k, v in (nt.get("base_parameters") or {}).items()}  # job params reach it too
                notebooks.append(
                    NotebookAsset(notebook=path.relative_to(self.config.root).as_posix(), params=params, **base)
                )
            elif kind == "spark_python_task":
                pt = t["spark_python_task"]
                path = self._path(pt.get("python_file"), f"tasks[{key}].spark_python_task.python_file")
                files.append(
                    PythonFileAsset(
                        python_file=path.relative_to(self.config.root).as_posix(),
                        parameters=[str(p) for p in pt.get("parameters") or []],
                        **base,
                    )
                )
            elif kind == "python_wheel_task":
                wt = t["python_wheel_task"]
                wheels.append(
                    PythonWheelAsset(
                        entry_point=wt["entry_point"],
                        package_name=wt.get("package_name"),
                        parameters=[str(p) for p in wt.get("parameters") or []],
                        named_parameters={k: str(v) for k, v in (wt.get("named_parameters") or {}).items()},
                        **base,
                    )
                )
            elif kind == "dbt_task":
                _depend_on(dbt_sources[key], base["deps"])
            else:
                raw.append(_RawTask(task=t, kind=kind, description=self._note(t, kind), **base))

        sources: list[Any] = []
        if notebooks:
            sources.append(
                NotebookTasks(notebooks, notebooks_dir=self.config.root, include=_synced_python(self.config.root))
            )
        if files:
            sources.append(PythonFileTasks(files, files_dir=self.config.root))
        if wheels:
            sources.append(PythonWheelTasks(wheels, project_dir=self._wheel_project()))
        sources += dbt_sources.values()
        if raw:
            sources.append(_BundleTasks(raw, self.config.root))

        job_clusters = {c["job_cluster_key"]: c.get("new_cluster") or {} for c in self.job.get("job_clusters") or []}
        environments = {
            e["environment_key"]: self._environment(e.get("spec") or {}, e["environment_key"])
            for e in self.job.get("environments") or []
        }
        settings: dict[str, Any] = {
            "name": _NAME_RE.sub("_", self.key),
            "sources": sources,
            "job_clusters": job_clusters or {DEFAULT_JOB_CLUSTER_KEY: DEFAULT_CLUSTER_SPEC},
            "default_job_cluster": next(iter(job_clusters), DEFAULT_JOB_CLUSTER_KEY),
            "environments": environments,
            "parameters": job_params,
        }
        if self.job.get("timeout_seconds") is not None:
            settings["timeout_seconds"] = int(self.job["timeout_seconds"])
        if self.job.get("max_concurrent_runs") is not None:
            settings["max_concurrent_runs"] = int(self.job["max_concurrent_runs"])
        if self.job.get("performance_target"):
            settings["performance_target"] = self.job["performance_target"]
        settings.update(options)
        return Workflow(**settings)

    # -- per task ----------------------------------------------------------------------------------
    def _kind(self, task: Mapping[str, Any]) -> str:
        kind = task_type(task, self.where, BundleError)
        if kind == "sql_task" and "file" not in task["sql_task"]:
            return "sql_task_other"  # a query, alert or dashboard: kept, but not run by dbx_assets locally
        return kind

    def _note(self, task: Mapping[str, Any], kind: str) -> str:
        if kind == "sql_task":
            return (
                f"SQL file task '{task['task_key']}' of bundle job {self.key}: runs on a SQL warehouse "
                "(the local workspace does not run SQL file tasks)."
            )
        return (
            f"Bundle task '{task['task_key']}' ({kind}) of job {self.key} is not run by dbx_assets: "
            f"materializing it fails. Run it with `databricks bundle run`, or replace it with a notebook."
        )

    def _libraries(self, task: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for lib in task.get("libraries") or []:
            if "pypi" in lib and not lib["pypi"].get("repo"):
                out.append(str(lib["pypi"]["package"]))
            elif isinstance(lib.get("whl"), LocalPath) and lib["whl"].path.suffix == ".whl":
                continue  # the bundle's own wheel artifact: PythonWheelTasks builds and attaches it
            else:
                raise BundleError(
                    f"{self.where}: task '{task['task_key']}' library {lib!r} is not supported; dbx_assets installs "
                    "PyPI packages and the bundle's own wheel."
                )
        return out

    def _environment(self, spec: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The bundle's environment, without the bundle's local wheel paths (PythonWheelTasks builds
        and adds its wheel) and editable installs of the bundle."""
        deps = []
        for d in spec.get("dependencies") or []:
            if isinstance(d, LocalPath) or (isinstance(d, str) and d.startswith(("--editable", "-e "))):
                continue
            deps.append(d)
        return {**spec, "dependencies": deps}

    def _wheel_project(self) -> Path:
        for name, artifact in (self.config.artifacts or {}).items():
            if (artifact or {}).get("type", "whl") == "whl":
                path = artifact.get("path") or "."
                project = (self.config.root / path).resolve()
                if not (project / "pyproject.toml").exists():
                    raise BundleError(
                        f"{self.config.file}: artifacts.{name} builds a wheel from {project}, which has no "
                        "pyproject.toml; dbx_assets builds wheels with `uv build` from a pyproject.toml."
                    )
                return project
        if (self.config.root / "pyproject.toml").exists():
            return self.config.root
        raise BundleError(
            f"{self.where} has a python_wheel_task but the bundle declares no `whl` artifact and has no "
            "pyproject.toml at its root. Declare `artifacts: {<name>: {type: whl, path: <project>}}`."
        )

    def _dbt(self, task: Mapping[str, Any]) -> Any:
        """The dbt project of a dbt_task, inside the bundle, read (and parsed when its manifest is
        stale) with the task's profiles_directory and the bundle target as dbt target, as the
        template's commands (`--target=${bundle.target}`) do."""
        from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

        from dbx_assets.integration.dbt.source import DbtProjectTasks

        dt = task["dbt_task"]
        where = f"tasks[{task['task_key']}].dbt_task"
        declared = dt.get("project_directory") or LocalPath(self.config.root, ".", self.file)
        project_dir = self._path(declared, f"{where}.project_directory")
        profiles_dir = project_dir
        if dt.get("profiles_directory"):  # relative to the project, as Databricks reads it
            profiles_dir = (project_dir / str(dt["profiles_directory"])).resolve()
            if not (profiles_dir / "profiles.yml").exists():
                raise BundleError(
                    f"{self.file}: {where}.profiles_directory '{dt['profiles_directory']}' has no profiles.yml "
                    f"({profiles_dir}). Fix the path (it is relative to the project directory)."
                )
        project = DbtProject(project_dir, target_path="target", profiles_dir=profiles_dir, target=self.config.target)
        commands = [str(c) for c in dt.get("commands") or []]
        # The task's tests become asset checks only when its commands run them (`dbt test`, `dbt build`):
        # a template running `dbt run` alone does not gate its models on its tests.
        runs_tests = any(re.search(r"\bdbt\s+(?:test|build)\b", c) for c in commands)
        dbt = DbtProjectTasks(
            project,
            dagster_dbt_translator=None
            if runs_tests
            else DagsterDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=False)),
            dbt_vars=_command_vars(commands, where),
            task_key=task["task_key"],
            schema=str(dt.get("schema") or "default"),
            job_cluster=task.get("job_cluster_key"),
            environment=task.get("environment_key"),
        )
        if not dt.get("schema"):  # the schema the task's profile gives the models (dbt_sql: the dev schema var)
            dbt.schema = _models_schema(dbt.manifest) or dbt.schema
        return dbt


# -- sql files and unsupported tasks -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _RawTask(TaskAsset):
    task: Mapping[str, Any] = field(default_factory=dict)
    kind: str = ""


_STUB = '''"""Stands for a bundle task dbx_assets does not run."""
raise RuntimeError({note!r})
'''


class _BundleTasks(OneTaskPerAsset[_RawTask]):
    """A bundle's SQL file tasks (kept as declared, their file deployed with the workflow) and its
    tasks of kinds dbx_assets does not run (a Python stub that fails with the reason, so the asset
    shows in the graph, its downstream tasks wait on it, and materializing it says why it failed)."""

    what = "bundle task"
    kinds = frozenset({"databricks", "bundle"})

    def __init__(self, declarations: Sequence[_RawTask], root: Path):
        super().__init__(declarations, [d.key for d in declarations])
        self.root = root
        self._files: dict[str, bytes] = {}
        for d in declarations:
            if d.kind == "sql_task":
                self._files[self._rel(d)] = Path(str(d.task["sql_task"]["file"]["path"])).read_bytes()
            else:
                self._files[self._rel(d)] = _STUB.format(note=d.description).encode()
        self.needs_sql_warehouse = any(d.kind == "sql_task" for d in declarations)

    def _rel(self, d: _RawTask) -> str:
        if d.kind == "sql_task":
            src = Path(str(d.task["sql_task"]["file"]["path"])).relative_to(self.root).as_posix()
            return posixpath.join(BUNDLE_FILES_FOLDER, src)
        return posixpath.join(BUNDLE_FILES_FOLDER, "unsupported", f"{d.task_key}.py")

    def _settings(self, d: _RawTask, target: DeployTarget) -> dict[str, Any]:
        path = posixpath.join(target.workspace_root, self._rel(d))
        if d.kind == "sql_task":
            sql = dict(d.task["sql_task"])
            sql["file"] = {**sql["file"], "path": path, "source": "WORKSPACE"}
            sql["warehouse_id"] = target.sql_warehouse_id or sql.get("warehouse_id")
            return {"sql_task": sql}
        return {"spark_python_task": {"python_file": path, "source": "WORKSPACE"}}

    def _description(self, d: _RawTask) -> str:
        return d.description or ""

    def _code_version(self, d: _RawTask) -> str:
        return hashlib.sha256(self._files[self._rel(d)]).hexdigest()[:16]

    def _metadata(self, d: _RawTask) -> dict[str, Any]:
        declared = {k: v for k, v in d.task.items() if k == d.kind}
        return {"bundle_task_type": d.kind, "bundle_task": dg.MetadataValue.json(_jsonable(declared))}

    def files(self) -> dict[str, WorkspaceFile]:
        return {rel: WorkspaceFile(rel, content) for rel, content in self._files.items()}

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        return dict(task.settings)


def _models_schema(manifest: Mapping[str, Any]) -> str | None:
    """The schema most of the project's models were parsed into (their profile target's schema)."""
    schemas = Counter(
        str(n["schema"]) for n in (manifest.get("nodes") or {}).values() if n.get("resource_type") == "model"
    )
    return schemas.most_common(1)[0][0] if schemas else None


def _command_vars(commands: Sequence[Any], where: str) -> dict[str, Any]:
    """The `--vars` of a dbt task's commands (the template's `dbt run --vars "{ dev_schema: ... }"`),
    merged in order: the project is parsed and built with them, as those commands would."""
    merged: dict[str, Any] = {}
    for command in commands:
        try:
            words = shlex.split(str(command))
        except ValueError as exc:
            raise BundleError(f"{where}.commands: {command!r} does not parse as a command line ({exc}).") from None
        for i, word in enumerate(words):
            text = words[i + 1] if word == "--vars" and i + 1 < len(words) else None
            if word.startswith("--vars="):
                text = word.removeprefix("--vars=")
            if text is None:
                continue
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = None
            if not isinstance(value, dict):
                raise BundleError(f"{where}.commands: --vars {text!r} of {command!r} is not a YAML mapping.")
            merged.update(value)
    return merged


# folders `databricks bundle deploy` would sync but that hold no code a task imports (build output,
# virtualenvs, dbt's own output)
_NOT_SYNCED = frozenset({"dist", "build", "target", "logs", "dbt_packages", "node_modules", "venv", "fixtures"})


def _synced_python(root: Path) -> list[str]:
    """Globs of the bundle's Python modules, which the CLI syncs to the workspace with its notebooks (a
    template's notebook does `sys.path.append("../src")` and imports the project's package)."""
    return [
        f"{child.name}/**/*.py"
        for child in sorted(root.iterdir())
        if child.is_dir() and not child.name.startswith((".", "_")) and child.name not in _NOT_SYNCED
    ]


def _depend_on(dbt: Any, upstream: Sequence[str]) -> None:
    """A dbt task's `depends_on`: its root models (those reading no other model) depend on the upstream
    tasks' assets, so the job keeps the edge (DbtProjectTasks derives its task's deps from its specs)."""
    if not upstream:
        return
    extra = [dg.AssetKey.from_user_string(k) for k in upstream]
    models = {spec.key for spec in dbt.specs}
    dbt.specs = [
        spec if any(d.asset_key in models for d in spec.deps) else spec.merge_attributes(deps=extra)
        for spec in dbt.specs
    ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, LocalPath):
        return value.declared
    return value
