"""PyPI libraries of a task or cluster (`libraries: [{"pypi": {"package": ...}}]`), installed
the way a Databricks cluster installs them: once per cluster, before the task runs.

What needs no install (the runtime "provides" it, like a Databricks Runtime's preinstalled
libraries):
  1. a requirement already satisfied by the runtime's own environment (the Python that runs
     the cluster) or by what this cluster installed before;
  2. `dbt-databricks`: a dbt task with `warehouse_id` runs on a generated local profile that
     uses dbt-spark `method: session` on the cluster's SparkSession, so the network driver of
     dbt-databricks is never used. The adapter counts as provided when the runtime's dbt-core
     is in a release series the requirement admits (dbt adapters are versioned in step with
     dbt-core's minor version); e.g. `dbt-databricks>=1.11,<1.12` on dbt-core 1.11.x.

Everything else is resolved against the runtime's environment (so only what is missing is
installed, never a second copy of pyspark) and installed with uv (pip if uv is absent) into
STATE/clusters/<cluster_id>/site-packages, through a download cache that all clusters share
(STATE/library_cache): a second cluster installs the same wheels without downloading them.
That directory goes first on the task's sys.path (cluster libraries take precedence, as on
Databricks), on PYTHONPATH for its subprocesses and on Spark's Python workers' PYTHONPATH.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .contract import StoragePaths

INSTALL_TIMEOUT_SECONDS = 600
_DETAIL_LIMIT = 1500
_PROVIDED_ADAPTERS = frozenset({"dbt-databricks"})


class LibraryInstallError(RuntimeError):
    """One library could not be installed; str() is Databricks' state message for it."""

    def __init__(self, package: str, cluster_id: str, detail: str):
        self.package = package
        self.detail = detail
        super().__init__(failure_message(package, cluster_id, detail))


@dataclass
class InstallReport:
    site_dir: Path
    installed: list[str] = field(default_factory=list)  # pinned requirements installed by this call
    provided: list[str] = field(default_factory=list)  # requirements the runtime already satisfied
    seconds: float = 0.0


def failure_message(package: str, cluster_id: str, detail: str) -> str:
    """The wording of a Databricks run whose pypi library failed to install on the driver."""
    detail = detail.strip() or "unknown error"
    if len(detail) > _DETAIL_LIMIT:
        detail = (
            detail[:_DETAIL_LIMIT]
            + f"\n***WARNING: message truncated. Skipped {len(detail) - _DETAIL_LIMIT} bytes of output**"
        )
    return (
        f'Library installation failed for library due to user error for pypi {{\n  package: "{package}"\n}}\n'
        f" Error messages:\nLibrary installation attempted on the driver node of cluster {cluster_id} and failed. "
        "Please refer to the following error message to fix the library or contact Databricks support. "
        f"Error Code: DRIVER_LIBRARY_INSTALLATION_FAILURE. Error Message: {detail}"
    )


