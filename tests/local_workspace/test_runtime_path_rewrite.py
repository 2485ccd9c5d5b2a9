"""Unit tests of the Databricks path mapping (pure) and the driver-local file patches,
exercised in a subprocess so the patches never leak into the test process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper

M = PathMapper(Path("/state/dbfs"), Path("/state/volumes"))


def test_local_file_paths_map_dbfs_and_volumes_only():
    assert M.local("/dbfs/a/b.csv") == "/state/dbfs/a/b.csv"
    assert M.local("/dbfs") == "/state/dbfs"
    assert M.local("/Volumes/c/s/v/x") == "/state/volumes/c/s/v/x"
    assert M.local("/dbfsx/a") == "/dbfsx/a"
    assert M.local("/tmp/a") == "/tmp/a"
    assert M.local("relative/dbfs/a") == "relative/dbfs/a"


def test_spark_paths_follow_databricks_resolution():
    assert M.spark("dbfs:/landing/a.csv") == "file:/state/dbfs/landing/a.csv"
    assert M.spark("dbfs:///landing/a.csv") == "file:/state/dbfs/landing/a.csv"
    assert M.spark("/landing/a.csv") == "file:/state/dbfs/landing/a.csv"
    assert M.spark("/Volumes/c/s/v/f.json") == "file:/state/volumes/c/s/v/f.json"
    assert M.spark("dbfs:/Volumes/c/s/v/f.json") == "file:/state/volumes/c/s/v/f.json"
    assert M.spark("file:/tmp/x") == "file:/tmp/x"
    assert M.spark("s3://bucket/key") == "s3://bucket/key"
    assert M.spark("relative.csv") == "relative.csv"
    # already mapped paths are stable (patches may see a path twice)
    assert M.spark("/state/dbfs/x") == "file:/state/dbfs/x"


def test_sql_literals_are_rewritten_but_other_text_is_not():
    sql = "CREATE TABLE t USING csv LOCATION 'dbfs:/landing/t' -- /dbfs/x"
    assert M.sql(sql) == "CREATE TABLE t USING csv LOCATION 'file:/state/dbfs/landing/t' -- /dbfs/x"
    assert M.sql("SELECT * FROM csv.`/Volumes/c/s/v/a.csv`") == "SELECT * FROM csv.`file:/state/volumes/c/s/v/a.csv`"
    assert M.sql("SELECT '/data/x' AS p") == "SELECT '/data/x' AS p"


def test_file_patches_cover_builtins_os_pathlib_shutil(tmp_path: Path):
    script = textwrap.dedent(
        f"""
        import os, shutil, pathlib
        from dbx_assets.local_workspace.runtime.path_rewrite import PathMapper, install_local_file_patches
        install_local_file_patches(PathMapper(pathlib.Path({str(tmp_path / "dbfs")!r}), pathlib.Path({str(tmp_path / "vol")!r})))
        os.makedirs("/dbfs/a/b", exist_ok=True)
        with open("/dbfs/a/b/x.txt", "w") as fh:
            fh.write("hello")
        assert os.path.exists("/dbfs/a/b/x.txt") and os.path.isfile("/dbfs/a/b/x.txt")
        assert os.listdir("/dbfs/a/b") == ["x.txt"]
        assert [e.name for e in os.scandir("/dbfs/a")] == ["b"]
        assert pathlib.Path("/dbfs/a/b/x.txt").read_text() == "hello"
        assert os.stat("/dbfs/a/b/x.txt").st_size == 5
        pathlib.Path("/Volumes/c/s/v").mkdir(parents=True)
        shutil.copy("/dbfs/a/b/x.txt", "/Volumes/c/s/v/y.txt")
        os.rename("/Volumes/c/s/v/y.txt", "/Volumes/c/s/v/z.txt")
        assert open("/Volumes/c/s/v/z.txt").read() == "hello"
        shutil.rmtree("/dbfs/a")
        assert not os.path.exists("/dbfs/a")
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
    assert (tmp_path / "vol" / "c" / "s" / "v" / "z.txt").read_text() == "hello"
    assert not (tmp_path / "dbfs" / "a").exists()
    assert not Path("/dbfs").exists()  # nothing escaped the state dir
