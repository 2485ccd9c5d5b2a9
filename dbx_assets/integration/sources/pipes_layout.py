"""Where each task's Pipes context and messages live, and how a task learns it.

The job spec is deployed once and hashed, so it cannot hold per-run values. Each pipes-enabled
task gets one static base parameter, `dagster_pipes_channel`, whose value is the task's folder as
the notebook sees it (`/dbfs/...` or `/Volumes/...`) with the Dagster run id left as Databricks'
dynamic value reference `{{job.parameters.dagster_run_id}}`: Databricks fills it in from the run's
job parameters. The step reads the same base parameter back from the job spec, so the folder the
notebook writes to and the folder the step reads cannot disagree.

It lives with the task sources because a source declares the channel in its task's settings; the
step's side (`integration.pipes`) builds on sources and reads it back from there.

    <root>/<dagster_run_id>/<task_key>/context.json   written by the step before the run starts
    <root>/<dagster_run_id>/<task_key>/messages/N.json written by dagster_pipes' message writer
"""

from __future__ import annotations

import importlib.metadata
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbx_assets.integration.jobs.model import DAGSTER_RUN_PARAMETER, WorkflowDefinitionError

CHANNEL_PARAMETER = "dagster_pipes_channel"
RUN_ID_REFERENCE = "{{job.parameters." + DAGSTER_RUN_PARAMETER + "}}"
DEFAULT_PIPES_ROOT = "dbfs:/tmp/dbx_assets/pipes"
CONTEXT_FILE = "context.json"
MESSAGES_DIR = "messages"


def dagster_pipes_requirement() -> str:
    """The task library a pipes-enabled task installs: the dagster-pipes this code location runs
    with, so both sides of the protocol are the same version."""
    return f"dagster-pipes=={importlib.metadata.version('dagster-pipes')}"


@dataclass(frozen=True)
class PipesLocation:
    """Where pipes channels live: a DBFS folder (`dbfs:/...`) or a Unity Catalog volume folder
    (`/Volumes/<catalog>/<schema>/<volume>/...`)."""

    root: str = DEFAULT_PIPES_ROOT

    def __post_init__(self) -> None:
        root = self.root.rstrip("/")
        on_dbfs = root.startswith("dbfs:/") and len(root) > len("dbfs:/")
        on_volume = root.startswith("/Volumes/") and len(root.split("/")[2:]) >= 3  # catalog/schema/volume
        if not (on_dbfs or on_volume):
            raise WorkflowDefinitionError(
                f"Pipes root '{self.root}' is neither a DBFS folder nor a Unity Catalog volume folder. Use "
                f"'dbfs:/some/folder' (default {DEFAULT_PIPES_ROOT}) or '/Volumes/<catalog>/<schema>/<volume>/folder'."
            )
        object.__setattr__(self, "root", root)

    @property
    def on_volume(self) -> bool:
        return self.root.startswith("/Volumes/")

    def channel_parameter(self, task_key: str) -> str:
        """The static base parameter value: the task's folder as the notebook sees it."""
        return posixpath.join(mounted_path(self.root), RUN_ID_REFERENCE, task_key)


def mounted_path(api_path: str) -> str:
    """`dbfs:/x` as a notebook opens it (`/dbfs/x`); volume paths are the same on both sides."""
    return "/dbfs/" + api_path[len("dbfs:/") :].lstrip("/") if api_path.startswith("dbfs:/") else api_path


def api_path(mounted: str) -> str:
    """The reverse of `mounted_path`: the path the DBFS or Files API takes."""
    return "dbfs:/" + mounted[len("/dbfs/") :] if mounted.startswith("/dbfs/") else mounted


@dataclass(frozen=True)
class TaskChannel:
    """One task's folder for one Dagster run, as API paths."""

    task_key: str
    folder: str

    @property
    def context_path(self) -> str:
        return posixpath.join(self.folder, CONTEXT_FILE)

    @property
    def messages_dir(self) -> str:
        return posixpath.join(self.folder, MESSAGES_DIR)

    @property
    def on_volume(self) -> bool:
        return self.folder.startswith("/Volumes/")


def channel_parameter_of(settings: Mapping[str, Any]) -> str | None:
    """The channel base parameter of a job task's settings, whatever its task type (a
    `notebook_task` today; any `*_task` block with `base_parameters`)."""
    for block_name, block in settings.items():
        if block_name.endswith("_task") and isinstance(block, Mapping):
            value = (block.get("base_parameters") or {}).get(CHANNEL_PARAMETER)
            if isinstance(value, str):
                return value
    return None


def task_channel(task_key: str, parameter: str, dagster_run_id: str) -> TaskChannel:
    """The folder a task writes to in the run whose `dagster_run_id` job parameter is given."""
    if not dagster_run_id or "/" in dagster_run_id:
        raise ValueError(f"Not a Dagster run id: {dagster_run_id!r}")
    return TaskChannel(task_key, api_path(parameter.replace(RUN_ID_REFERENCE, dagster_run_id)))
