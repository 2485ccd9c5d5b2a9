"""The dbt project on disk: which files make it up, and a manifest.json that matches them.

`python -m dbx_assets.integration.dbt.project prepare` runs dbt's own parser (`dbt parse`) and records a
fingerprint of the project's files next to the manifest. Loading definitions then only
reads JSON: it never runs dbt when the manifest is present and current. Under `dagster dev`
a missing or stale manifest is re-parsed (as dagster-dbt's `prepare_if_dev` does); anywhere
else a missing manifest is an error that says exactly what to run.

Imports nothing from Dagster, so the CLI and the fingerprint stay cheap.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DEFAULT_PREPARE_TARGET = "local"  # parse needs an installed adapter; dbt-spark is the local one

TARGET_DIR = "target"
MANIFEST_NAME = "manifest.json"
FINGERPRINT_NAME = "dbx_assets_fingerprint.txt"

# dbt's own outputs and per-machine files: never part of the project we sync or fingerprint.
EXCLUDED_DIRS = frozenset({TARGET_DIR, "logs", "dbt_packages", "__pycache__"})
EXCLUDED_FILES = frozenset({".user.yml"})


class DbtManifestError(RuntimeError):
    """The dbt manifest is missing or could not be built (the message says what to run)."""


def prepare_command(project_dir: Path) -> str:
    """The exact command a user runs to (re)build the manifest."""
    suffix = "" if project_dir.resolve() == DEFAULT_PROJECT_DIR else f" --project-dir {project_dir}"
    return f"python -m dbx_assets.integration.dbt.project prepare{suffix}"


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


def prepare(project_dir: Path = DEFAULT_PROJECT_DIR, *, target: str = DEFAULT_PREPARE_TARGET) -> Path:
    """Run `dbt parse` in this process (dbt's programmatic runner) and record the fingerprint."""
    project_dir = project_dir.resolve()
    if not (project_dir / "dbt_project.yml").exists():
        raise DbtManifestError(f"No dbt_project.yml in {project_dir}; pass the dbt project directory with --project-dir.")
    from dbt.cli.main import dbtRunner  # dbt is heavy (~5 s to import); only the prepare path pays for it

    fingerprint = project_fingerprint(project_dir)  # taken before parsing: edits during parse count as stale
    (project_dir / TARGET_DIR).mkdir(exist_ok=True)
    with open(project_dir / TARGET_DIR / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two code servers reloading at once parse once each, not interleaved
        result = dbtRunner().invoke(
            [
                "parse",
                "--project-dir", str(project_dir),
                "--profiles-dir", str(project_dir),
                "--target", target,
                "--quiet",
            ]
        )
        if not result.success:
            reason = f"{type(result.exception).__name__}: {result.exception}" if result.exception else "see dbt's output above"
            raise DbtManifestError(f"`dbt parse` of {project_dir} (target {target}) failed: {reason}")
        _fingerprint_path(project_dir).write_text(fingerprint + "\n")
    return manifest_path(project_dir)


def _prepare_in_subprocess(project_dir: Path) -> None:
    """Re-parse without loading dbt into this (long-lived code server) process."""
    proc = subprocess.run(
        [sys.executable, "-m", "dbx_assets.integration.dbt.manifest", "prepare", "--project-dir", str(project_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DbtManifestError(f"Preparing the dbt manifest of {project_dir} failed: {tail[0]}. Run `{prepare_command(project_dir)}` to see dbt's output.")


def using_dagster_dev() -> bool:
    return bool(os.getenv("DAGSTER_IS_DEV_CLI"))  # set by `dagster dev` (dagster-dbt keys off it too)


def load_manifest(project_dir: Path) -> dict[str, Any]:
    """The project's manifest as JSON, re-parsed first only under `dagster dev` when missing/stale."""
    path = manifest_path(project_dir)
    current = manifest_is_current(project_dir)
    if not current and using_dagster_dev():
        logger.info("dbt manifest of %s is missing or stale; running dbt parse (dagster dev).", project_dir)
        _prepare_in_subprocess(project_dir)
    elif not path.exists():
        raise DbtManifestError(
            f"dbt manifest not found at {path}. Run `{prepare_command(project_dir)}` (part of `make setup`) to build it."
        )
    elif not current:
        logger.warning(
            "dbt manifest %s does not match the project files (edited since the last prepare); "
            "asset definitions may be out of date. Run `%s`.",
            path,
            prepare_command(project_dir),
        )
    with open(path, "rb") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbx_assets.integration.dbt.project", description="dbt project tasks for dbx_assets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="run `dbt parse` to write target/manifest.json")
    p.add_argument("--project-dir", type=Path, default=DEFAULT_PROJECT_DIR)
    p.add_argument("--target", default=DEFAULT_PREPARE_TARGET, help="profile target to parse with (default: local)")
    p.add_argument("--if-stale", action="store_true", help="do nothing when the manifest matches the project files")
    args = parser.parse_args(argv)
    if args.if_stale and manifest_is_current(args.project_dir.resolve()):
        print(f"dbt manifest is current: {manifest_path(args.project_dir.resolve())}")
        return 0
    try:
        path = prepare(args.project_dir, target=args.target)
    except DbtManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"dbt manifest written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
