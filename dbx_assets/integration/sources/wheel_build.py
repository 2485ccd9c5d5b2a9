"""A Python project (a folder with a pyproject.toml) built into a wheel for deploy, only when its
sources changed.

`WheelProject.read` (definitions load) reads pyproject.toml and hashes the project's source files;
it builds and calls nothing. The wheel's file name is known from that alone
(`<name>-<version>-py3-none-any.whl`), so the job spec names it at load. `build_wheel` (deploy,
at materialization) runs `uv build --wheel` on a copy of exactly the hashed files and keeps the
result under `<build_dir>/<name>-<source hash>/`: a later deploy with the same sources finds it
there and builds nothing. Only pure-Python wheels (`*-none-any`) are accepted: a cluster installs
the one file whatever its platform.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from dbx_assets.integration.jobs.model import WorkflowDefinitionError

BUILD_TIMEOUT_SECONDS = 600
# Not sources: build outputs, caches, environments and VCS folders anywhere in the project.
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "__pycache__",
        "build",
        "dist",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".eggs",
        "node_modules",
        ".idea",
        ".vscode",
        ".databricks",
    }
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


class WheelBuildError(RuntimeError):
    """The wheel could not be built at deploy (the step fails with this message)."""


def default_build_dir() -> Path:
    """Built wheels, per project and source hash: `$XDG_CACHE_HOME/dbx-assets/wheels` (~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dbx-assets" / "wheels"


@dataclass(frozen=True)
class WheelProject:
    project_dir: Path
    name: str  # [project].name as declared
    version: str  # normalized, as in the wheel's file name
    description: str | None
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)  # group -> name -> "module:function"
    source_files: tuple[str, ...] = ()  # relative posix paths, sorted
    source_hash: str = ""

    @classmethod
    def read(cls, project_dir: Path | str) -> WheelProject:
        """pyproject.toml's name, version and entry points, and a hash of the project's sources."""
        folder = Path(project_dir)
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            raise WorkflowDefinitionError(f"Python wheel project {folder} has no pyproject.toml.")
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise WorkflowDefinitionError(f"{pyproject} is not valid TOML: {exc}.") from None
        project = data.get("project") or {}
        name = project.get("name")
        if not isinstance(name, str) or not name:
            raise WorkflowDefinitionError(f"{pyproject} has no [project] name.")
        if "version" in (project.get("dynamic") or []) or not isinstance(project.get("version"), str):
            raise WorkflowDefinitionError(
                f"{pyproject}: the wheel's file name goes into the job spec at definitions load, which builds nothing, "
                f'so [project] needs a static version (e.g. version = "0.1.0"), not a dynamic one.'
            )
        try:
            version = str(Version(project["version"]))
        except InvalidVersion:
            raise WorkflowDefinitionError(
                f"{pyproject}: version {project['version']!r} is not a valid version."
            ) from None
        entry_points = {str(g): dict(v) for g, v in (project.get("entry-points") or {}).items()}
        if project.get("scripts"):
            entry_points["console_scripts"] = dict(project["scripts"])
        files = tuple(_source_files(folder))
        digest = hashlib.sha256()
        for rel in files:
            digest.update(f"{rel}\0".encode() + (folder / rel).read_bytes() + b"\0")
        description = project.get("description")
        return cls(
            project_dir=folder,
            name=name,
            version=version,
            description=description if isinstance(description, str) else None,
            entry_points=entry_points,
            source_files=files,
            source_hash=digest.hexdigest()[:16],
        )

    @property
    def distribution(self) -> str:
        """The name as wheel file names spell it: lowercase, runs of -_. as one underscore."""
        return re.sub(r"[-_.]+", "_", self.name).lower()

    @property
    def wheel_name(self) -> str:
        return f"{self.distribution}-{self.version}-py3-none-any.whl"

    def has_entry_point(self, name: str) -> bool:
        return any(name in group for group in self.entry_points.values())


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    built: bool  # False: an earlier build of the same sources was reused


