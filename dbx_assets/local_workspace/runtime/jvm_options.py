"""JVM options for a local cluster's driver: a small cluster on a laptop should start fast and
cheaply, not tune itself for hours of throughput.

- C1 only (`TieredStopAtLevel=1`) and the serial collector: a local cluster runs small queries
  for minutes; C2 compilation and parallel GC threads cost more CPU than they ever win back.
  Measured on a 2-core machine: JVM CPU for a start + warm-up 24.9 s -> 12.8 s, start 16.7 s -> 9.4 s.
- A class-data-sharing archive of the classes Spark loads at start (JDK 13+ dynamic CDS):
  JVM CPU per start 10.7 s -> 6.6 s. It is built once per machine (Java + Spark jars + flags)
  in the background (class_archive.py),
  the first time a cluster starts without one; clusters started meanwhile simply run without it.
  Set DBX_LOCAL_JVM_CACHE_DIR to choose where it is kept, or to `off` to never use one.

Nothing here changes what a task sees: these are the driver JVM's own flags.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .delta_jars import jvm_cache_dir

FAST_START_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# A stale or foreign archive is ignored (-Xshare:auto); its warnings must not land in driver.log,
# where a failed start's reason is read from the JVM's first complaint.
_USE_ARCHIVE_FLAGS = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off")
_CACHE_ENV = "DBX_LOCAL_JVM_CACHE_DIR"
_BUILDER_MODULE = f"{__package__}.class_archive"


def driver_java_options(env: dict[str, str], class_path: str = "") -> str:
    """The value for `spark.driver.defaultJavaOptions` (a cluster spec's extraJavaOptions add to it).
    `class_path` is the driver's `spark.driver.extraClassPath` (Delta's jars): the archive holds
    their classes too, and is built for exactly that class path."""
    flags = list(FAST_START_FLAGS)
    archive = class_archive(env, class_path)
    if archive is not None:
        if archive.is_file():
            flags += [f"-XX:SharedArchiveFile={archive}", *_USE_ARCHIVE_FLAGS]
        else:
            _build_in_background(archive, env, class_path)
    return " ".join(flags)


def class_archive(env: dict[str, str], class_path: str = "") -> Path | None:
    """Where the archive for this Java + Spark + extra class path lives, or None when archives are
    off or unknowable."""
    setting = env.get(_CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    java = java_binary(env)
    jars = spark_jars_dir(env)
    if java is None or jars is None:
        return None
    extra = [Path(p) for p in class_path.split(os.pathsep) if p]
    if not all(p.is_file() for p in extra):
        return None  # a directory or a missing entry: nothing stable to key an archive on
    # The JVM rejects an archive made by another Java or for another class path; the key keeps
    # one archive per combination instead of rebuilding one file back and forth.
    key = hashlib.sha256()
    parts = (_identity(java), *(_identity(p) for p in extra), *(_identity(jar) for jar in sorted(jars.glob("*.jar"))))
    for part in (*parts, *FAST_START_FLAGS):
        key.update(part.encode() + b"\0")
    return jvm_cache_dir(env) / f"spark-classes-{key.hexdigest()[:16]}.jsa"


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def java_binary(env: dict[str, str]) -> Path | None:
    home = env.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is None or not candidate.is_file():
        found = shutil.which("java", path=env.get("PATH", ""))
        candidate = Path(found) if found else None
    return None if candidate is None else candidate.resolve()


def spark_jars_dir(env: dict[str, str]) -> Path | None:
    home = env.get("SPARK_HOME")
    if not home:
        spec = importlib.util.find_spec("pyspark")  # locates the package without importing Spark
        if spec is None or spec.origin is None:
            return None
        home = str(Path(spec.origin).parent)
    jars = Path(home) / "jars"
    return jars if jars.is_dir() else None


def lock_path(archive: Path) -> Path:
    return archive.with_suffix(".lock")


def _build_in_background(archive: Path, env: dict[str, str], class_path: str = "") -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(archive), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is building it right now
        fcntl.flock(lock, fcntl.LOCK_UN)
    log = open(archive.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child, closed below
    with log:
        subprocess.Popen(
            [sys.executable, "-P", "-m", _BUILDER_MODULE, str(archive), class_path],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=archive.parent,
            start_new_session=True,  # ends with its JVM when the archive is written or this process exits
        )
