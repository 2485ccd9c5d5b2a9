"""Delta Lake's jars for the local clusters: fetched once from a Maven repository (here a local
one over real HTTP) with their pinned SHA-1 sums, taken from DBX_DELTA_JARS_DIR where set, and a
cluster start that cannot get them fails with one clear message, before any JVM starts."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime import LocalCluster
from dbx_assets.local_workspace.runtime.contract import ClusterSpec, ClusterStartError, StoragePaths
from dbx_assets.local_workspace.runtime.delta_jars import (
    DELTA_JARS,
    JARS_DIR_ENV,
    REPOSITORY_ENV,
    DeltaJarsUnavailable,
    delta_jars,
)


@pytest.fixture(scope="module")
def real_jars() -> list[Path]:
    """The jars `make setup` cached (fetched now if this machine has not yet)."""
    return delta_jars({k: v for k, v in os.environ.items() if k not in (JARS_DIR_ENV, REPOSITORY_ENV)})


class _Repository:
    """A Maven repository layout served over HTTP from a folder, counting requests."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        repo = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                repo.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/maven2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, jar_files: dict[str, bytes]) -> None:
        for jar in DELTA_JARS:
            if jar.file_name in jar_files:
                dest = self.root / "maven2" / jar.url("").lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(jar_files[jar.file_name])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[_Repository]:
    repo = _Repository(tmp_path / "repo")
    yield repo
    repo.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (JARS_DIR_ENV, REPOSITORY_ENV)}
    return {**env, "DBX_LOCAL_JVM_CACHE_DIR": str(tmp_path / "jvm-cache"), **extra}


def test_jars_are_fetched_once_checked_and_then_read_from_the_cache(tmp_path, repository, real_jars):
    repository.publish({p.name: p.read_bytes() for p in real_jars})
    env = _env(tmp_path, **{REPOSITORY_ENV: repository.url})
    first = delta_jars(env)
    assert [p.name for p in first] == [jar.file_name for jar in DELTA_JARS]
    assert all(p.parent == tmp_path / "jvm-cache" / "delta-3.3.3" for p in first)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in real_jars]
    assert len(repository.requests) == 2
    repository.close()  # no repository any more: the cache answers
    assert delta_jars(env) == first and len(repository.requests) == 2


def test_a_jar_whose_checksum_differs_is_refused(tmp_path, repository, real_jars):
    files = {p.name: p.read_bytes() for p in real_jars}
    files["delta-storage-3.3.3.jar"] = b"not the jar Maven Central publishes"
    repository.publish(files)
    with pytest.raises(DeltaJarsUnavailable) as err:
        delta_jars(_env(tmp_path, **{REPOSITORY_ENV: repository.url}))
    assert "SHA-1" in str(err.value) and "io.delta:delta-storage:3.3.3" in str(err.value)
    assert not (tmp_path / "jvm-cache" / "delta-3.3.3" / "delta-storage-3.3.3.jar").exists()


def test_a_folder_of_jars_is_used_as_is(tmp_path, real_jars):
    folder = tmp_path / "jars"
    folder.mkdir()
    for jar in real_jars:
        shutil.copy(jar, folder)
    assert delta_jars(_env(tmp_path, **{JARS_DIR_ENV: str(folder)})) == [folder / p.name for p in real_jars]
    assert not (tmp_path / "jvm-cache").exists()  # nothing fetched, nothing cached


def _start_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in _env(tmp_path, **env).items():
        monkeypatch.setenv(key, value)
    cluster = LocalCluster("no-delta", ClusterSpec(), StoragePaths(tmp_path / "state"))
    with pytest.raises(ClusterStartError) as err:
        cluster.start()
    assert cluster.driver_pid is None  # failed before any driver (or JVM) started
    return str(err.value)


def test_an_empty_jars_folder_fails_the_cluster_start_naming_the_variable_and_the_jars(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _start_error(tmp_path, monkeypatch, **{JARS_DIR_ENV: str(empty)})
    assert message.startswith(f"Delta Lake's jars are not in {JARS_DIR_ENV}={empty}")
    assert "delta-spark_2.12-3.3.3.jar" in message and "delta-storage-3.3.3.jar" in message
    assert "\n" not in message and "Traceback" not in message


def test_an_unreachable_repository_fails_the_first_start_with_one_clear_message(tmp_path, monkeypatch):
    closed = _Repository(tmp_path / "gone")
    url = closed.url
    closed.close()  # nothing listens on that port any more
    message = _start_error(tmp_path, monkeypatch, **{REPOSITORY_ENV: url})
    assert message.startswith("Delta Lake's jars are missing: fetching " + url)
    assert "io.delta:delta-spark_2.12:3.3.3" in message and "io.delta:delta-storage:3.3.3" in message
    assert JARS_DIR_ENV in message and "make setup" in message
    assert "\n" not in message and "Traceback" not in message
