"""Main of a task process: attach to the cluster JVM, run one notebook / Python file / Python
wheel entry point / dbt task, write its TaskOutcome to output_dir/outcome.json (logs are this
process's captured stdout/stderr, read by the server side: runs/get-output's `logs`).

Notebooks, Python files and wheels get one user namespace (spark, dbutils, display, ...): a
notebook's globals, and what `from databricks.sdk.runtime import spark, dbutils, display` returns
in all three, through the runtime's `dbruntime` package as on Databricks (python_shell/)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import posixpath
import runpy
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .contract import StoragePaths, TaskInvocation, TaskOutcome
from .wire import invocation_from_dict, outcome_to_json

NOTEBOOK_RESULT_LIMIT = 1024 * 1024  # Databricks truncates at 5 MB; locally 1 MB
# Where `dbruntime` lives, put on sys.path as Databricks puts /databricks/python_shell there.
PYTHON_SHELL = Path(__file__).resolve().parent / "python_shell"
_cluster: dict[str, Any] = {}  # the cluster this process is attached to (for %pip, %sh, notebook.run)


def _exit(code: int, server: int) -> None:
    """Leave without interpreter teardown. If the server (our parent) is gone, what this task started
    (%sh, %pip, a tool) goes too: nothing of a cluster outlives its workspace. The cluster starts each
    task in a process group of its own, which is what is killed."""
    if os.getppid() != server and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(code)


def _exit_when_orphaned(server: int) -> None:
    # The server died: nobody will read the outcome, so stop rather than linger.
    while os.getppid() == server:
        time.sleep(0.5)
    _exit(1, server)


def main(argv: list[str]) -> None:
    server = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(server,), name="orphan-watch", daemon=True).start()
    payload = json.loads(Path(argv[0]).read_text())
    invocation = invocation_from_dict(payload["invocation"])
    try:
        outcome = run(invocation, payload["cluster"])
    except BaseException as exc:  # a bug here must still produce an outcome
        traceback.print_exc()
        outcome = TaskOutcome(
            "FAILED",
            state_message=f"The local task runner failed: {type(exc).__name__}: {exc}",
            error=f"{type(exc).__name__}: {exc}",
            error_trace=traceback.format_exc(),
        )
    from .secrets import REDACTOR

    outcome = REDACTOR.redact_outcome(outcome)  # secret values the task read come back as [REDACTED]
    tmp = invocation.output_dir / "outcome.json.tmp"
    tmp.write_text(outcome_to_json(outcome))
    os.replace(tmp, invocation.output_dir / "outcome.json")
    sys.stdout.flush()
    sys.stderr.flush()
    REDACTOR.close()  # drain the redacting stdout/stderr pipes (if a secret was read) into the log
    # Skip interpreter teardown: py4j/dbt threads could delay exit, and nothing needs cleanup.
    _exit(0, server)  # e.g. the notebook failed because the JVM went down with a dead server


def run(invocation: TaskInvocation, cluster: dict[str, Any]) -> TaskOutcome:
    started = time.monotonic()
    paths = StoragePaths(Path(cluster["state_dir"]))
    _cluster.update(cluster)
    # Libraries install before the task runs; one that cannot be installed fails it, as on Databricks.
    from .libraries import LibraryInstallError, activate, ensure_installed

    try:
        libs = ensure_installed(
            [*cluster["pypi_packages"], *invocation.pypi_packages],
            cluster["cluster_id"],
            paths,
            invocation.wheel_libraries,
        )
    except LibraryInstallError as exc:
        return TaskOutcome("FAILED", state_message=str(exc), error=f"LibraryInstallError: {exc.package}: {exc.detail}")
    activate(libs.site_dir)
    if libs.installed or libs.provided:
        print(
            f"[local runtime] libraries: installed {libs.installed or 'nothing'}, provided by the runtime "
            f"{libs.provided or 'nothing'} ({libs.seconds:.2f} s)",
            flush=True,
        )

    cells = None
    if invocation.kind == "notebook":
        from .notebook import MalformedNotebook, parse

        try:
            cells = parse(
                invocation.notebook_source or "", invocation.notebook_path or "notebook", invocation.notebook_language
            )
        except MalformedNotebook as exc:  # also a Scala or R notebook (UnsupportedNotebookLanguage)
            return TaskOutcome("FAILED", state_message=str(exc), error=f"{type(exc).__name__}: {exc}")

    from .attach import attach
    from .catalog_sync import remember_table_versions, sync_catalog
    from .path_rewrite import PathMapper, install_local_file_patches, install_spark_patches

    spark = attach(Path(cluster["gateway_file"]), job_group=str(invocation.task_run_id))
    # Spark's Python workers (UDFs) see the cluster's libraries too, as executors do on Databricks.
    spark.sparkContext.environment["PYTHONPATH"] = str(libs.site_dir)
    for warning in sync_catalog(spark, paths.warehouse):
        print(f"WARNING: {warning}", file=sys.stderr)
    mapper = PathMapper(paths.dbfs, paths.volumes)
    install_local_file_patches(mapper)
    install_spark_patches(mapper)
    from .uc_patches import install_uc_patches

    uc_session = install_uc_patches(spark, paths.warehouse)  # catalog.schema.table names (after the path patches)
    from .delta_patches import install_delta_patches

    install_delta_patches(uc_session, mapper)  # DeltaTable.forName/forPath with UC names and dbfs:/ paths
    from .ingestion import install_ingestion_patches

    install_ingestion_patches(spark, mapper, paths)  # Auto Loader, read_files, COPY INTO, samples
    print(
        f"[local runtime] attached to cluster {cluster['cluster_id']} in {time.monotonic() - started:.2f} s", flush=True
    )

    try:
        from .cell_output import recorded  # the run page's per-cell output (OUTPUT_DIR/cells.json)

        return recorded(invocation, cells or [], lambda tracked: _dispatch(invocation, tracked, spark, mapper, paths))
    finally:
        remember_table_versions(spark, paths.warehouse)


def _dispatch(invocation: TaskInvocation, cells: list, spark: Any, mapper: Any, paths: StoragePaths) -> TaskOutcome:
    if invocation.kind == "notebook":
        from .task_values import read_task_values

        outcome = _run_notebook(invocation, cells, spark, mapper, paths)
        outcome.task_values = read_task_values(invocation.output_dir)  # what dbutils.jobs.taskValues.set recorded
        return outcome
    if invocation.kind in ("spark_python", "python_wheel"):
        from .task_values import read_task_values

        user_namespace(invocation, {}, spark, mapper, paths)  # for `from databricks.sdk.runtime import ...`
        outcome = _run_python_file(invocation, paths) if invocation.kind == "spark_python" else _run_wheel(invocation)
        outcome.task_values = read_task_values(invocation.output_dir)  # dbutils.jobs.taskValues.set
        return outcome
    if invocation.kind == "dbt":
        if invocation.dbt is None:
            return TaskOutcome(
                "FAILED", state_message="dbt task has no dbt invocation", error="ValueError: no dbt invocation"
            )
        from .dbt_task import run_dbt

        return run_dbt(invocation.dbt, invocation.output_dir, str(_cluster.get("cluster_id") or "local"))
    return TaskOutcome(
        "FAILED", state_message=f"Unknown task kind {invocation.kind!r}", error="ValueError: unknown task kind"
    )


def display(obj: Any) -> None:
    from .cell_output import RECORDER

    with RECORDER.displaying(obj):  # the run page shows a DataFrame as a table; the log keeps the text
        if hasattr(obj, "_jdf") and hasattr(obj, "show"):
            obj.show(20, truncate=False)
        else:
            print(obj)


def displayHTML(html: str) -> None:
    print(html)


def user_namespace(
    invocation: TaskInvocation, widgets: dict[str, str], spark: Any, mapper: Any, paths: StoragePaths
) -> dict[str, Any]:
    """The task's user namespace, as a Databricks notebook has it, registered as the runtime's
    (dbruntime.UserNamespaceInitializer) so `databricks.sdk.runtime` hands out the same objects."""
    import warnings

    from pyspark.sql import SQLContext
    from pyspark.sql.functions import udf

    from .dbutils import DBUtils, SecretsUtils
    from .secrets import WorkspaceSecrets
    from .task_values import TASK_VALUES_FILE, JobsUtils, TaskValues

    # Secrets are read from the workspace's owner-only store when asked for, never passed in.
    dbutils = DBUtils(widgets, mapper, secrets=WorkspaceSecrets(paths.secrets, fallback=SecretsUtils()))
    (invocation.output_dir / TASK_VALUES_FILE).unlink(missing_ok=True)  # a retry or repair starts with none
    dbutils.jobs = JobsUtils(TaskValues(invocation.upstream_task_values, invocation.output_dir / TASK_VALUES_FILE))
    with warnings.catch_warnings():  # SQLContext is deprecated, but notebooks still have one
        warnings.simplefilter("ignore", FutureWarning)
        sql_context = SQLContext(spark.sparkContext, spark)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "spark": spark,
        "sc": spark.sparkContext,
        "sqlContext": sql_context,
        "dbutils": dbutils,
        "display": display,
        "displayHTML": displayHTML,
        "getArgument": dbutils.widgets.getArgument,
        "table": spark.table,
        "sql": spark.sql,
        "udf": udf,
    }
    if str(PYTHON_SHELL) not in sys.path:
        sys.path.append(str(PYTHON_SHELL))
    importlib.import_module("dbruntime").UserNamespaceInitializer.getOrCreate().set_namespace_globals(namespace)
    return namespace


def _run_notebook(invocation: TaskInvocation, cells: list, spark: Any, mapper: Any, paths: StoragePaths) -> TaskOutcome:
    from .dbutils import NotebookExit
    from .magics import NotebookSession
    from .notebook import CellFailed, run_cells

    namespace = user_namespace(invocation, invocation.widgets, spark, mapper, paths)
    _enter_notebook_folder(invocation, paths)
    dbutils = namespace["dbutils"]
    magics = NotebookSession(invocation, _cluster, paths, dbutils, namespace, spark, display)
    try:
        run_cells(cells, namespace, spark, display, magic=magics)
    except NotebookExit as done:
        data = done.value.encode("utf-8")
        if len(data) > NOTEBOOK_RESULT_LIMIT:
            value = data[:NOTEBOOK_RESULT_LIMIT].decode("utf-8", "ignore")
            return TaskOutcome("SUCCESS", notebook_result=value, notebook_result_truncated=True)
        return TaskOutcome("SUCCESS", notebook_result=done.value)
    except CellFailed as failed:
        from .notebook import one_line

        return TaskOutcome("FAILED", state_message=str(failed), error=one_line(failed.exc), error_trace=failed.trace)
    return TaskOutcome("SUCCESS")


def _enter_notebook_folder(invocation: TaskInvocation, paths: StoragePaths) -> None:
    """A workspace (or Git) notebook runs in its own folder, first on sys.path, as on Databricks (DBR
    14+), so relative paths and `sys.path.append("../src")` reach the files deployed next to it."""
    path = (invocation.notebook_path or "").removeprefix("/Workspace")
    if not path:
        return
    root = invocation.source_root if invocation.source_root is not None else paths.workspace
    folder = root / posixpath.dirname(path.lstrip("/"))
    if folder.is_dir():
        os.chdir(folder)
        sys.path.insert(0, str(folder))


def _run_python_file(invocation: TaskInvocation, paths: StoragePaths) -> TaskOutcome:
    """A Python file as Databricks runs one: as `__main__`, sys.argv = [file, *parameters], its folder
    first on sys.path and, for a workspace (or Git) file, the current directory (DBR 14+)."""
    path = invocation.python_file
    if path is None or not Path(path).is_file():
        message = f"Python file {path} does not exist; upload it to the workspace or DBFS first."
        return TaskOutcome("FAILED", state_message=message, error=f"FileNotFoundError: {message}")
    sys.argv = [str(path), *invocation.python_parameters]
    folder = Path(path).parent
    sys.path.insert(0, str(folder))
    if not folder.resolve().is_relative_to(paths.dbfs.resolve()):
        os.chdir(folder)
    return _run_user_code(lambda: runpy.run_path(str(path), run_name="__main__"), "The Python file")


def _run_wheel(invocation: TaskInvocation) -> TaskOutcome:
    """A Python wheel task as Databricks runs one: `entry_point` is the package's entry point of that
    name (console_scripts first), else the function `package_name.entry_point`; it is called with
    sys.argv = [package_name, *parameters] (named parameters arrive as --key=value)."""
    package, name = invocation.wheel_package or "", invocation.wheel_entry_point or ""
    sys.argv = [package, *invocation.python_parameters]
    entry_point = _find_entry_point(package, name)
    if entry_point is None and importlib.util.find_spec(package.replace("-", "_")) is None:
        message = (
            f"Python wheel task: package {package} is not installed on the cluster: no installed distribution "
            f"or module has that name. Add its wheel to the task's libraries."
        )
        return TaskOutcome("FAILED", state_message=message, error=f"ModuleNotFoundError: {message}")

    def call() -> None:
        if entry_point is not None:
            entry_point.load()()
            return
        module = importlib.import_module(package.replace("-", "_"))
        function = getattr(module, name, None)
        if not callable(function):
            raise AttributeError(
                f"Entry point {name} not found: package {package} declares no entry point named {name} and "
                f"module {module.__name__} has no function {name}."
            )
        function()

    return _run_user_code(call, f"Entry point {package}:{name}")


def _find_entry_point(package: str, name: str) -> Any:
    """The installed distribution's entry point named `name`, console_scripts before other groups."""
    from importlib import metadata

    try:
        found = [ep for ep in metadata.distribution(package).entry_points if ep.name == name]
    except metadata.PackageNotFoundError:
        return None
    found.sort(key=lambda ep: ep.group != "console_scripts")
    return found[0] if found else None


