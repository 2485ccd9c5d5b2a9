"""The notebook magics teams use, run in a notebook task as Databricks documents them:

- `%run <path> [$name=value ...]`: the other notebook runs inline, in this notebook's namespace,
  its path relative to this notebook (or absolute); the `$` arguments are its widget values.
- `dbutils.notebook.run(path, timeout_seconds, arguments)`: the child notebook runs as an
  ephemeral run on the same cluster (a task process of its own attached to the cluster's JVM),
  and its exit value is returned; a failure or timeout raises.
- `%pip install ...` / `%pip install -r file`: installed on this cluster with the mechanism of
  task libraries (runtime/libraries.py). Databricks Runtime 13+ does not restart Python after
  %pip either; locally the cluster's library dir is put first on sys.path and modules of the
  installed distributions that were already imported are dropped, so the next import loads
  the installed version.
- `%sh`: the cell runs with /bin/bash in the driver's working directory (the cluster's dir);
  its output goes to the task's logs and a non-zero exit fails the cell.
- `%fs ls|cp|mv|rm|head|mkdirs|put ...`: dbutils.fs (runtime/fs_magic.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .contract import StoragePaths, TaskInvocation
from .notebook import Cell, CellFailed, parse, run_cells
from .wire import invocation_to_dict, outcome_from_json

_TASK_MODULE = f"{__package__}.task_process"
_CHILD_KILL_WAIT_SECONDS = 5.0
# %pip options that change nothing locally (the install is always into the cluster's library dir).
_IGNORED_PIP_OPTIONS = frozenset(
    {
        "-q",
        "--quiet",
        "-U",
        "--upgrade",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar=off",
    }
)


# A Git checkout's notebooks keep their extension; a notebook path names them without it.
NOTEBOOK_EXTENSIONS = (".py", ".sql", ".ipynb", ".scala", ".r")


class NotebookNotFound(FileNotFoundError):
    pass


class WorkflowException(RuntimeError):
    """What dbutils.notebook.run raises when the child fails or times out (Databricks' name)."""


class ShellCommandFailed(RuntimeError):
    pass


class PipMagicError(ValueError):
    pass


# ----------------------------------------------------------------------------------- paths
def resolve_notebook_path(current: str, target: str) -> str:
    """`target` as %run and dbutils.notebook.run read it: absolute, or relative to `current`'s folder."""
    target = target.strip()
    if not target:
        raise NotebookNotFound("%run needs a notebook path, e.g. %run ./helpers")
    if target.startswith("/"):
        return posixpath.normpath(target)
    return posixpath.normpath(posixpath.join(posixpath.dirname(current), target))


class NotebookReader:
    """Notebook sources by path: absolute paths from the workspace, relative ones from a Git
    checkout (a task with a Git source) where notebooks keep their .py extension."""

    def __init__(self, workspace: Path, source_root: Path | None = None):
        self.workspace = workspace
        self.source_root = source_root

    def local(self, path: str) -> list[Path]:
        if self.source_root is not None and not path.startswith("/"):
            root, rel = self.source_root, path
            candidates = [root / rel, *(root / f"{rel}{ext}" for ext in NOTEBOOK_EXTENSIONS)]
        else:
            root = self.workspace
            rel = path.removeprefix("/Workspace").lstrip("/")
            candidates = [root / rel]
        inside = [c for c in candidates if c.resolve().is_relative_to(root.resolve())]
        return inside

    def read(self, path: str) -> str:
        for candidate in self.local(path):
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
        raise NotebookNotFound(f"Notebook not found: {path}")


def parse_run_arguments(text: str) -> tuple[str, dict[str, str]]:
    """`./helper $name=value $other="two words"` -> ("./helper", {"name": "value", ...})."""
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise ValueError(f"Cannot parse %run arguments {text!r}: {exc}") from None
    if not words:
        raise NotebookNotFound("%run needs a notebook path, e.g. %run ./helpers")
    params: dict[str, str] = {}
    for word in words[1:]:
        name, eq, value = word.partition("=")
        if not name.startswith("$") or not eq or len(name) < 2:
            raise ValueError(f"%run arguments are $name=value, got {word!r}")
        params[name[1:]] = value
    return words[0], params


# ----------------------------------------------------------------------------------- %sh
def run_shell(
    script: str, cwd: Path, env: dict[str, str] | None = None, write: Callable[[str], Any] | None = None
) -> None:
    """Run a %sh cell with /bin/bash in `cwd`, streaming its output; a non-zero exit raises."""
    out = write or (lambda text: print(text, end="", flush=True))
    proc = subprocess.Popen(
        ["/bin/bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        out(line)
    code = proc.wait()
    if code != 0:
        raise ShellCommandFailed(f"%sh cell exited with non-zero exit code {code}")


# ----------------------------------------------------------------------------------- %pip
def pip_requirements(args: str, read_file: Callable[[str], str]) -> list[str]:
    """The requirements of `%pip install ...` (packages and `-r file` contents)."""
    words = shlex.split(args, comments=True)
    if not words or words[0] != "install":
        raise PipMagicError(f"Only `%pip install ...` is supported on the local workspace, got `%pip {args.strip()}`.")
    specs: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("-r", "--requirement"):
            if i + 1 >= len(words):
                raise PipMagicError(f"`%pip install {word}` needs a requirements file")
            specs += _requirement_lines(read_file(words[i + 1]))
            i += 2
            continue
        if word.startswith("--requirement="):
            specs += _requirement_lines(read_file(word.split("=", 1)[1]))
        elif word in _IGNORED_PIP_OPTIONS:
            pass
        elif word.startswith("-"):
            raise PipMagicError(f"%pip option {word} is not supported on the local workspace.")
        else:
            specs.append(word)
        i += 1
    if not specs:
        raise PipMagicError("`%pip install` needs at least one package or -r file.")
    return specs


def _requirement_lines(text: str) -> list[str]:
    lines = [line.split(" #", 1)[0].strip() for line in text.splitlines()]
    options = [line for line in lines if line.startswith("-")]
    if options:
        raise PipMagicError(f"Requirements file options are not supported on the local workspace: {options[0]}")
    return [line for line in lines if line and not line.startswith("#")]


def forget_imported(pins: list[str], site_dir: Path) -> list[str]:
    """Drop already-imported modules of the distributions just installed, so the next import
    loads the installed version (Databricks would restart Python for that)."""
    names: set[str] = set()
    for pin in pins:
        name = pin.split("==")[0].split(" @ ")[0].strip()
        for dist in metadata.distributions(name=name, path=[str(site_dir)]):
            top = dist.read_text("top_level.txt")
            if top:
                names.update(line.strip() for line in top.splitlines() if line.strip())
            else:
                names.update(
                    Path(str(f)).parts[0].removesuffix(".py")
                    for f in dist.files or []
                    if not Path(str(f)).parts[0].endswith((".dist-info", ".data"))
                )
    dropped = [m for m in list(sys.modules) if m.split(".")[0] in names]
    for module in dropped:
        del sys.modules[module]
    return dropped


# ----------------------------------------------------------------------------------- the session
class NotebookSession:
    """The magics of one notebook task: %run, %pip, %sh, %fs and dbutils.notebook.run."""

    def __init__(
        self,
        invocation: TaskInvocation,
        cluster: dict[str, Any],
        paths: StoragePaths,
        dbutils: Any,
        namespace: dict[str, Any],
        spark: Any,
        display: Callable[[Any], None],
    ):
        self.invocation = invocation
        self.cluster = cluster
        self.paths = paths
        self.dbutils = dbutils
        self.namespace = namespace
        self.spark = spark
        self.display = display
        self.reader = NotebookReader(paths.workspace, invocation.source_root)
        self.stack = [invocation.notebook_path or ""]
        self.child_runs = 0
        dbutils.notebook.runner = self.run_child

    @property
    def driver_dir(self) -> Path:
        return self.paths.clusters / str(self.cluster["cluster_id"])

    def __call__(self, cell: Cell) -> None:
        if cell.kind == "run":
            self.run_inline(cell.source)
        elif cell.kind == "pip":
            self.pip(cell.source)
        elif cell.kind == "sh":
            self.driver_dir.mkdir(parents=True, exist_ok=True)
            run_shell(cell.source, self.driver_dir)
        elif cell.kind == "fs":
            from .fs_magic import run_fs_magic

            run_fs_magic(cell.source, self.dbutils.fs, self.display, self.spark)

    # -- %run ---------------------------------------------------------------------------------
    def run_inline(self, text: str) -> None:
        target, params = parse_run_arguments(text)
        path = resolve_notebook_path(self.stack[-1], target)
        source = self.reader.read(path)
        cells = parse(source, path)
        widgets = self.dbutils.widgets
        # The called notebook sees its widgets' defaults plus the $ arguments, not the caller's values.
        saved = (widgets._passed, widgets._defaults)
        widgets._passed, widgets._defaults = dict(params), {}
        self.stack.append(path)
        try:
            run_cells(cells, self.namespace, self.spark, self.display, magic=self)
        except CellFailed as failed:
            raise failed.exc from None  # the caller's %run cell fails with the called notebook's error
        finally:
            self.stack.pop()
            # Widgets the called notebook defined stay defined (one notebook context), the caller's values return.
            widgets._passed, widgets._defaults = saved[0], {**widgets._defaults, **saved[1]}

    # -- %pip ---------------------------------------------------------------------------------
    def pip(self, text: str) -> None:
        from .libraries import activate, ensure_installed

        specs = pip_requirements(text, self._read_requirements)
        report = ensure_installed(specs, str(self.cluster["cluster_id"]), self.paths)
        activate(report.site_dir)
        dropped = forget_imported(report.installed, report.site_dir)
        print(
            f"[local runtime] %pip: installed {report.installed or 'nothing'}, already present "
            f"{report.provided or 'nothing'}"
            + (f"; reloading {sorted({m.split('.')[0] for m in dropped})}" if dropped else ""),
            flush=True,
        )

    def _read_requirements(self, name: str) -> str:
        if name.startswith(("/dbfs/", "dbfs:/")):
            local = self.paths.dbfs / name.split("/", 2)[2] if name.startswith("/dbfs/") else self.paths.dbfs / name[6:]
        elif name.startswith("/Volumes/"):
            local = self.paths.volumes / name[len("/Volumes/") :]
        elif name.startswith("/"):
            local = self.paths.workspace / name.removeprefix("/Workspace").lstrip("/")
        else:  # relative to the notebook's folder, as %pip -r resolves it on Databricks
            folder = posixpath.dirname(self.stack[-1])
            root = (
                self.invocation.source_root
                if self.invocation.source_root and not folder.startswith("/")
                else self.paths.workspace
            )
            local = root / folder.lstrip("/") / name
        try:
            return local.read_text()
        except FileNotFoundError:
            raise PipMagicError(f"Requirements file not found: {name}") from None

    # -- dbutils.notebook.run -----------------------------------------------------------------
    def run_child(self, target: str, timeout_seconds: int, arguments: dict) -> str | None:
        path = resolve_notebook_path(self.stack[-1], target)
        source = self.reader.read(path)
        self.child_runs += 1
        run_name = f"{self.invocation.task_run_id}-{self.child_runs}"
        out = self.invocation.output_dir / "notebook_runs" / str(self.child_runs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "outcome.json").unlink(missing_ok=True)
        child = dataclasses.replace(
            self.invocation,
            notebook_path=path,
            notebook_source=source,
            notebook_language=None,  # the child's own header or metadata says
            output_dir=out,
            widgets={str(k): str(v) for k, v in arguments.items()},
            pypi_packages=(),
            timeout_seconds=timeout_seconds,
        )
        request = out / "invocation.json"
        fd = os.open(request, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"invocation": invocation_to_dict(child), "cluster": self.cluster}, fh)
        print(
            f"[local runtime] Notebook run {run_name}: {path} started as an ephemeral run on cluster "
            f"{self.cluster['cluster_id']} (logs: {out / 'logs.txt'})",
            flush=True,
        )
        with open(out / "logs.txt", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", _TASK_MODULE, str(request)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=out,
                start_new_session=True,
            )
        try:
            proc.wait(timeout_seconds if timeout_seconds > 0 else None)
        except subprocess.TimeoutExpired:
            self._stop_child(proc)
            print(f"[local runtime] Notebook run {run_name}: {path} TIMEDOUT after {timeout_seconds} s", flush=True)
            raise WorkflowException(
                f"Notebook run {run_name} ({path}) timed out after {timeout_seconds} seconds"
            ) from None
        try:
            outcome = outcome_from_json((out / "outcome.json").read_text())
        except (FileNotFoundError, ValueError):
            raise WorkflowException(
                f"Notebook run {run_name} ({path}) exited with code {proc.returncode} without an outcome"
            ) from None
        print(
            f"[local runtime] Notebook run {run_name}: {path} {outcome.result_state}"
            + (f", exit value {outcome.notebook_result!r}" if outcome.notebook_result is not None else ""),
            flush=True,
        )
        if outcome.result_state != "SUCCESS":
            raise WorkflowException(
                f"Notebook run {run_name} ({path}) {outcome.result_state}: {outcome.error or outcome.state_message}"
            )
        return outcome.notebook_result

    def _stop_child(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        # Spark jobs the child started run on in the JVM until its job group is cancelled.
        cancel_dir = self.driver_dir / "cancel"
        if cancel_dir.is_dir():
            (cancel_dir / str(self.invocation.task_run_id)).touch()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not get ignored
            proc.wait(_CHILD_KILL_WAIT_SECONDS)
