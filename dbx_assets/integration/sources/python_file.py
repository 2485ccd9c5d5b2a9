"""Python files as assets: each declared file is one `spark_python_task` of the workflow's job,
deployed with the workflow as a workspace file (not a notebook) and run with its parameters as
`sys.argv`, in the same shared run as the notebooks and dbt.

In the file, `from databricks.sdk.runtime import spark, dbutils, display` works as in a notebook
(on Databricks and on the local workspace); `SparkSession.builder.getOrCreate()` is the cluster's
session. A non-zero exit or an uncaught exception fails the task and the asset, with the exception's
line as the error; what the file prints is the task's log (runs/get-output `logs`).
"""

from __future__ import annotations

import ast
import hashlib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbx_assets.integration.jobs.deploy import WorkspaceFile
from dbx_assets.integration.jobs.model import WorkflowDefinitionError
from dbx_assets.integration.sources.base import DeployTarget, Selection, SourceTask
from dbx_assets.integration.sources.notebook_file import NOTEBOOK_HEADER
from dbx_assets.integration.sources.task_assets import (
    OneTaskPerAsset,
    TaskAsset,
    check_placeholders,
    fill_job_parameters,
    fill_placeholders,
)

FILES_FOLDER = "files"  # under the workflow's workspace folder, next to notebooks/


@dataclass(frozen=True, kw_only=True)
class PythonFileAsset(TaskAsset):
    """One Python file materializing one asset (all `TaskAsset` fields: key, deps, group, owners,
    table, libraries, job_cluster / environment, retries).

    python_file: the file in the files folder, e.g. "jobs/load_orders.py"
    parameters:  its sys.argv[1:]. "{catalog}", "{schema}" and "{deployment}" are the deploy target's
                 ("" for one it does not name); Databricks resolves dynamic value references such as
                 "{{job.parameters.partition_key}}" or "{{job.run_id}}" (job parameters are not pushed
                 down to a Python file: reference the ones it needs).
    """

    python_file: str
    parameters: Sequence[str] = ()

    @property
    def workspace_relative_path(self) -> str:
        """Where it is deployed under the workflow's folder (a file keeps its name and extension)."""
        return posixpath.join(FILES_FOLDER, posixpath.normpath(self.python_file))


class PythonFileTasks(OneTaskPerAsset[PythonFileAsset]):
    """The Python files of one folder, each declared as one asset materialized by one Python task.

    include: more files of the folder (globs, e.g. "lib/**/*.py") deployed next to the declared ones,
             e.g. the modules they import: a file's folder is first on its sys.path, as on Databricks.
             They are part of every declared file's code version.

    Reads every file at construction: a missing one, a syntax error, or a notebook declared as a file
    raises at definitions load, naming the file and the fix.
    """

    what = "Python file asset"
    kinds = frozenset({"databricks", "python"})

    def __init__(self, declarations: Sequence[PythonFileAsset], *, files_dir: Path | str, include: Sequence[str] = ()):
        super().__init__(declarations, [d.python_file for d in declarations])
        self.files_dir = Path(files_dir)
        self._sources = {d.python_file: _read_python_file(self.files_dir, d.python_file) for d in declarations}
        self._included: dict[str, bytes] = {}
        for pattern in include:
            for path in sorted(self.files_dir.glob(pattern)):
                rel = path.relative_to(self.files_dir).as_posix()
                if path.is_file() and rel not in self._sources and "__pycache__" not in path.parts:
                    self._included[rel] = path.read_bytes()
                    if path.suffix == ".py":
                        _check_not_a_notebook(path, self._included[rel].decode("utf-8", "replace"))
        for d in declarations:
            check_placeholders(d.parameters, f"Python file asset '{d.key}'")

    # -- OneTaskPerAsset ------------------------------------------------------------------------------
    def _settings(self, declaration: PythonFileAsset, target: DeployTarget) -> dict[str, Any]:
        if target.from_git:  # the job's git_source: a path relative to the repository
            path = _repo_relative(self.files_dir, declaration.python_file)
        else:
            path = posixpath.join(target.workspace_root, declaration.workspace_relative_path)
        return {
            "spark_python_task": {
                "python_file": path,
                "parameters": [fill_placeholders(p, target) for p in declaration.parameters],
                "source": "GIT" if target.from_git else "WORKSPACE",
            }
        }

    def _description(self, declaration: PythonFileAsset) -> str:
        docstring = ast.get_docstring(ast.parse(self._sources[declaration.python_file]))
        return docstring or f"Databricks Python file {declaration.python_file}"

    def _code_version(self, declaration: PythonFileAsset) -> str:
        """Changes when the file or a file deployed with it changes."""
        digest = hashlib.sha256(self._sources[declaration.python_file].encode())
        for rel, content in sorted(self._included.items()):
            digest.update(f"\0{rel}\0".encode() + content)
        return digest.hexdigest()[:16]

    def _metadata(self, declaration: PythonFileAsset) -> dict[str, Any]:
        return {"python_file": declaration.python_file}

    def files(self) -> dict[str, WorkspaceFile]:
        files = {
            d.workspace_relative_path: WorkspaceFile(d.workspace_relative_path, self._sources[d.python_file].encode())
            for d in self._declarations
        }
        for rel, content in self._included.items():
            path = posixpath.join(FILES_FOLDER, rel)
            files.setdefault(path, WorkspaceFile(path, content))
        return files

    def submit_settings(self, task: SourceTask, selection: Selection, target: DeployTarget) -> dict[str, Any]:
        python_task = dict(task.settings["spark_python_task"])
        python_task["parameters"] = [fill_job_parameters(p, selection.parameters) for p in python_task["parameters"]]
        return {"spark_python_task": python_task}


def _read_python_file(folder: Path, rel: str) -> str:
    if posixpath.isabs(rel) or posixpath.normpath(rel).startswith(".."):
        raise WorkflowDefinitionError(
            f"Python file {rel!r} is outside the files folder {folder}: declare it by its path inside that folder."
        )
    path = folder / rel
    if not path.is_file():
        raise WorkflowDefinitionError(
            f"Python file {path} does not exist: declare files relative to the files folder {folder}."
        )
    text = path.read_text(encoding="utf-8")
    try:
        ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise WorkflowDefinitionError(f"Python file {path} does not parse: line {exc.lineno}: {exc.msg}.") from None
    _check_not_a_notebook(path, text)
    return text


def _check_not_a_notebook(path: Path, text: str) -> None:
    """Databricks imports a file that starts with the notebook header as a notebook (dropping `.py`)."""
    if text.lstrip("\ufeff").startswith(NOTEBOOK_HEADER):
        raise WorkflowDefinitionError(
            f"{path} is a Databricks notebook (it starts with '{NOTEBOOK_HEADER}'): declare it as a NotebookAsset, "
            "or remove the header to run it as a Python file."
        )


def _repo_relative(folder: Path, rel: str) -> str:
    """The file's path in the Git repository holding the files folder."""
    resolved = folder.resolve()
    root = next((p for p in (resolved, *resolved.parents) if (p / ".git").exists()), None)
    if root is None:
        raise WorkflowDefinitionError(
            f"The workflow deploys from a Git source, but the Python files folder {folder} is not inside a Git "
            "repository (no .git above it)."
        )
    return (resolved / rel).relative_to(root).as_posix()
