"""The driver JVM's options: fast-start flags always, a class-data-sharing archive when one was
built for this Java + Spark, else one background build (no JVM started here)."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime import jvm_options
from dbx_assets.local_workspace.runtime.java import java_env


def _env(cache: Path | str) -> dict[str, str]:
    env = {**os.environ, "DBX_LOCAL_JVM_CACHE_DIR": str(cache)}
    env.update(java_env(env))
    return env


def test_an_existing_archive_is_mapped_with_its_warnings_off(tmp_path: Path):
    env = _env(tmp_path)
    archive = jvm_options.class_archive(env)
    assert archive is not None and archive.parent == tmp_path
    archive.write_bytes(b"an archive")
    flags = jvm_options.driver_java_options(env).split()
    assert flags[: len(jvm_options.FAST_START_FLAGS)] == list(jvm_options.FAST_START_FLAGS)
    assert f"-XX:SharedArchiveFile={archive}" in flags
    assert "-Xshare:auto" in flags  # a stale archive is ignored by the JVM, never fatal
    assert "-Xlog:cds=off" in flags


def test_archives_off_means_flags_only_and_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spawned: list[Path] = []
    monkeypatch.setattr(
        jvm_options, "_build_in_background", lambda archive, env, class_path="": spawned.append(archive)
    )
    env = _env("off")
    assert jvm_options.class_archive(env) is None
    assert jvm_options.driver_java_options(env) == " ".join(jvm_options.FAST_START_FLAGS)
    assert spawned == []


def test_a_missing_archive_is_built_once_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env = _env(tmp_path)
    archive = jvm_options.class_archive(env)
    assert archive is not None
    started: list[list[str]] = []
    monkeypatch.setattr(jvm_options.subprocess, "Popen", lambda argv, **kwargs: started.append(argv))

    with open(jvm_options.lock_path(archive), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a builder is at work
        assert "SharedArchiveFile" not in jvm_options.driver_java_options(env)
        assert started == []
    assert "SharedArchiveFile" not in jvm_options.driver_java_options(env)  # nobody building: start one
    assert started == [[sys.executable, "-P", "-m", jvm_options._BUILDER_MODULE, str(archive), ""]]


def test_another_java_or_spark_gets_another_archive(tmp_path: Path):
    env = _env(tmp_path)
    archive = jvm_options.class_archive(env)
    spark_home = tmp_path / "spark"
    (spark_home / "jars").mkdir(parents=True)
    (spark_home / "jars" / "spark-core.jar").write_bytes(b"not the same jars")
    other = jvm_options.class_archive({**env, "SPARK_HOME": str(spark_home)})
    assert archive is not None and other is not None and other != archive
