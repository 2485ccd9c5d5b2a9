"""How much does one file-sensor tick cost on a 10,000-file directory, and how big is its cursor?

Starts a fresh local workspace in a temp dir, writes 10,000 small files into its DBFS and
volume storage on disk (landing them over HTTP would only measure uploads), then times
sensor ticks through the SDK: the first (catch-up) tick, an unchanged rescan, a tick after
10 new files, and one after a late file with a 2001 mtime. List calls are counted at the
SDK's ApiClient.do. Then the cursor's size and encode/decode/plan time at 10,000 and
100,000 files, from the pure planning function (no HTTP). Stops the workspace at the end.

    python -m bench.sensor_tick [--files 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from databricks.sdk.core import ApiClient

from dbx_assets import DatabricksResource, build_file_sensor
from dbx_assets.integration.file_cursor import FileCursor, FileVersion, plan_tick
from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.local_workspace.runtime.contract import StoragePaths

LIST_PATHS = ("/api/2.0/dbfs/list", "/api/2.0/fs/directories")
calls: Counter[str] = Counter()


def _count_calls() -> None:
    original = ApiClient.do

    def counting_do(self, method, path=None, *args, **kwargs):
        calls["list" if path and path.startswith(LIST_PATHS) else "other"] += 1
        return original(self, method, path, *args, **kwargs)

    ApiClient.do = counting_do  # type: ignore[method-assign]  # counts every SDK call for the whole bench


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


def _land(directory: Path, names: list[str], mtime_s: float | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_bytes(b"order_id,amount\n1,10\n")
        if mtime_s is not None:
            os.utime(path, (mtime_s, mtime_s))


def run(n_files: int) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="bench_sensor_"))
    conn = ensure_running(state_dir, timeout=60)
    try:
        storage = StoragePaths(conn.state_dir)
        resource = DatabricksResource(local_state_dir=str(state_dir))
        targets = {
            "dbfs": ("dbfs:/landing/bench", storage.dbfs / "landing/bench"),
            "volume": ("/Volumes/main/landing/bench", storage.volumes / "main/landing/bench"),
        }
        _count_calls()
        # Warm-up: pay Dagster's and the SDK's one-time costs outside the measurements.
        _tick(build_file_sensor(name="warmup", watch_path="dbfs:/warmup", target="landed_files"), None, resource)
        print(f"sensor tick benchmark: {n_files} files per directory, local workspace at {conn.host}")
        print(f"{'store':7} {'tick':28} {'seconds':>8} {'list calls':>10} {'run requests':>12} {'cursor bytes':>12}")
        for store, (root, local_dir) in targets.items():
            _land(local_dir, [f"part-{i:05d}.csv" for i in range(n_files)])
            # settle_ticks=1: trigger at first sight, so the first tick is the full catch-up.
            options: dict[str, Any] = dict(watch_path=root, pattern="*.csv", settle_ticks=1, target="landed_files")
            sensor = build_file_sensor(name=f"bench_{store}", max_runs_per_tick=None, **options)
            capped = build_file_sensor(name=f"bench_{store}_capped", **options)
            rows = [
                ("first tick, default cap 100", *_tick(capped, None, resource)),
                ("first tick, uncapped", *_tick(sensor, None, resource)),
            ]
            cursor = rows[-1][-1]
            steps: list[tuple[str, Path, list[str], float | None]] = [
                ("unchanged rescan", local_dir, [], None),
                ("after 10 new files", local_dir, [f"new-{i}.csv" for i in range(10)], None),
                ("after 1 late file (2001)", local_dir / "2001", ["late.csv"], 978_307_200),
            ]
            for label, directory, names, mtime_s in steps:
                _land(directory, names, mtime_s)
                rows.append((label, *_tick(sensor, cursor, resource)))
                cursor = rows[-1][-1]
            for label, elapsed, lists, runs, cur in rows:
                print(f"{store:7} {label:28} {elapsed:8.2f} {lists:10d} {runs:12d} {len(cur or ''):12d}")
    finally:
        stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    cursor_sizes()


def cursor_sizes() -> None:
    """Cursor bytes per layout at 10k and 100k files, and the pure planning cost of one tick."""
    print("\ncursor size (pure planning, no HTTP; every file handled)")
    print(
        f"{'layout':22} {'files':>8} {'cursor bytes':>12} {'bytes/file':>10} {'plan s':>7} {'encode s':>8} {'decode s':>8}"
    )
    rng = random.Random(1)
    base = 1_795_000_000_000
    layouts: dict[str, Callable[[int], FileVersion]] = {
        "sequential names": lambda i: FileVersion(base + i * 3, f"dbfs:/landing/bench/part-{i:06d}.csv", 23),
        "uuid names, any size": lambda i: FileVersion(
            base + rng.randint(0, 10**9),
            f"/Volumes/main/raw/f/{uuid.UUID(int=rng.getrandbits(128))}.json",
            rng.randint(1, 10**6),
        ),
    }
    for layout, make in layouts.items():
        for n in (10_000, 100_000):
            files = [make(i) for i in range(n)]
            started = time.perf_counter()
            plan = plan_tick(FileCursor(), files, settle_ticks=1, max_tracked=n)
            planned = time.perf_counter()
            raw = plan.cursor.to_json()
            encoded = time.perf_counter()
            FileCursor.from_json(raw)
            decoded = time.perf_counter()
            print(
                f"{layout:22} {n:8d} {len(raw):12d} {len(raw) / n:10.2f} {planned - started:7.2f} "
                f"{encoded - planned:8.2f} {decoded - encoded:8.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    run(parser.parse_args().files)


if __name__ == "__main__":
    main()
