"""The one place run_results.json is taken out of a dbt task's artifacts archive (pure logic)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Literal

import pytest

from dbx_assets.integration.dbt import source as dbt_source
from dbx_assets.integration.dbt.run_results import run_results_from_artifacts

WriteMode = Literal["w:gz", "w"]


def _archive(members: dict[str, bytes], mode: WriteMode = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _results(tag: str) -> bytes:
    return json.dumps({"metadata": {"invocation_id": tag}, "results": []}).encode()


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_the_shallowest_run_results_wins_in_gz_and_plain_tar(mode: WriteMode):
    members = {  # deeper ones first in the archive: position must not matter
        "target/dbt_packages/pkg/target/run_results.json": _results("package"),
        "target/compiled/proj/run_results.json": _results("compiled"),
        "target/run_results.json": _results("invocation"),
        "target/manifest.json": b"{}",
    }
    assert run_results_from_artifacts(_archive(members, mode))["metadata"]["invocation_id"] == "invocation"


def test_depth_ignores_a_leading_dot_and_ties_break_by_name():
    members = {
        "./b/run_results.json": _results("b"),
        "a/run_results.json": _results("a"),
        "./x/y/run_results.json": _results("deep"),
    }
    assert run_results_from_artifacts(_archive(members))["metadata"]["invocation_id"] == "a"
    # only a directory named like the file: not a candidate
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo("run_results.json")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with pytest.raises(ValueError, match="no run_results.json"):
        run_results_from_artifacts(buf.getvalue())


def test_missing_run_results_is_a_clear_error_naming_what_is_there():
    archive = _archive({"target/manifest.json": b"{}", "target/graph.gpickle": b"x"})
    with pytest.raises(
        ValueError,
        match=r"no run_results.json \(did the dbt command run at all\?\); it holds: target/graph.gpickle, target/manifest.json",
    ):
        run_results_from_artifacts(archive)
    with pytest.raises(ValueError, match="no run_results.json.*it holds: no files"):
        run_results_from_artifacts(_archive({}))


def test_a_non_archive_is_a_clear_error():
    with pytest.raises(ValueError, match=r"not a tar archive \(21 bytes\)"):
        run_results_from_artifacts(b"<html>expired</html>\n")


def test_the_dbt_source_uses_this_extraction():
    assert dbt_source.run_results_from_artifacts is run_results_from_artifacts
