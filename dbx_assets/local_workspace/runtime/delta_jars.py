"""Delta Lake's jars for a local cluster, resolved once per machine.

A cluster's JVM runs Delta from Delta's own jars (`io.delta:delta-spark_2.12` and
`io.delta:delta-storage`, the build for Spark 3.5 / Scala 2.12), put on the driver's class path.
They are fetched from Maven Central over HTTPS into a per-machine cache beside the class-data-sharing
archive (`<jvm cache>/delta-<version>/`), checked against the SHA-1 sums pinned here (the ones
Maven Central publishes), by `make setup` (`python -m dbx_assets.local_workspace delta-jars`) or else by the first
cluster start; later starts do no network I/O. Their other dependencies (antlr4, scala-library)
are Spark's own jars.

- DBX_DELTA_JARS_DIR: a folder holding both jars under their Maven file names, for a machine that
  cannot reach a Maven repository; nothing is fetched then.
- DBX_MAVEN_REPOSITORY: a Maven repository (mirror) to fetch from instead of Maven Central.

Delta 3.3.3 is the newest 3.x release for Spark 3.5; 3.3.2 does not run on Spark 3.5.9 (it calls
a Spark internal whose signature changed). The `delta-spark` Python package pins the same version.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DELTA_VERSION = "3.3.3"
JARS_DIR_ENV = "DBX_DELTA_JARS_DIR"
REPOSITORY_ENV = "DBX_MAVEN_REPOSITORY"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
_FETCH_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class MavenJar:
    group: str
    artifact: str
    version: str
    sha1: str

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        return (
            f"{repository.rstrip('/')}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"
        )


DELTA_JARS = (
    MavenJar("io.delta", "delta-spark_2.12", DELTA_VERSION, "8083a378e42f6d04c5a78cb6e8566f59f4e9ed1c"),
    MavenJar("io.delta", "delta-storage", DELTA_VERSION, "a5bf8cebb3a669f83b14a8f4a707545ed861303d"),
)


class DeltaJarsUnavailable(RuntimeError):
    """Delta's jars are neither cached nor could be fetched; the message names the fix."""


def jvm_cache_dir(env: Mapping[str, str]) -> Path:
    """The per-machine JVM cache (the class archive's home): DBX_LOCAL_JVM_CACHE_DIR, else
    `$XDG_CACHE_HOME/dbx-assets/jvm` (~/.cache). `off` turns archives off, not the jar cache."""
    setting = env.get("DBX_LOCAL_JVM_CACHE_DIR", "")
    if setting and setting.lower() != "off":
        return Path(setting)
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dbx-assets" / "jvm"


def cache_dir(env: Mapping[str, str]) -> Path:
    return jvm_cache_dir(env) / f"delta-{DELTA_VERSION}"


def delta_jars(env: Mapping[str, str] = os.environ, *, fetch: bool = True) -> list[Path]:
    """The jar files to put on a driver's class path; fetched into the cache if missing (unless
    `fetch` is false). Raises DeltaJarsUnavailable with one clear message."""
    folder = env.get(JARS_DIR_ENV, "")
    if folder:
        return _from_folder(Path(folder))
    cache = cache_dir(env)
    paths = [cache / jar.file_name for jar in DELTA_JARS]
    if all(p.is_file() for p in paths):
        return paths  # written only after their checksum matched
    if not fetch:
        raise DeltaJarsUnavailable(_missing_message(f"they are not in {cache}"))
    repository = env.get(REPOSITORY_ENV, "") or MAVEN_CENTRAL
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per machine, however many clusters start at once
        for jar, path in zip(DELTA_JARS, paths, strict=True):
            if not path.is_file():
                _download(jar, repository, path)
    return paths


def _from_folder(folder: Path) -> list[Path]:
    paths = [folder / jar.file_name for jar in DELTA_JARS]
    missing = [jar for jar, p in zip(DELTA_JARS, paths, strict=True) if not p.is_file()]
    if missing:
        names = ", ".join(jar.file_name for jar in missing)
        raise DeltaJarsUnavailable(
            f"Delta Lake's jars are not in {JARS_DIR_ENV}={folder}: missing {names}. Put "
            f"{_jar_list()} there (from Maven Central), or unset {JARS_DIR_ENV} to fetch them."
        )
    for jar, path in zip(DELTA_JARS, paths, strict=True):
        digest = _sha1(path.read_bytes())
        if digest != jar.sha1:
            raise DeltaJarsUnavailable(
                f"{path} ({JARS_DIR_ENV}) is not {jar.coordinate}: its SHA-1 is {digest}, Maven Central's is {jar.sha1}."
            )
    return paths


def _download(jar: MavenJar, repository: str, dest: Path) -> None:
    url = jar.url(repository)
    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_SECONDS) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeltaJarsUnavailable(_missing_message(f"fetching {url} failed: {reason}")) from None
    digest = _sha1(data)
    if digest != jar.sha1:
        raise DeltaJarsUnavailable(
            _missing_message(f"{url} is not {jar.coordinate}: its SHA-1 is {digest}, expected {jar.sha1}")
        )
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, dest)  # whole or absent: a cluster start never sees half a jar


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _jar_list() -> str:
    return " and ".join(f"{jar.file_name} ({jar.coordinate})" for jar in DELTA_JARS)


def _missing_message(why: str) -> str:
    return (
        f"Delta Lake's jars are missing: {why}. A cluster needs {_jar_list()}. Run `make setup` where Maven "
        f"Central is reachable, set {REPOSITORY_ENV} to a Maven mirror, or download the jars and set "
        f"{JARS_DIR_ENV} to their folder."
    )
