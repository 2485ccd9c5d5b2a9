"""Build the class-data-sharing archive a local cluster's JVM maps at start (see jvm_options.py):
start Spark as a cluster driver does (same class path, Delta's jars included, same session
defaults), do the driver's warm-up, a little SQL and a Delta table's write, read and MERGE, and let
the JVM write the classes it loaded when it exits. Runs in the background, one builder per archive."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .jvm_options import FAST_START_FLAGS, lock_path

_MIN_ARCHIVE_BYTES = 1024 * 1024  # a real archive of Spark's classes is ~120 MB


def build_archive(archive: Path, class_path: str = "") -> None:
    """Write the archive for this Java + Spark to `archive`, unless it exists or is being built."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(archive), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        if archive.is_file():
            return
        for stale in archive.parent.glob(f"{archive.name}.*.tmp"):  # left by a builder that was killed
            stale.unlink(missing_ok=True)
        partial = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
        from pyspark.sql import SparkSession

        from .cluster import BASE_SPARK_CONF

        flags = " ".join([*FAST_START_FLAGS, f"-XX:ArchiveClassesAtExit={partial}", "-Xlog:cds=error"])
        warehouse = archive.parent / f"warehouse.{os.getpid()}"
        builder = SparkSession.builder.master("local[2]").appName("dbx-local-class-archive")
        conf = {
            **BASE_SPARK_CONF,
            "spark.driver.defaultJavaOptions": flags,
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.warehouse.dir": str(warehouse),
        }
        if class_path:
            conf["spark.driver.extraClassPath"] = class_path
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sql("SHOW DATABASES").collect()
        spark.range(10).selectExpr("sum(id)").collect()
        spark.range(100).selectExpr("id % 3 AS k", "id").groupBy("k").count().collect()
        _warm_delta(spark)
        gateway = spark.sparkContext._gateway
        assert gateway is not None
        spark.stop()
        # The archive is written as the JVM exits; ask it to exit now rather than when we do,
        # so this process can see the file complete before publishing it.
        with contextlib.suppress(Exception):
            gateway.jvm.System.exit(0)
        gateway.proc.wait(timeout=120)  # pyspark keeps the JVM's Popen here
        shutil.rmtree(warehouse, ignore_errors=True)
        if partial.is_file() and partial.stat().st_size >= _MIN_ARCHIVE_BYTES:
            os.replace(partial, archive)  # atomically: a starting cluster never maps a half-written file
        else:
            partial.unlink(missing_ok=True)
            print(f"class archive not written: {partial}", file=sys.stderr)


def _warm_delta(spark: object) -> None:
    """What a task's first Delta statements load: create, append, read, MERGE, history."""
    sql = spark.sql  # type: ignore[attr-defined]
    sql("CREATE TABLE warm (id BIGINT, v STRING)")
    sql("INSERT INTO warm VALUES (1, 'a'), (2, 'b')")
    sql(
        "MERGE INTO warm t USING (SELECT 2L AS id, 'c' AS v) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *"
    ).collect()
    sql("SELECT count(*) FROM warm").collect()
    sql("DESCRIBE HISTORY warm").collect()


def _exit_with_parent() -> None:
    # Whoever started the cluster (the workspace server) stopping stops this build too, JVM included:
    # `make stop` / Ctrl-C leave no process behind. The next cluster start builds the archive again.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # this process group (own session): the builder and its JVM


if __name__ == "__main__":  # python -P -m ...runtime.class_archive <archive.jsa> [<extra class path>]
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    build_archive(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
