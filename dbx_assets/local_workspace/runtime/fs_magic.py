"""`%fs`: the notebook magic for dbutils.fs, as Databricks reads it.

    %fs ls dbfs:/landing                      a table of path, name, size, modificationTime
    %fs head [--maxBytes=N] /path             the file's first bytes (64 KB by default)
    %fs cp [-r|--recurse=true] SRC DST        %fs mv [-r] SRC DST
    %fs rm [-r|--recurse=true] PATH           %fs mkdirs PATH
    %fs put [-f|--overwrite=true] PATH "contents"

Paths are dbutils.fs paths (`dbfs:/x`, `/x` in DBFS, `/Volumes/...`); each command is the existing
dbutils.fs call (runtime/dbutils.py), so the magic and the Python API cannot disagree.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

COMMANDS = ("ls", "head", "cp", "mv", "rm", "mkdirs", "put")
LS_SCHEMA = "path string, name string, size bigint, modificationTime bigint"


class FsMagicError(ValueError):
    pass


def parse_fs_command(line: str) -> tuple[str, list[str], dict[str, str]]:
    """`cp -r a b` -> ("cp", ["a", "b"], {"recurse": "true"})."""
    line = line.strip()
    try:
        words = shlex.split(line, posix=True)
    except ValueError as exc:
        raise FsMagicError(f"Cannot parse %fs {line.strip()}: {exc}") from None
    if not words:
        raise FsMagicError("%fs needs a command: " + ", ".join(COMMANDS))
    command, args, options = words[0], [], {}
    aliases = {"-r": "recurse", "-f": "overwrite"}
    for word in words[1:]:
        if word in aliases:
            options[aliases[word]] = "true"
        elif word.startswith("--") and len(word) > 2:
            name, _, value = word[2:].partition("=")
            options[name] = value or "true"
        else:
            args.append(word)
    return command, args, options


_OPTIONS = {"ls": (), "head": ("maxBytes",), "cp": ("recurse",), "mv": ("recurse",), "rm": ("recurse",)}
_OPTIONS |= {"mkdirs": (), "put": ("overwrite",)}
_USAGE = {
    "ls": ("PATH", 1),
    "head": ("[--maxBytes=N] PATH", 1),
    "cp": ("[-r] FROM TO", 2),
    "mv": ("[-r] FROM TO", 2),
    "rm": ("[-r] PATH", 1),
    "mkdirs": ("PATH", 1),
    "put": ('[-f] PATH "CONTENTS"', 2),
}


def _flag(options: dict[str, str], name: str) -> bool:
    value = options.get(name, "false").lower()
    if value not in ("true", "false"):
        raise FsMagicError(f"--{name} must be true or false, got {value!r}")
    return value == "true"


def run_fs_magic(text: str, fs: Any, display: Callable[[Any], None], spark: Any = None) -> Any:
    """Run a %fs cell: one command (a quoted `put` content may span lines)."""
    command, args, options = parse_fs_command(text)
    if command not in _OPTIONS:
        raise FsMagicError(f"%fs {command} is not supported on the local workspace; use one of {', '.join(COMMANDS)}.")
    unknown = [name for name in options if name not in _OPTIONS[command]]
    if unknown:
        raise FsMagicError(f"%fs {command} does not take --{unknown[0]}")
    if command == "ls" and not args:
        args = ["/"]
    usage, arity = _USAGE[command]
    if len(args) != arity:
        raise FsMagicError(f"Usage: %fs {command} {usage}")
    result: Any
    if command == "ls":
        infos = fs.ls(args[0])
        rows = [(f.path, f.name, f.size, f.modificationTime) for f in infos]
        result = spark.createDataFrame(rows, LS_SCHEMA) if spark is not None else infos
        display(result)
        return result
    if command == "head":
        raw = options.get("maxBytes", "65536")
        if not raw.isdigit():
            raise FsMagicError(f"--maxBytes must be a number of bytes, got {raw!r}")
        result = fs.head(args[0], int(raw))
        print(result, flush=True)
        return result
    if command in ("cp", "mv"):
        result = getattr(fs, command)(args[0], args[1], _flag(options, "recurse"))
    elif command == "rm":
        result = fs.rm(args[0], _flag(options, "recurse"))
    elif command == "mkdirs":
        result = fs.mkdirs(args[0])
    else:  # put
        result = fs.put(args[0], args[1], _flag(options, "overwrite"))
        print(f"Wrote {len(args[1].encode())} bytes.", flush=True)
        return result
    print(result, flush=True)
    return result