def ensure_installed(specs: list[str], cluster_id: str, paths: StoragePaths) -> InstallReport:
    """Install what `specs` need on this cluster; raises LibraryInstallError for the first bad one."""
    started = time.monotonic()
    site_dir = paths.cluster_libraries(cluster_id)
    site_dir.mkdir(parents=True, exist_ok=True)
    report = InstallReport(site_dir)
    wanted = list(dict.fromkeys(s.strip() for s in specs if s and s.strip()))
    if not wanted:
        return report
    # Tasks sharing a cluster install one at a time: the second sees the first's packages.
    with open(site_dir.parent / "libraries.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = []
        for spec in wanted:
            req = _parse(spec, cluster_id)
            if _provided(req, site_dir):
                report.provided.append(spec)
            else:
                missing.append(spec)
        if missing:
            installer = _Installer.find()
            if installer is None:
                raise LibraryInstallError(
                    missing[0], cluster_id, "Neither uv nor pip is available to the local runtime."
                )
            pins: list[str] = []
            for spec in missing:  # one resolution per library, so a failure names its library
                pins.extend(p for p in installer.resolve(spec, paths.library_cache, cluster_id) if p not in pins)
            if pins:
                installer.install(pins, site_dir, paths.library_cache, missing[0], cluster_id)
            report.installed = pins
            importlib_invalidate()
    report.seconds = time.monotonic() - started
    return report


def activate(site_dir: Path) -> None:
    """Make the cluster's libraries importable here and in processes this task starts."""
    entry = str(site_dir)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    current = os.environ.get("PYTHONPATH", "")
    if entry not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = entry + (os.pathsep + current if current else "")
    importlib_invalidate()


def importlib_invalidate() -> None:
    import importlib

    importlib.invalidate_caches()


# ----------------------------------------------------------------------------------- rules
def _parse(spec: str, cluster_id: str) -> Requirement:
    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        raise LibraryInstallError(spec, cluster_id, f"ERROR: Invalid requirement: {spec!r}: {exc}") from None


def _installed_version(name: str, site_dir: Path) -> Version | None:
    for path in ([str(site_dir)], None):  # the cluster's libraries first, as on its sys.path
        try:
            dist = (
                metadata.distribution(name)
                if path is None
                else next(iter(metadata.distributions(name=name, path=path)))
            )
            return Version(dist.version)
        except (metadata.PackageNotFoundError, StopIteration, InvalidVersion):
            continue
    return None


def _provided(req: Requirement, site_dir: Path) -> bool:
    if req.marker is not None and not req.marker.evaluate():
        return True  # not for this platform: pip would skip it too
    if req.url:
        return False
    name = canonicalize_name(req.name)
    if name in _PROVIDED_ADAPTERS:
        return _dbt_adapter_provided(req)
    version = _installed_version(name, site_dir)
    return version is not None and req.specifier.contains(version, prereleases=True)


def _dbt_adapter_provided(req: Requirement) -> bool:
    try:
        core = Version(metadata.version("dbt-core"))
        metadata.version("dbt-spark")
    except (metadata.PackageNotFoundError, InvalidVersion):
        return False
    series = [core, *(Version(f"{core.major}.{core.minor}.{patch}") for patch in range(0, 30))]
    return any(req.specifier.contains(v, prereleases=True) for v in series)


def dbt_adapter_rule_failure(spec: str) -> str | None:
    """Why a provided adapter requirement cannot be met locally (None: it can)."""
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return None
    if canonicalize_name(req.name) not in _PROVIDED_ADAPTERS or _dbt_adapter_provided(req):
        return None
    try:
        core = metadata.version("dbt-core")
    except metadata.PackageNotFoundError:
        core = "none"
    return (
        f"The local runtime provides dbt-core {core} with dbt-spark (method: session) in place of {req.name}; "
        f"{spec!r} asks for another dbt release series."
    )


# ----------------------------------------------------------------------------------- installers
class _Installer:
    def __init__(self, kind: str, argv: list[str]):
        self.kind = kind  # "uv" | "pip"
        self.argv = argv

    @classmethod
    def find(cls) -> _Installer | None:
        uv = shutil.which("uv")
        if uv is None:
            try:
                from uv import find_uv_bin  # the `uv` wheel, when pip installed it for this Python

                uv = find_uv_bin()
            except (ImportError, FileNotFoundError):
                uv = None
        if uv is not None:
            return cls("uv", [uv, "pip"])
        try:
            import pip  # noqa: F401
        except ImportError:
            return None
        return cls("pip", [sys.executable, "-m", "pip"])

    def resolve(self, spec: str, cache: Path, cluster_id: str) -> list[str]:
        """The pinned requirements installing `spec` into the runtime's environment would add."""
        failure = dbt_adapter_rule_failure(spec)
        if failure is not None:
            raise LibraryInstallError(spec, cluster_id, failure)
        if self.kind == "uv":
            out, err = self._run(
                [
                    "install",
                    "--dry-run",
                    "--python",
                    sys.executable,
                    "--cache-dir",
                    str(cache / "uv"),
                    "--no-progress",
                    "--color",
                    "never",
                    spec,
                ],
                spec,
                cluster_id,
            )
            # uv lists what it would add as " + name==version" (or " + name @ url").
            return [m.group(1).strip() for m in re.finditer(r"^ \+ (.+)$", out + err, re.MULTILINE)]
        out, _ = self._run(
            [
                "install",
                "--dry-run",
                "--quiet",
                "--report",
                "-",
                "--cache-dir",
                str(cache / "pip"),
                "--disable-pip-version-check",
                spec,
            ],
            spec,
            cluster_id,
        )
        report = json.loads(out)
        return [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in report.get("install", [])]

    def install(self, pins: list[str], site_dir: Path, cache: Path, package: str, cluster_id: str) -> None:
        if self.kind == "uv":
            self._run(
                [
                    "install",
                    "--python",
                    sys.executable,
                    "--target",
                    str(site_dir),
                    "--no-deps",
                    "--cache-dir",
                    str(cache / "uv"),
                    "--no-progress",
                    "--color",
                    "never",
                    *pins,
                ],
                package,
                cluster_id,
            )
        else:
            self._run(
                [
                    "install",
                    "--target",
                    str(site_dir),
                    "--no-deps",
                    "--upgrade",
                    "--cache-dir",
                    str(cache / "pip"),
                    "--disable-pip-version-check",
                    *pins,
                ],
                package,
                cluster_id,
            )

    def _run(self, args: list[str], package: str, cluster_id: str) -> tuple[str, str]:
        print(f"[local runtime] {self.kind} pip {' '.join(args)}", flush=True)
        try:
            proc = subprocess.run(
                [*self.argv, *args],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise LibraryInstallError(
                package, cluster_id, f"Installation timed out after {INSTALL_TIMEOUT_SECONDS} s"
            ) from None
        sys.stdout.write(proc.stderr)
        if proc.returncode != 0:
            detail = "\n".join(
                line
                for line in (proc.stderr or proc.stdout).splitlines()
                if line.strip() and not line.startswith("Using Python")
            )
            raise LibraryInstallError(package, cluster_id, detail)
        return proc.stdout, proc.stderr
