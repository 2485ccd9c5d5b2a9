"""Databricks path conventions mapped onto the workspace's state dir.

On Databricks, driver code sees DBFS at `/dbfs/...` and UC volumes at `/Volumes/...` as
ordinary files, and Spark resolves `dbfs:/x` and scheme-less `/x` against DBFS. Locally both
roots are directories under the state dir; this module maps paths and installs the patches
(in the task process only) so notebooks need no changes and nothing outside the state dir
is touched.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PathMapper:
    dbfs_root: Path
    volumes_root: Path

    # --- driver-local file paths: /dbfs/x and /Volumes/x -------------------------------
    def local(self, path: str) -> str:
        """`/dbfs/x` -> `<dbfs>/x`, `/Volumes/x` -> `<volumes>/x`; anything else unchanged."""
        for prefix, root in (("/dbfs", self.dbfs_root), ("/Volumes", self.volumes_root)):
            if path == prefix or path.startswith(prefix + "/"):
                return str(root) + path[len(prefix) :]
        return path

    # --- Spark / dbutils.fs paths: dbfs:/x, /Volumes/x, /x -------------------------------
    def storage(self, path: str) -> str:
        """A Spark or dbutils.fs path as a local filesystem path (no scheme).

        `dbfs:/x` and `/x` -> `<dbfs>/x`; `/Volumes/x` and `dbfs:/Volumes/x` -> `<volumes>/x`;
        `file:/x` -> `/x`; paths already under a storage root and other schemes are kept."""
        if path.startswith("file:"):
            return re.sub(r"^file:(//)?", "", path)
        if path.startswith("dbfs:"):
            path = "/" + path[len("dbfs:") :].lstrip("/")
        if not path.startswith("/") or self._already_mapped(path) or re.match(r"^[A-Za-z][\w+.-]*://", path):
            return path
        if path == "/Volumes" or path.startswith("/Volumes/"):
            return str(self.volumes_root) + path[len("/Volumes") :]
        return str(self.dbfs_root) + (path if path != "/" else "")

    def spark(self, path: str) -> str:
        """Like `storage`, but as the `file:` URI Spark should read/write."""
        if (
            not isinstance(path, str)
            or re.match(r"^[A-Za-z][\w+.-]*:", path)
            and not path.startswith(("dbfs:", "file:"))
        ):
            return path
        mapped = self.storage(path)
        return "file:" + mapped if mapped.startswith("/") else mapped

    def sql(self, text: str) -> str:
        """Rewrite quoted `dbfs:/...` and `/Volumes/...` literals in Spark SQL text (LOCATION
        clauses, csv.`dbfs:/x`); other text is left alone."""

        def repl(m: re.Match) -> str:
            quote, path = m.group(1), m.group(2)
            return quote + self.spark(path)

        return re.sub(r"""(['"`])((?:dbfs:/|/Volumes/)[^'"`]*)""", repl, text)

    def _already_mapped(self, path: str) -> bool:
        return any(path == str(r) or path.startswith(str(r) + "/") for r in (self.dbfs_root, self.volumes_root))


# ---------------------------------------------------------------------------------------
# Driver-local file patches
# ---------------------------------------------------------------------------------------

_ONE_PATH = (
    "stat", "lstat", "listdir", "scandir", "mkdir", "rmdir", "remove", "unlink", "access",
    "chmod", "utime", "open", "truncate", "readlink", "chdir",
)  # fmt: skip
_TWO_PATHS = ("rename", "replace", "link", "symlink")


def install_local_file_patches(mapper: PathMapper) -> None:
    """Make builtins/io/os (and so os.path, pathlib, shutil, pandas) resolve /dbfs and
    /Volumes paths into the state dir. Idempotent; affects only the current process."""
    if getattr(builtins.open, "_dbx_patched", False):
        return

    def one(p: Any) -> Any:
        if isinstance(p, (str, os.PathLike)) and not isinstance(p, bytes):
            s = os.fspath(p)
            if isinstance(s, str):
                mapped = mapper.local(s)
                return mapped if mapped != s else p
        return p

    def wrap(fn: Callable, n_paths: int) -> Callable:
        @functools.wraps(fn)
        def patched(*args: Any, **kwargs: Any) -> Any:
            args = tuple(one(a) if i < n_paths else a for i, a in enumerate(args))
            for key in ("path", "file", "src", "dst"):
                if key in kwargs:
                    kwargs[key] = one(kwargs[key])
            return fn(*args, **kwargs)

        patched._dbx_patched = True  # type: ignore[attr-defined]
        return patched

    patched_open = wrap(builtins.open, 1)
    builtins.open = patched_open
    io.open = patched_open  # pathlib.Path.open calls io.open
    for name, n in [(n, 1) for n in _ONE_PATH] + [(n, 2) for n in _TWO_PATHS]:
        orig = getattr(os, name, None)
        if orig is None:
            continue
        new = wrap(orig, n)
        setattr(os, name, new)
        # shutil & co consult these sets to pick fd-based code paths.
        for support in ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids"):
            s = getattr(os, support, None)
            if isinstance(s, set) and orig in s:
                s.add(new)


# ---------------------------------------------------------------------------------------
# Spark patches
# ---------------------------------------------------------------------------------------

_PATH_OPTIONS = {"path", "checkpointlocation"}


def install_spark_patches(mapper: PathMapper) -> None:
    """Rewrite path arguments of pyspark's readers/writers and path literals in spark.sql."""
    from pyspark.sql import DataFrameReader, DataFrameWriter, SparkSession
    from pyspark.sql.streaming import DataStreamReader, DataStreamWriter

    if getattr(SparkSession.sql, "_dbx_patched", False):
        return

    def map_paths(value: Any) -> Any:
        if isinstance(value, str):
            return mapper.spark(value)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return type(value)(mapper.spark(v) for v in value)
        return value

    def first_arg(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            if args:
                args = (map_paths(args[0]), *args[1:])
            if "path" in kwargs:
                kwargs["path"] = map_paths(kwargs["path"])
            for key in list(kwargs):
                if key.lower() in _PATH_OPTIONS and key != "path":
                    kwargs[key] = map_paths(kwargs[key])
            return fn(self, *args, **kwargs)

        patched._dbx_patched = True  # type: ignore[attr-defined]
        return patched

    def option(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def patched(self: Any, key: str, value: Any) -> Any:
            return fn(self, key, map_paths(value) if key.lower() in _PATH_OPTIONS else value)

        return patched

    def options(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def patched(self: Any, **opts: Any) -> Any:
            return fn(self, **{k: map_paths(v) if k.lower() in _PATH_OPTIONS else v for k, v in opts.items()})

        return patched

    def path_kwargs_only(fn: Callable) -> Callable:  # saveAsTable(name, ..., path=...)
        @functools.wraps(fn)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(self, *args, **{k: map_paths(v) if k.lower() in _PATH_OPTIONS else v for k, v in kwargs.items()})

        return patched

    DataFrameWriter.saveAsTable = path_kwargs_only(DataFrameWriter.saveAsTable)  # type: ignore[method-assign]
    readers = ("load", "csv", "json", "parquet", "text", "orc")
    writers = ("save", "csv", "json", "parquet", "text", "orc", "start")
    for cls, methods in (
        (DataFrameReader, readers),
        (DataStreamReader, readers),
        (DataFrameWriter, writers),
        (DataStreamWriter, writers),
    ):
        for name in methods:
            if hasattr(cls, name):
                setattr(cls, name, first_arg(getattr(cls, name)))
        for attr, wrap in (("option", option), ("options", options)):  # every class has both
            setattr(cls, attr, wrap(getattr(cls, attr)))

    orig_sql = SparkSession.sql

    @functools.wraps(orig_sql)
    def sql(self: Any, sqlQuery: str, *args: Any, **kwargs: Any) -> Any:
        return orig_sql(self, mapper.sql(sqlQuery) if isinstance(sqlQuery, str) else sqlQuery, *args, **kwargs)

    sql._dbx_patched = True  # type: ignore[attr-defined]
    SparkSession.sql = sql  # type: ignore[method-assign]