def _run_user_code(code: Callable[[], Any], what: str) -> TaskOutcome:
    """Run a Python file or entry point: an exception or a non-zero exit fails the task, with the
    exception's line as the error (the traceback's last line) and the traceback from the user's code."""
    from .dbutils import NotebookExit
    from .notebook import one_line

    try:
        code()
    except NotebookExit:  # dbutils.notebook.exit() ends the task successfully
        return TaskOutcome("SUCCESS")
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return TaskOutcome("SUCCESS")
        if isinstance(exc.code, int):
            message = f"{what} exited with code {exc.code}."
        else:  # sys.exit("message"): Python prints the message and exits with 1
            print(exc.code, file=sys.stderr, flush=True)
            message = f"{what} exited with code 1: {exc.code}"
        return TaskOutcome(
            "FAILED", state_message=message, error=f"SystemExit: {exc.code}", error_trace=_user_trace(exc)
        )
    except Exception as exc:
        trace = _user_trace(exc)
        sys.stderr.write(trace)  # what Python prints for an uncaught exception: the task's log has it too
        return TaskOutcome("FAILED", state_message=one_line(exc), error=one_line(exc), error_trace=trace)
    return TaskOutcome("SUCCESS")


def _user_trace(exc: BaseException) -> str:
    """The traceback from the first frame of the user's code: the runtime's own frames (this module,
    runpy, importlib's entry point loading) are left out."""
    runtime = {__file__, runpy.__file__}
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in runtime
        or tb.tb_frame.f_code.co_filename.startswith("<frozen")
        or "importlib/metadata" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


if __name__ == "__main__":  # python -P -m dbx_assets.local_workspace.runtime.task_process <invocation.json>
    main(sys.argv[1:])
