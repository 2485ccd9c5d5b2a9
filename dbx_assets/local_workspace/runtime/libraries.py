"""PyPI and wheel libraries of a task or cluster (`libraries: [{"pypi": {"package": ...}}]`,
`[{"whl": "/Workspace/.../x.whl"}]`), installed the way a Databricks cluster installs them: once
per cluster, before the task runs.

What needs no install (the runtime "provides" it, like a Databricks Runtime's preinstalled
libraries):
  1. a requirement already satisfied by the runtime's own environment (the Python that runs
     the cluster) or by what this cluster installed before;
  2. `dbt-databricks`: the runtime has its own (its SQL connector replaced by the cluster's
     session, dbsql_session.py); a second copy would bring another dbt-core. The adapter counts
     as provided when the runtime's dbt-databricks satisfies the requirement, or when the
     runtime's dbt-core is in a release series the requirement admits (dbt adapters are
     versioned in step with dbt-core's minor version); e.g. `dbt-databricks>=1.11,<1.12` on
     dbt-core 1.11.x.

Everything else is resolved against the runtime's environment (so only what is missing is
installed, never a second copy of pyspark) and installed with uv (pip if uv is absent) into
STATE/clusters/<cluster_id>/site-packages, through a download cache that all clusters share
(STATE/library_cache): a second cluster installs the same wheels without downloading them.
That directory goes first on the task's sys.path (cluster libraries take precedence, as on
Databricks), on PYTHONPATH for its subprocesses and on Spark's Python workers' PYTHONPATH.

A wheel (a workspace, volume or DBFS file; the engine resolves its path) installs the same way,
with the dependencies it declares that the runtime lacks. It is installed once per cluster per
content: a second task with the same wheel file finds it there (recorded by path and sha256 next
to the site dir), a changed file at the same path is installed again over the old one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .contract import StoragePaths

INSTALL_TIMEOUT_SECONDS = 600
_DETAIL_LIMIT = 1500
_PROVIDED_ADAPTERS = frozenset({"dbt-databricks"})
_WHEELS_RECORD = "wheels.json"  # next to site-packages: wheel file -> sha256 of what was installed from it


class LibraryInstallError(RuntimeError):
    """One library could not be installed; str() is Databricks' state message for it."""

    def __init__(self, package: str, cluster_id: str, detail: str, kind: str = "pypi"):
        self.package = package
        self.detail = detail
        super().__init__(failure_message(package, cluster_id, detail, kind))


@dataclass
class InstallReport:
    site_dir: Path
    installed: list[str] = field(default_factory=list)  # pinned requirements installed by this call
    provided: list[str] = field(default_factory=list)  # requirements the runtime already satisfied
    seconds: float = 0.0


def failure_message(package: str, cluster_id: str, detail: str, kind: str = "pypi") -> str:
    """The wording of a Databricks run whose pypi (or whl) library failed to install on the driver."""
    detail = detail.strip() or "unknown error"
    if len(detail) > _DETAIL_LIMIT:
        detail = (
            detail[:_DETAIL_LIMIT]
            + f"\n***WARNING: message truncated. Skipped {len(detail) - _DETAIL_LIMIT} bytes of output**"
        )
    library = f'pypi {{\n  package: "{package}"\n}}' if kind == "pypi" else f'{kind}: "{package}"'
    return (
        f"Library installation failed for library due to user error for {library}\n"
        f" Error messages:\nLibrary installation attempted on the driver node of cluster {cluster_id} and failed. "
        "Please refer to the following error message to fix the library or contact Databricks support. "
        f"Error Code: DRIVER_LIBRARY_INSTALLATION_FAILURE. Error Message: {detail}"
    )


def ensure_installed(
    specs: list[str], cluster_id: str, paths: StoragePaths, wheels: Mapping[str, str] | None = None
) -> InstallReport:
    """Install what `specs` (pip requirements) and `wheels` (declared path -> local file) need on this
    cluster; raises LibraryInstallError for the first bad one."""
    started = time.monotonic()
    site_dir = paths.cluster_libraries(cluster_id)
    site_dir.mkdir(parents=True, exist_ok=True)
    report = InstallReport(site_dir)
    wanted = list(dict.fromkeys(s.strip() for s in specs if s and s.strip()))
    if not wanted and not wheels:
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
        for declared, local in (wheels or {}).items():
            _install_wheel(declared, Path(local), site_dir, paths, cluster_id, report)
    report.seconds = time.monotonic() - started
    return report


