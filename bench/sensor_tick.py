"""How much does one file-sensor tick cost on a 10,000-file directory?

Starts a fresh local workspace in a temp dir, lands 10,000 small files on DBFS and on a
volume, then times sensor ticks: the first (catch-up) tick, an unchanged rescan, and a
tick after 10 new files. List calls are counted at the SDK's ApiClient.do. Stops the
workspace at the end.

    python -m bench.sensor_tick [--files 10000]
"""

from __future__ import annotations

import argparse
import base64
import io
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import ApiClient

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.file_sensor import build_file_sensor

LIST_PATHS = ("/api/2.0/dbfs/list", "/api/2.0/fs/directories")
calls: Counter[str] = Counter()


def _count_calls() -> None:
    original = ApiClient.do

    def counting_do(self, method, path=None, *args, **kwargs):
        calls["list" if path and path.startswith(LIST_PATHS) else "other"] += 1
        return original(self, method, path, *args, **kwargs)

    ApiClient.do = counting_do


@dg.asset
def landed_files() -> None: ...


def _tick(sensor, cursor, resource):
    defs = dg.Definitions(assets=[landed_files], sensors=[sensor])
    calls.clear()
    started = time.perf_counter()
    with dg.build_sensor_context(cursor=cursor, resources={"databricks": resource}, definitions=defs) as context:
        result = sensor.evaluate_tick(context)
    elapsed = time.perf_counter() - started
    new_cursor = result.cursor if result.cursor is not None else cursor
    return elapsed, calls["list"], len(result.run_requests or []), new_cursor


def _land(put, paths: list[str]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, paths))
    return time.perf_counter() - started


def run(n_files: int) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="bench_sensor_"))
    conn = ensure_running(state_dir, timeout=60)
    try:
        client = WorkspaceClient(host=conn.host, token=conn.token)
        resource = DatabricksResource(local_state_dir=str(state_dir))
        payload = base64.b64encode(b"order_id,amount\n1,10\n").decode()
        targets = {
            "dbfs": ("dbfs:/landing/bench", lambda p: client.dbfs.put(p, contents=payload, overwrite=True)),
            "volume": (
                "/Volumes/main/landing/bench",
                lambda p: client.files.upload(p, io.BytesIO(b"order_id,amount\n1,10\n"), overwrite=True),
            ),
        }
        _count_calls()
        # Warm-up: pay Dagster's and the SDK's one-time costs outside the measurements.
        _tick(build_file_sensor(name="warmup", watch_path="dbfs:/warmup", target="landed_files"), None, resource)
        print(f"sensor tick benchmark: {n_files} files per directory, local workspace at {conn.host}")
        print(f"{'store':7} {'tick':28} {'seconds':>8} {'list calls':>10} {'run requests':>12} {'cursor bytes':>12}")
        for store, (root, put) in targets.items():
            land_s = _land(put, [f"{root}/part-{i:05d}.csv" for i in range(n_files)])
            print(f"{store:7} (landing {n_files} files took {land_s:.1f} s with 8 writers)")
            sensor = build_file_sensor(
                name=f"bench_{store}", watch_path=root, pattern="*.csv", settle_seconds=0, max_runs_per_tick=None,
                target="landed_files",
            )
            capped = build_file_sensor(
                name=f"bench_{store}_capped", watch_path=root, pattern="*.csv", settle_seconds=0, target="landed_files"
            )
            rows = []
            elapsed, lists, runs, cursor = _tick(capped, None, resource)
            rows.append(("first tick, default cap 100", elapsed, lists, runs, cursor))
            elapsed, lists, runs, cursor = _tick(sensor, None, resource)
            rows.append(("first tick, uncapped", elapsed, lists, runs, cursor))
            elapsed, lists, runs, cursor = _tick(sensor, cursor, resource)
            rows.append(("unchanged rescan", elapsed, lists, runs, cursor))
            _land(put, [f"{root}/new-{i}.csv" for i in range(10)])
            elapsed, lists, runs, cursor = _tick(sensor, cursor, resource)
            rows.append(("after 10 new files", elapsed, lists, runs, cursor))
            for label, elapsed, lists, runs, cur in rows:
                print(f"{store:7} {label:28} {elapsed:8.2f} {lists:10d} {runs:12d} {len(cur or ''):12d}")
    finally:
        stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    run(parser.parse_args().files)


if __name__ == "__main__":
    main()
