"""Task libraries are installed per cluster with uv, through a cache shared by all clusters,
and only when the runtime does not provide them already. Real uv against the package index;
no JVM (the task process calls exactly these functions before it attaches to the cluster)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from dbx_assets.local_workspace.runtime.contract import StoragePaths
from dbx_assets.local_workspace.runtime.libraries import LibraryInstallError, ensure_installed

PACKAGE = "tomli-w"  # small, pure Python, and not in the runtime's environment

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")


@pytest.fixture
def paths(tmp_path) -> StoragePaths:
    return StoragePaths(tmp_path / "state").ensure()  # an empty library cache


def _imports_from(site_dir: Path, module: str) -> str:
    code = f"import sys; sys.path.insert(0, {str(site_dir)!r}); import {module}; print({module}.__file__)"
    return subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout


def test_a_library_installs_once_per_cluster_and_a_second_cluster_uses_the_cache(paths, monkeypatch, capsys):
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version(PACKAGE)

    first = ensure_installed([f"{PACKAGE}>=1.0"], "cluster-a", paths)
    assert [p.split("==")[0] for p in first.installed] == [PACKAGE] and first.provided == []
    assert first.site_dir == paths.clusters / "cluster-a" / "site-packages"
    assert _imports_from(first.site_dir, "tomli_w").startswith(str(first.site_dir))

    again = ensure_installed([f"{PACKAGE}>=1.0"], "cluster-a", paths)  # the next task on that cluster
    assert again.installed == [] and again.provided == [f"{PACKAGE}>=1.0"]

    # Another cluster installs the same pin from the shared cache: offline, it still succeeds.
    monkeypatch.setenv("UV_OFFLINE", "1")
    second = ensure_installed([f"{PACKAGE}>=1.0"], "cluster-b", paths)
    assert second.installed == first.installed
    assert _imports_from(second.site_dir, "tomli_w").startswith(str(second.site_dir))
    with capsys.disabled():
        print(
            f"\n  install {PACKAGE}: first cluster {first.seconds:.2f} s, same cluster again {again.seconds:.3f} s, "
            f"second cluster from the cache {second.seconds:.2f} s"
        )


def test_what_the_runtime_provides_is_not_installed(paths, monkeypatch):
    monkeypatch.setenv("UV_OFFLINE", "1")  # nothing here may need the index
    six = metadata.version("six")
    # dbt-databricks: the runtime's own release, and the dbt-core series the runtime runs (the job's pin)
    adapter = metadata.version("dbt-databricks")
    wanted = [f"six=={six}", "packaging", f"dbt-databricks=={adapter}", "dbt-databricks>=1.11,<1.12", "pyspark>=3.5"]
    report = ensure_installed(wanted, "c", paths)
    assert report.installed == []
    assert report.provided == wanted
    assert list(report.site_dir.iterdir()) == []


def test_a_dbt_databricks_pin_outside_the_runtimes_dbt_release_fails_without_downloading(paths, monkeypatch):
    monkeypatch.setenv("UV_OFFLINE", "1")
    with pytest.raises(LibraryInstallError) as err:
        ensure_installed(["dbt-databricks==1.6.0"], "c", paths)
    assert str(err.value).startswith(
        'Library installation failed for library due to user error for pypi {\n  package: "dbt-databricks==1.6.0"\n}'
    )
    versions = f"dbt-databricks {metadata.version('dbt-databricks')} on dbt-core {metadata.version('dbt-core')}"
    assert f"The local runtime provides {versions}; 'dbt-databricks==1.6.0' asks for another" in str(err.value)


def test_a_library_that_cannot_be_installed_fails_with_databricks_message(paths):
    with pytest.raises(LibraryInstallError) as err:
        ensure_installed(["six", "definitely-not-installed-pkg==1.0"], "0101-010101-abcdefgh", paths)
    message = str(err.value)
    assert message.startswith(
        'Library installation failed for library due to user error for pypi {\n  package: "definitely-not-installed-pkg==1.0"\n}\n'
        " Error messages:\nLibrary installation attempted on the driver node of cluster 0101-010101-abcdefgh and failed. "
        "Please refer to the following error message to fix the library or contact Databricks support. "
        "Error Code: DRIVER_LIBRARY_INSTALLATION_FAILURE. Error Message: "
    )
    assert "definitely-not-installed-pkg" in message.split("Error Message: ")[1]  # uv's own explanation


def test_an_invalid_requirement_fails_with_databricks_message(paths):
    with pytest.raises(LibraryInstallError) as err:
        ensure_installed(["not a requirement!"], "c", paths)
    assert "Invalid requirement" in str(err.value) and 'package: "not a requirement!"' in str(err.value)