def _install_wheel(
    declared: str, local: Path, site_dir: Path, paths: StoragePaths, cluster_id: str, report: InstallReport
) -> None:
    """One wheel file with the dependencies the runtime lacks, unless this cluster installed this very
    file (same content) before. Runs under the cluster's libraries lock."""
    if not local.is_file():
        raise LibraryInstallError(
            declared, cluster_id, f"java.io.FileNotFoundException: {declared} (No such file or directory)", "whl"
        )
    try:
        name = parse_wheel_filename(local.name)[0]
    except InvalidWheelFilename as exc:
        raise LibraryInstallError(
            declared, cluster_id, f"ERROR: {local.name} is not a valid wheel filename: {exc}", "whl"
        ) from None
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    record_file = site_dir.parent / _WHEELS_RECORD
    try:
        record = json.loads(record_file.read_text())
    except (FileNotFoundError, ValueError):
        record = {}
    if record.get(str(local)) == digest:
        report.provided.append(declared)
        return
    installer = _Installer.find()
    if installer is None:
        raise LibraryInstallError(declared, cluster_id, "Neither uv nor pip is available to the local runtime.", "whl")
    pins = installer.resolve(str(local), paths.library_cache, cluster_id, label=declared, kind="whl")
    deps = [p for p in pins if canonicalize_name(re.split(r"[\s=<>!~;@\[(]", p, maxsplit=1)[0]) != name]
    installer.install(
        [str(local), *deps], site_dir, paths.library_cache, declared, cluster_id, kind="whl", reinstall=name
    )
    record[str(local)] = digest
    record_file.write_text(json.dumps(record, indent=1))
    report.installed.extend([declared, *deps])
    importlib_invalidate()


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
        adapter = Version(metadata.version(req.name))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return False
    if req.specifier.contains(adapter, prereleases=True):
        return True
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
        core, adapter = metadata.version("dbt-core"), metadata.version(req.name)
    except metadata.PackageNotFoundError:
        core, adapter = "none", "none"
    return (
        f"The local runtime provides {req.name} {adapter} on dbt-core {core}; {spec!r} asks for another dbt "
        "release series."
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

    def resolve(
        self, spec: str, cache: Path, cluster_id: str, label: str | None = None, kind: str = "pypi"
    ) -> list[str]:
        """The pinned requirements installing `spec` (a requirement or a wheel file) into the runtime's
        environment would add; a failure names `label` (default: the spec) as a `kind` library."""
        label = label or spec
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
                label,
                cluster_id,
                kind,
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
            label,
            cluster_id,
            kind,
        )
        report = json.loads(out)
        return [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in report.get("install", [])]

    def install(
        self,
        pins: list[str],
        site_dir: Path,
        cache: Path,
        package: str,
        cluster_id: str,
        kind: str = "pypi",
        reinstall: str | None = None,
    ) -> None:
        """`reinstall`: a distribution to install again even if the site dir has that version (a rebuilt
        wheel keeps its version)."""
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
                    *(["--reinstall-package", reinstall] if reinstall else []),
                    *pins,
                ],
                package,
                cluster_id,
                kind,
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
                    *(["--force-reinstall"] if reinstall else []),
                    *pins,
                ],
                package,
                cluster_id,
                kind,
            )

    def _run(self, args: list[str], package: str, cluster_id: str, kind: str = "pypi") -> tuple[str, str]:
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
                package, cluster_id, f"Installation timed out after {INSTALL_TIMEOUT_SECONDS} s", kind
            ) from None
        sys.stdout.write(proc.stderr)
        if proc.returncode != 0:
            detail = "\n".join(
                line
                for line in (proc.stderr or proc.stdout).splitlines()
                if line.strip() and not line.startswith("Using Python")
            )
            raise LibraryInstallError(package, cluster_id, detail, kind)
        return proc.stdout, proc.stderr
