"""A local `dbutils`: widgets, notebook.exit, fs and secrets, with Databricks' names and messages."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .path_rewrite import PathMapper
from .task_values import JobsUtils, TaskValues


class NotebookExit(BaseException):
    """Raised by dbutils.notebook.exit; a BaseException so `except Exception` in user code
    does not swallow it (as on Databricks, exit ends the notebook)."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class InputWidgetNotDefined(Exception):
    pass


class Widgets:
    def __init__(self, values: dict[str, str]):
        self._passed = dict(values)
        self._defaults: dict[str, str] = {}

    def _define(self, name: str, default: Any) -> None:
        self._defaults[name] = "" if default is None else str(default)

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        if defaultValue not in choices:
            raise ValueError(
                f"Default value {defaultValue!r} of dropdown widget {name!r} is not one of its choices {choices!r}"
            )
        self._define(name, defaultValue)

    def combobox(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        self._define(name, defaultValue)

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        self._define(name, defaultValue)

    def get(self, name: str) -> str:
        if name in self._passed:
            return self._passed[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name: str, optional: str | None = None) -> str | None:
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            if optional is not None:
                return optional
            raise

    def getAll(self) -> dict[str, str]:
        return {**self._defaults, **self._passed}

    def remove(self, name: str) -> None:
        self._defaults.pop(name, None)

    def removeAll(self) -> None:
        self._defaults.clear()


class NotebookUtils:
    def exit(self, value: Any) -> None:
        raise NotebookExit(str(value))

    # Set by the notebook runtime (runtime/magics.py): runs the child as an ephemeral run on this cluster.
    runner: Callable[[str, int, dict], str | None] | None = None

    def run(self, path: str, timeout_seconds: int = 0, arguments: dict | None = None) -> str | None:
        if self.runner is None:
            raise NotImplementedError("dbutils.notebook.run needs a notebook task on a local cluster.")
        return self.runner(path, int(timeout_seconds or 0), dict(arguments or {}))


@dataclass(frozen=True)
class FileInfo:
    path: str
    name: str
    size: int
    modificationTime: int

    def isDir(self) -> bool:
        return self.name.endswith("/")

    def isFile(self) -> bool:
        return not self.isDir()


class FsUtils:
    """dbutils.fs on the workspace's storage: `dbfs:/x` and `/x` are DBFS, `/Volumes/...` volumes."""

    def __init__(self, mapper: PathMapper):
        self._mapper = mapper

    def _local(self, path: str) -> Path:
        mapped = self._mapper.storage(path)
        if not mapped.startswith("/"):
            raise ValueError(f"Unsupported path {path!r}: use dbfs:/..., /Volumes/... or file:/...")
        return Path(mapped)

    def _display(self, path: str, local: Path) -> str:
        if path.startswith(("dbfs:", "file:")):
            return path
        if path.startswith("/Volumes"):
            return path
        return "dbfs:" + path

    def ls(self, path: str) -> list[FileInfo]:
        local = self._local(path)
        if not local.exists():
            raise FileNotFoundError(f"java.io.FileNotFoundException: File {path} does not exist.")
        base = self._display(path, local).rstrip("/")
        entries = [local] if local.is_file() else sorted(local.iterdir())
        infos = []
        for entry in entries:
            st = entry.stat()
            is_dir = entry.is_dir()
            name = entry.name + ("/" if is_dir else "")
            full = base if entry == local else f"{base}/{name}"
            infos.append(FileInfo(full, name, 0 if is_dir else st.st_size, int(st.st_mtime * 1000)))
        return infos

    def head(self, file: str, maxBytes: int = 65536) -> str:
        with open(self._local(file), "rb") as fh:
            return fh.read(maxBytes).decode("utf-8", "replace")

    def put(self, file: str, contents: str, overwrite: bool = False) -> bool:
        local = self._local(file)
        if local.exists() and not overwrite:
            raise FileExistsError(f"File {file} already exists; pass overwrite=True to replace it.")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(contents)
        return True

    def mkdirs(self, dir: str) -> bool:
        self._local(dir).mkdir(parents=True, exist_ok=True)
        return True

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        if src.is_dir():
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory; pass recurse=True to copy it.")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            if dst.is_dir():
                dst = dst / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        return True

    def rm(self, dir: str, recurse: bool = False) -> bool:
        local = self._local(dir)
        if not local.exists():
            return False
        if local.is_dir():
            if not recurse and any(local.iterdir()):
                raise OSError(f"{dir} is a non-empty directory; pass recurse=True to delete it.")
            shutil.rmtree(local)
        else:
            local.unlink()
        return True


class SecretsUtils:
    """Secrets come from env vars DBX_SECRET_<SCOPE>_<KEY> (upper case, non-alphanumerics as _)."""

    @staticmethod
    def env_var(scope: str, key: str) -> str:
        return "DBX_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{scope}_{key}").upper()

    def get(self, scope: str, key: str) -> str:
        var = self.env_var(scope, key)
        if var not in os.environ:
            raise KeyError(
                f"Secret does not exist with scope: {scope} and key: {key}. Set the environment variable {var} on the local workspace to provide it."
            )
        return os.environ[var]

    def getBytes(self, scope: str, key: str) -> bytes:
        return self.get(scope, key).encode()


class DBUtils:
    def __init__(self, widgets: dict[str, str], mapper: PathMapper, secrets: Any | None = None):
        self.widgets = Widgets(widgets)
        self.notebook = NotebookUtils()
        self.fs = FsUtils(mapper)
        # The task runtime passes the workspace's secrets (runtime/secrets.py); alone, env vars.
        self.secrets = secrets if secrets is not None else SecretsUtils()
        # Outside a job (no task runtime set it up): taskValues.get answers debugValue.
        self.jobs = JobsUtils(TaskValues({}, None, in_job=False))

    def __repr__(self) -> str:
        return "<local dbutils: widgets, notebook, fs, secrets, jobs>"
