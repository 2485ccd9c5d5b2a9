"""Local cluster start: seconds from `LocalCluster.start()` until its JVM accepts tasks, with the
class-data-sharing archive in place (built first if this machine has none for this class path),
then the first task on the fresh cluster (a notebook that creates, MERGEs into and reads a table).

Prints the median of `--starts` starts (default 3) and each one; the first task's seconds.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from dbx_assets.local_workspace.runtime import LocalCluster
from dbx_assets.local_workspace.runtime.contract import ClusterSpec, StoragePaths, TaskInvocation

FIRST_TASK = """# Databricks notebook source
spark.sql("CREATE TABLE bench_orders (id INT, v STRING)")
spark.sql("INSERT INTO bench_orders VALUES (1, 'a'), (2, 'b')")
spark.sql("MERGE INTO bench_orders t USING (SELECT 2 AS id, 'c' AS v) s ON t.id = s.id "
          "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
dbutils.notebook.exit(str(spark.table("bench_orders").count()))
"""
_ids = itertools.count(1)


def _start(paths: StoragePaths) -> tuple[LocalCluster, float]:
    cluster = LocalCluster(f"bench{next(_ids)}", ClusterSpec(), paths)
    started = time.perf_counter()
    cluster.start()
    return cluster, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.cluster_start")
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cluster_start_") as tmp:
        paths = StoragePaths(Path(tmp)).ensure()
        # Until the archive for this class path exists, a start builds it in the background: wait for it.
        for _ in range(40):
            cluster, _seconds = _start(paths)
            has_archive = "SharedArchiveFile" in (cluster.dir / "driver_config.json").read_text()
            cluster.terminate()
            if has_archive:
                break
            time.sleep(15)
        else:
            print("no class archive was built; figures below are without one")
        starts = []
        for _ in range(args.starts):
            cluster, seconds = _start(paths)
            starts.append(seconds)
            cluster.terminate()
        cluster, _seconds = _start(paths)
        try:
            run_id = next(_ids) + 1000
            inv = TaskInvocation(
                task_run_id=run_id,
                kind="notebook",
                output_dir=paths.task_runs / str(run_id),
                notebook_source=FIRST_TASK,
                notebook_path="/bench/first_task",
            )
            started = time.perf_counter()
            outcome = cluster.run_task(inv).wait(600)
            first_task = time.perf_counter() - started
            state = outcome.result_state if outcome else "TIMEDOUT"
        finally:
            cluster.terminate()
    print(
        f"cluster_start: {statistics.median(starts):.1f} s median of {len(starts)} ({', '.join(f'{s:.1f}' for s in starts)})"
    )
    print(f"first task (CREATE TABLE, INSERT, MERGE, read): {first_task:.1f} s ({state})")


if __name__ == "__main__":
    main()
