"""The contract between the server (engine/scheduler.py, engine/clusters.py) and the cluster runtime.

The server decides *what* runs (jobs, runs, task ordering, parameters); the cluster
runtime decides *how* it runs on local Spark. They meet only through these types,
so each side can be read and tested alone. Nothing here imports Spark or Dagster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TaskKind = Literal["notebook", "spark_python", "python_wheel", "dbt"]
TaskResultState = Literal["SUCCESS", "FAILED", "CANCELED", "TIMEDOUT"]


@dataclass(frozen=True)
class StoragePaths:
    """Where a workspace keeps everything on disk; all of it lives under one state dir."""

    state_dir: Path

    @property
    def workspace(self) -> Path:  # workspace objects (notebooks, files)
        return self.state_dir / "workspace"

    @property
    def dbfs(self) -> Path:  # dbfs:/x  <->  <dbfs>/x
        return self.state_dir / "dbfs"

    @property
    def volumes(self) -> Path:  # /Volumes/c/s/v/x  <->  <volumes>/c/s/v/x
        return self.state_dir / "volumes"

    @property
    def warehouse(self) -> Path:  # spark.sql.warehouse.dir shared by every cluster
        return self.state_dir / "warehouse"

    @property
    def clusters(self) -> Path:  # per-cluster logs and installed libraries
        return self.state_dir / "clusters"

    def cluster_libraries(self, cluster_id: str) -> Path:  # pypi libraries installed on one cluster
        return self.clusters / cluster_id / "site-packages"

    @property
    def library_cache(self) -> Path:  # download cache shared by every cluster's library installs
        return self.state_dir / "library_cache"

    @property
    def secrets(self) -> Path:  # secret scopes and values (dir 0700, file 0600): secret_store.py
        return self.state_dir / "secrets"

    @property
    def task_runs(self) -> Path:  # per-task-run output dirs
        return self.state_dir / "task_runs"

    def ensure(self) -> StoragePaths:
        for p in (
            self.workspace,
            self.dbfs,
            self.volumes,
            self.warehouse,
            self.clusters,
            self.task_runs,
            self.library_cache,
        ):
            p.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class ClusterSpec:
    """The parts of a Databricks cluster spec that mean something locally."""

    spark_conf: dict[str, str] = field(default_factory=dict)
    spark_env_vars: dict[str, str] = field(default_factory=dict)
    # pypi requirements from the cluster's `libraries: [{"pypi": {"package": ...}}]`; installed like task libraries
    pypi_packages: tuple[str, ...] = ()
    num_workers: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DbtInvocation:
    """A dbt task. With `warehouse_id` the runtime generates the profile (as Databricks does:
    the project's profiles.yml is not used) and `schema`/`catalog` say where models land;
    without it dbt reads profiles.yml from `profiles_dir` (None: the project dir)."""

    commands: tuple[str, ...]  # e.g. ("dbt deps", "dbt build --select a b")
    project_dir: Path  # local directory holding the synced project (materialized from workspace files)
    profiles_dir: Path | None  # None: the project dir
    schema: str | None = None
    catalog: str | None = None
    warehouse_id: str | None = None
    # host[:port] of the workspace, for the generated profile's `host` (the connector never dials it)
    workspace_host: str | None = None


@dataclass(frozen=True)
class TaskInvocation:
    task_run_id: int
    kind: TaskKind
    output_dir: Path  # the runtime writes outcome + logs + dbt artifacts here
    # notebook: source text (Databricks SOURCE format, or IPYNB JSON) and its workspace path
    notebook_path: str | None = None
    notebook_source: str | None = None
    # PYTHON, SQL, SCALA or R as the workspace knows it (None: read from the source's header or metadata)
    notebook_language: str | None = None
    # widget values, already merged (base_parameters < job/notebook params)
    widgets: dict[str, str] = field(default_factory=dict)
    # spark_python_task: a local file path (already resolved from workspace or dbfs:/) and argv
    # (python_wheel_task: its argv after the package name, named parameters already as --key=value)
    python_file: Path | None = None
    python_parameters: tuple[str, ...] = ()
    # python_wheel_task: the package whose entry point runs (its wheel is one of `wheel_libraries`)
    wheel_package: str | None = None
    wheel_entry_point: str | None = None
    dbt: DbtInvocation | None = None
    # spark_env_vars of the cluster plus per-task additions
    env: dict[str, str] = field(default_factory=dict)
    # pypi requirements from the task's `libraries`; the runtime installs them on the cluster
    # (runtime/libraries.py) and fails the task with Databricks' message if one cannot be installed
    pypi_packages: tuple[str, ...] = ()
    # `whl` libraries of the task (and wheel paths among its environment's dependencies): the API
    # path as declared -> the local file it names; installed like pypi libraries
    wheel_libraries: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0  # 0: none; the server enforces it by calling cancel()
    # task values (dbutils.jobs.taskValues) of the run's finished tasks: task_key -> key -> JSON value
    upstream_task_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a Git source's checkout: notebook_path (and %run paths) are relative to it; None: the workspace
    source_root: Path | None = None


@dataclass
class TaskOutcome:
    result_state: TaskResultState
    state_message: str = ""
    notebook_result: str | None = None  # dbutils.notebook.exit(value)
    notebook_result_truncated: bool = False
    error: str | None = None  # one line: "ValueError: bad input"
    error_trace: str | None = None  # the full traceback text
    logs: str = ""  # captured stdout/stderr (tail if huge)
    logs_truncated: bool = False
    dbt_artifacts_dir: Path | None = None  # holds run_results.json, manifest.json after a dbt task
    task_values: dict[str, Any] = field(default_factory=dict)  # what the task set with dbutils.jobs.taskValues


class ClusterStartError(RuntimeError):
    """A cluster could not start; the message becomes the run's state_message / termination reason."""
