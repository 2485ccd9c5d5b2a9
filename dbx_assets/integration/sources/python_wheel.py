"""Python wheels as assets: entry points of one Python project (a folder with a pyproject.toml), each
declared as one `python_wheel_task` of the workflow's job, running in the same shared run as the
notebooks and dbt.

At deploy (a materialization; never at definitions load) the project is built with
`uv build --wheel` when its sources changed since the last build (wheel_build.py), uploaded to the
deployment's workspace folder under `wheels/<name>-<source hash>/`, and attached as the task's
library (`libraries: [{"whl": "/Workspace/..."}]`; on serverless, the environment's dependencies).
A source change is a new path: the job spec changes with it, and no cluster keeps an old build.

Databricks runs `entry_point` as the package's entry point of that name (`[project.scripts]` or
another entry-point group), else the function `package_name.entry_point`, with
sys.argv = [package_name, *parameters]. Named parameters arrive as `--key=value`, and Databricks
pushes the job's parameters (partition_key, partition_start, partition_end, dagster_run_id, ...) down
to them: an entry point taking named parameters should accept unknown ones
(`argparse.ArgumentParser.parse_known_args`). In the package, `from databricks.sdk.runtime import
spark, dbutils` works as in a notebook.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask
from dbx_assets.integration.sources.task_assets import (
    OneTaskPerAsset,
    TaskAsset,
    check_placeholders,
    fill_job_parameters,
    fill_placeholders,
    pypi_libraries,
)
from dbx_assets.integration.sources.wheel_build import (
    IGNORED_DIRS,
    BuiltWheel,
    WheelProject,
    build_wheel,
    default_build_dir,
)

WHEELS_FOLDER = "wheels"  # under the workflow's workspace folder, next to notebooks/ and files/
_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PythonWheelAsset(TaskAsset):
    """One entry point of the project's wheel materializing one asset (all `TaskAsset` fields: key,
    deps, group, owners, table, libraries, job_cluster / environment, retries).

    entry_point:      the entry point's name ([project.scripts] or another group), or a function of the
                      package
    package_name:     the package Databricks looks the entry point up in (default: the project's name)
    parameters:       positional sys.argv[1:] ("{catalog}", "{schema}", "{deployment}" are the deploy
                      target's; dynamic value references like "{{job.parameters.partition_key}}" are
                      Databricks'); no job parameters are pushed down to positional parameters
    named_parameters: instead of `parameters`: `--key=value` arguments. The task also gets
                      `deployment`, `catalog` and `schema` (when set) as notebooks do, and Databricks
                      pushes the job's parameters down to them. Used when `parameters` is empty.
    """

    entry_point: str
    package_name: str | None = None
    parameters: Sequence[str] = ()
    named_parameters: Mapping[str, str] = field(default_factory=dict)


class PythonWheelTasks(OneTaskPerAsset[PythonWheelAsset]):
    """The entry points of one Python project, each declared as one asset materialized by one wheel task.

    project_dir: the folder with the project's pyproject.toml (a static [project] name and version)
    build_dir:   where built wheels are kept per source hash (default: ~/.cache/dbx-assets/wheels, or
                 $XDG_CACHE_HOME/dbx-assets/wheels)

    Reads pyproject.toml and hashes the project's files at construction; builds only at deploy.
    """

    what = "Python wheel asset"
    kinds = frozenset({"databricks", "python"})

    def __init__(
        self,
        declarations: Sequence[PythonWheelAsset],
        *,
        project_dir: Path | str,
        build_dir: Path | str | None = None,
    ):
        self.project = WheelProject.read(project_dir)
        super().__init__(declarations, [f"{self._package(d)}:{d.entry_point}" for d in declarations])
        self.build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
        inside = _relative_to(self.build_dir, self.project.project_dir)
        if inside is not None and not (set(inside.parts) & IGNORED_DIRS):
            raise WorkflowDefinitionError(
                f"build_dir {self.build_dir} is inside the wheel project {self.project.project_dir}, so its builds "
                f"would count as sources: put it outside, or in a folder that is not hashed (e.g. dist/)."
            )
        self.last_build: BuiltWheel | None = None  # what the latest files() did (built, or reused a build)
        for d in declarations:
            where = f"Python wheel asset '{d.key}'"
            if not d.entry_point:
                raise WorkflowDefinitionError(f"{where} names no entry_point.")
            if d.parameters and d.named_parameters:
                raise WorkflowDefinitionError(
                    f"{where} declares both parameters and named_parameters; a wheel task takes one kind "
                    "(positional arguments, or --key=value ones)."
                )
            check_placeholders([*d.parameters, *d.named_parameters.values()], where)

    @property
    def wheel_relative_path(self) -> str:
        """Where the wheel is uploaded under the workflow's folder: a new folder per source change."""
        return posixpath.join(
            WHEELS_FOLDER, f"{self.project.distribution}-{self.project.source_hash}", self.project.wheel_name
        )

    def wheel_path(self, target: DeployTarget) -> str:
        """The wheel as a library path: workspace files are installed from /Workspace/..."""
        root = target.workspace_root.rstrip("/")
        if not (root == "/Workspace" or root.startswith("/Workspace/")):
            root = "/Workspace" + root
        return posixpath.join(root, self.wheel_relative_path)

    def _package(self, declaration: PythonWheelAsset) -> str:
        return declaration.package_name or self.project.name

    # -- OneTaskPerAsset ------------------------------------------------------------------------------
    def _settings(self, declaration: PythonWheelAsset, target: DeployTarget) -> dict[str, Any]:
        if target.from_git:
            raise WorkflowDefinitionError(
                f"Python wheel asset '{declaration.key}': a workflow with a git_source uploads no files, but a wheel "
                "task needs its wheel uploaded. Declare the wheel tasks in a workflow without git_source."
            )
        task: dict[str, Any] = {"package_name": self._package(declaration), "entry_point": declaration.entry_point}
        if declaration.parameters:
            task["parameters"] = [fill_placeholders(p, target) for p in declaration.parameters]
        else:  # the deployment's parameters win, as a notebook's widgets
            named = {k: fill_placeholders(str(v), target) for k, v in declaration.named_parameters.items()}
            task["named_parameters"] = {**named, **target.task_parameters}
        return {"python_wheel_task": task}

    def _libraries(self, declaration: PythonWheelAsset, target: DeployTarget) -> list[dict[str, Any]]:
        return [{"whl": self.wheel_path(target)}, *pypi_libraries(declaration.libraries)]

    def _description(self, declaration: PythonWheelAsset) -> str:
        entry = f"{self._package(declaration)}:{declaration.entry_point}"
        return (
            f"{self.project.description} (entry point {entry})"
            if self.project.description
            else f"Databricks Python wheel task {entry}"
        )

    def _code_version(self, declaration: PythonWheelAsset) -> str:
        return self.project.source_hash  # every entry point runs the whole package

    def _metadata(self, declaration: PythonWheelAsset) -> dict[str, Any]:
        return {
            "python_wheel": f"{self.project.name} {self.project.version}",
            "entry_point": f"{self._package(declaration)}:{declaration.entry_point}",
        }

    def files(self) -> dict[str, WorkspaceFile]:
        """The wheel, built now unless a build of the same sources exists (deploy time only)."""
        self.last_build = build_wheel(self.project, self.build_dir)
        if self.last_build.built:
            _log.info("Built %s from %s with uv build", self.last_build.path.name, self.project.project_dir)
        rel = self.wheel_relative_path
        return {rel: WorkspaceFile(rel, self.last_build.path.read_bytes())}

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        """A one-time run has no job parameters: the selection's go into the task itself."""
        wheel_task = dict(task.settings["python_wheel_task"])
        if "named_parameters" in wheel_task:
            wheel_task["named_parameters"] = {**wheel_task["named_parameters"], **selection.parameters}
        else:
            wheel_task["parameters"] = [fill_job_parameters(p, selection.parameters) for p in wheel_task["parameters"]]
        return {"python_wheel_task": wheel_task}


def _relative_to(path: Path, folder: Path) -> Path | None:
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return None
