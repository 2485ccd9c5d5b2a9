"""The dbt project on disk: which files make it up, and a manifest.json that matches them.

`python -m dbx_assets.integration.dbt prepare --project-dir DIR` runs dbt's own parser
(`dbt parse`) and records a fingerprint of the project's files next to the manifest. Loading
definitions then only reads JSON: it never runs dbt when the manifest is present and current.
Under `dagster dev` (dagster-dbt's `DbtProjectPreparer.using_dagster_dev()`) a missing or stale
manifest is re-parsed; anywhere else a missing manifest is an error that says exactly what to run.

Nothing here has a default location: every function takes the project directory.

The module imports nothing from Dagster at import time, so the CLI's `--if-stale` no-op stays
instant; only `load_manifest` (called by code that has already imported dagster-dbt) uses it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

TARGET_DIR = "target"
MANIFEST_NAME = "manifest.json"
FINGERPRINT_NAME = "dbx_assets_fingerprint.txt"
CLI_MODULE = "dbx_assets.integration.dbt"

# dbt's own outputs and per-machine files: never part of the project we sync or fingerprint.
EXCLUDED_DIRS = frozenset({TARGET_DIR, "logs", "dbt_packages", "__pycache__"})
EXCLUDED_FILES = frozenset({".user.yml"})


class DbtManifestError(RuntimeError):
    """The dbt manifest is missing or could not be built (the message says what to run)."""


@dataclass(frozen=True)
class LoadedManifest:
    """A manifest as read from disk: its JSON and the sha256 of the exact bytes it came from."""

    path: Path
    sha256: str
    data: dict[str, Any]


def prepare_command(
    project_dir: Path,
    *,
    target: str | None = None,
    profiles_dir: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
) -> str:
    """The exact command a user runs to (re)build the manifest."""
    parts = ["python", "-m", CLI_MODULE, "prepare", "--project-dir", str(project_dir)]
    if target:
        parts += ["--target", target]
    if profiles_dir:
        parts += ["--profiles-dir", str(profiles_dir)]
    if dbt_vars:
        parts += ["--vars", json.dumps(dict(dbt_vars), sort_keys=True)]
    return shlex.join(parts)


def manifest_path(project_dir: Path) -> Path:
    return project_dir / TARGET_DIR / MANIFEST_NAME


def project_files(project_dir: Path) -> dict[str, bytes]:
    """Relative POSIX path -> content of every file that makes up the project (sorted by path)."""
    files: dict[str, bytes] = {}
    for root, dirs, names in os.walk(project_dir):
        # prune in place so os.walk never descends into target/, logs/, ... or hidden dirs
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(names):
            if name in EXCLUDED_FILES or name.startswith("."):
                continue
            path = Path(root) / name
            files[path.relative_to(project_dir).as_posix()] = path.read_bytes()
    return dict(sorted(files.items()))


def project_fingerprint(project_dir: Path) -> str:
    digest = hashlib.sha256()
    for rel, content in project_files(project_dir).items():
        digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def _fingerprint_path(project_dir: Path) -> Path:
    return project_dir / TARGET_DIR / FINGERPRINT_NAME


def manifest_is_current(project_dir: Path) -> bool:
    fp = _fingerprint_path(project_dir)
    return (
        manifest_path(project_dir).exists()
        and fp.exists()
        and fp.read_text().strip() == project_fingerprint(project_dir)
    )


def prepare(
    project_dir: Path,
    *,
    target: str | None = None,
    profiles_dir: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
) -> Path:
    """Run `dbt parse` in this process (dbt's programmatic runner) and record the fingerprint.

    target: the profile target to parse with (None: the profile's default target).
    profiles_dir: where profiles.yml is (None: the project directory, as dagster-dbt assumes).
    dbt_vars: dbt's `--vars` (a profile or model reading `var('x')` without a default needs them to parse).
    """
    project_dir = project_dir.resolve()
    if not (project_dir / "dbt_project.yml").exists():
        raise DbtManifestError(
            f"No dbt_project.yml in {project_dir}; pass the dbt project directory with --project-dir."
        )
    from dbt.cli.main import dbtRunner  # dbt is heavy (~5 s to import); only the prepare path pays for it

    fingerprint = project_fingerprint(project_dir)  # taken before parsing: edits during parse count as stale
    args = ["parse", "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir or project_dir), "--quiet"]
    if target:
        args += ["--target", target]
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars), sort_keys=True)]
    (project_dir / TARGET_DIR).mkdir(exist_ok=True)
    with open(project_dir / TARGET_DIR / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two code servers reloading at once parse once each, not interleaved
        result = dbtRunner().invoke(args)
        if not result.success:
            reason = (
                f"{type(result.exception).__name__}: {result.exception}"
                if result.exception
                else "see dbt's output above"
            )
            raise DbtManifestError(f"`dbt parse` of {project_dir} (target {target or 'default'}) failed: {reason}")
        _fingerprint_path(project_dir).write_text(fingerprint + "\n")
    return manifest_path(project_dir)


def _prepare_in_subprocess(
    project_dir: Path, *, target: str | None, profiles_dir: Path | None, dbt_vars: Mapping[str, Any] | None
) -> None:
    """Re-parse without loading dbt into this (long-lived code server) process."""
    command = shlex.split(prepare_command(project_dir, target=target, profiles_dir=profiles_dir, dbt_vars=dbt_vars))
    proc = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DbtManifestError(
            f"Preparing the dbt manifest of {project_dir} failed: {tail[0]}. "
            f"Run `{prepare_command(project_dir, target=target, profiles_dir=profiles_dir, dbt_vars=dbt_vars)}` "
            "to see dbt's output."
        )


def read_manifest(path: Path) -> LoadedManifest:
    """Read once: the hash and the JSON come from the same bytes (a re-parse may replace the file)."""
    raw = path.read_bytes()
    return LoadedManifest(path=path, sha256=hashlib.sha256(raw).hexdigest(), data=json.loads(raw))


def load_manifest(
    project_dir: Path,
    *,
    target: str | None = None,
    profiles_dir: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
) -> LoadedManifest:
    """The project's manifest, re-parsed first only under `dagster dev` when missing or stale."""
    from dagster_dbt import DbtProject  # callers (the code location) have imported dagster-dbt already

    project = DbtProject(project_dir, target_path=TARGET_DIR, target=target, profiles_dir=profiles_dir)
    path = project.manifest_path
    current = manifest_is_current(project.project_dir)
    command = prepare_command(project.project_dir, target=target, profiles_dir=profiles_dir, dbt_vars=dbt_vars)
    # dagster-dbt's own "am I under `dagster dev`" (its default preparer would re-parse on every
    # load; we re-parse only when the files changed, and in a subprocess so dbt stays out of here)
    if not current and project.preparer.using_dagster_dev():
        logger.info("dbt manifest of %s is missing or stale; running dbt parse (dagster dev).", project.project_dir)
        _prepare_in_subprocess(project.project_dir, target=target, profiles_dir=profiles_dir, dbt_vars=dbt_vars)
    elif not path.exists():
        raise DbtManifestError(f"dbt manifest not found at {path}. Run `{command}` to build it.")
    elif not current:
        logger.warning(
            "dbt manifest %s does not match the project files (edited since the last prepare); "
            "asset definitions may be out of date. Run `%s`.",
            path,
            command,
        )
    return read_manifest(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {CLI_MODULE}", description="dbt project tasks for dbx_assets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="run `dbt parse` to write target/manifest.json")
    p.add_argument("--project-dir", type=Path, required=True, help="the dbt project directory (with dbt_project.yml)")
    p.add_argument(
        "--target", default=None, help="profile target to parse with (default: the profile's default target)"
    )
    p.add_argument(
        "--profiles-dir", type=Path, default=None, help="directory of profiles.yml (default: the project directory)"
    )
    p.add_argument("--vars", default=None, help="dbt's --vars, a YAML or JSON mapping, for parsing")
    p.add_argument("--if-stale", action="store_true", help="do nothing when the manifest matches the project files")
    args = parser.parse_args(argv)
    project_dir = args.project_dir.resolve()
    if args.if_stale and manifest_is_current(project_dir):
        print(f"dbt manifest is current: {manifest_path(project_dir)}")
        return 0
    try:
        dbt_vars = yaml.safe_load(args.vars) if args.vars else None
        path = prepare(project_dir, target=args.target, profiles_dir=args.profiles_dir, dbt_vars=dbt_vars)
    except DbtManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"dbt manifest written: {path}")
    return 0