def build_wheel(project: WheelProject, build_dir: Path) -> BuiltWheel:
    """The project's wheel for its current sources: built with `uv build --wheel` unless a wheel of
    the same source hash is already in `build_dir`. Safe against concurrent deploys (a file lock)."""
    target = build_dir / f"{project.distribution}-{project.source_hash}"
    wheel = target / project.wheel_name
    if wheel.is_file():
        return BuiltWheel(wheel, built=False)
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir / f".{project.distribution}.lock"):
        if wheel.is_file():  # another deploy built it while we waited
            return BuiltWheel(wheel, built=False)
        _check_unchanged(project)
        with tempfile.TemporaryDirectory(dir=build_dir, prefix=".build-") as tmp:
            source, out = Path(tmp) / "src", Path(tmp) / "out"
            for rel in project.source_files:  # exactly the files the hash covers
                (source / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(project.project_dir / rel, source / rel)
            _run_uv_build(project, source, out)
            built = sorted(out.glob("*.whl"))
            if len(built) != 1:
                raise WheelBuildError(f"uv build produced {len(built)} wheels for {project.project_dir}, expected one.")
            _check_wheel(project, built[0].name)
            staged = Path(tmp) / "staged"
            staged.mkdir()
            shutil.move(built[0], staged / project.wheel_name)  # a py2.py3 tag becomes py3: one file name at load
            if target.exists():  # what a build interrupted before its wheel was in place left behind
                shutil.rmtree(target)
            os.replace(staged, target)
    return BuiltWheel(wheel, built=True)


def _source_files(folder: Path) -> Iterator[str]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS and not d.endswith(IGNORED_SUFFIXES))
        for name in sorted(files):
            if not name.endswith(IGNORED_SUFFIXES):
                yield (Path(root) / name).relative_to(folder).as_posix()


def _check_unchanged(project: WheelProject) -> None:
    """The sources on disk are still those read at load: otherwise the wheel would not match the job
    spec's file name or the assets' code version."""
    current = WheelProject.read(project.project_dir)
    if (current.source_hash, current.version, current.name) != (project.source_hash, project.version, project.name):
        raise WheelBuildError(
            f"The sources of {project.project_dir} changed since the definitions were loaded; reload the code "
            "location to deploy the new version."
        )


def _check_wheel(project: WheelProject, filename: str) -> None:
    try:
        name, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise WheelBuildError(f"uv build produced {filename}, not a valid wheel file name: {exc}") from None
    if name != canonicalize_name(project.name) or str(version) != project.version:
        raise WheelBuildError(
            f"uv build produced {filename} for project {project.name} {project.version} ({project.project_dir})."
        )
    if any(t.abi != "none" or t.platform != "any" or not t.interpreter.startswith("py") for t in tags):
        raise WheelBuildError(
            f"{project.project_dir} builds a platform-specific wheel ({filename}); wheel tasks take pure-Python "
            "wheels (py3-none-any)."
        )


def _uv() -> list[str]:
    beside = Path(sys.executable).parent / "uv"
    found = shutil.which("uv") or (str(beside) if beside.is_file() else None)
    if found:
        return [found]
    try:
        from uv import find_uv_bin  # the `uv` wheel, when pip installed it

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        raise WheelBuildError(
            "Building a Python wheel at deploy needs uv (https://docs.astral.sh/uv/): `pip install uv`."
        ) from None


def _run_uv_build(project: WheelProject, source: Path, out: Path) -> None:
    argv = [*_uv(), "build", "--wheel", "--out-dir", str(out), "--python", sys.executable, "--no-progress", str(source)]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise WheelBuildError(
            f"uv build of {project.project_dir} did not finish within {BUILD_TIMEOUT_SECONDS} s."
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise WheelBuildError(f"uv build of {project.project_dir} failed (exit {proc.returncode}):\n{tail}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
