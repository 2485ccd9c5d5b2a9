"""File sensors: the pure planning logic at scale (no HTTP, no Dagster instance), then a few
ticks against the shared local workspace through the real SDK over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.file_cursor import HANDLED, CursorCapacityError, Entry
from dbx_assets.integration.file_sensor import (
    TRIGGER_FILE_TAG,
    FileCursor,
    FileVersion,
    WatchPathAccessError,
    build_file_sensor,
    plan_tick,
    template_regex,
)
from dbx_assets.integration.resource import DatabricksResource

# ============================================================================ pure planning logic

OLD = 946_684_800_000  # 2000-01-01 in ms: an archive copied in with its original mtime
NOW = 1_795_000_000_000  # roughly when these tests were written; only a label, never compared with a clock


def _f(path: str, mtime: int = NOW, size: int = 1) -> FileVersion:
    return FileVersion(mtime_ms=mtime, path=path, size=size)


class Sensor:
    """plan_tick driven like the daemon drives it: the cursor goes through its string form
    between every two ticks, as if the daemon restarted each time."""

    def __init__(self, **options):
        self.options = {"settle_ticks": 1, **options}
        self.stored: str | None = None
        self.triggered: Counter[FileVersion] = Counter()
        self.notes: list[str] = []

    def tick(self, files: list[FileVersion], **overrides) -> list[FileVersion]:
        plan = plan_tick(FileCursor.from_json(self.stored), files, **{**self.options, **overrides})
        self.stored = plan.cursor.to_json()
        self.triggered.update(plan.to_trigger)
        self.notes += plan.notes
        return plan.to_trigger


def _paths(versions: list[FileVersion]) -> list[str]:
    return [f.path for f in versions]


def test_late_file_with_an_old_mtime_triggers():
    s = Sensor()
    recent = [_f(f"d/new-{i}", NOW + i) for i in range(50)]
    assert len(s.tick(recent)) == 50
    late = _f("d/archive-1999.csv", OLD)  # `cp -p` of an old file, long after newer ones were handled
    assert s.tick(recent + [late]) == [late]
    assert s.tick(recent + [late]) == []


def test_rewritten_file_triggers_again_for_a_new_size_or_a_new_mtime():
    s = Sensor()
    assert _paths(s.tick([_f("a", NOW, 5)])) == ["a"]
    assert s.tick([_f("a", NOW, 9)]) == [_f("a", NOW, 9)]  # object stores keep mtime at creation
    assert s.tick([_f("a", NOW + 1, 9)]) == [_f("a", NOW + 1, 9)]
    assert s.tick([_f("a", OLD, 9)]) == [_f("a", OLD, 9)]  # rewritten with an older mtime still counts
    assert s.tick([_f("a", OLD, 9)]) == []


def test_unchanged_files_never_trigger_twice_across_restarts():
    s = Sensor()
    files = [_f(f"p/{i:03d}", NOW - i * 1000, i) for i in range(200)]
    assert len(s.tick(files)) == 200
    for _ in range(5):  # each tick decodes the stored string: a daemon restart every time
        assert s.tick(files) == []
    assert set(s.triggered.values()) == {1}


def test_files_in_the_same_millisecond_are_distinct():
    s = Sensor()
    assert _paths(s.tick([_f("a", NOW)])) == ["a"]
    assert _paths(s.tick([_f("a", NOW), _f("b", NOW)])) == ["b"]


def test_deleted_then_restored_unchanged_is_not_new_but_restored_changed_is():
    s = Sensor()
    a, b = _f("a", NOW, 3), _f("b", NOW, 4)
    s.tick([a, b])
    assert s.tick([b]) == []  # a deleted (or moved away)
    assert s.tick([b]) == []
    assert s.tick([a, b]) == []  # moved back: same size and mtime, the same version
    assert s.tick([b]) == []
    assert s.tick([_f("a", NOW, 30), b]) == [_f("a", NOW, 30)]  # restored from elsewhere: new version
    # Back to the first version: already handled once, so not again.
    assert s.tick([a, b]) == []


def test_forgetting_deleted_versions_beyond_the_cap_errs_on_a_duplicate_and_says_so():
    s = Sensor(max_retired=2)
    files = [_f(f"x{i}", NOW + i) for i in range(5)]
    s.tick(files)
    s.tick([])  # all five gone: only the newest two deletions are remembered
    assert any("Forgot the 3 oldest" in n for n in s.notes)
    assert sorted(_paths(s.tick(files))) == ["x0", "x1", "x2"]  # triggered again, never silently lost


def test_a_file_must_be_seen_unchanged_on_consecutive_ticks():
    s = Sensor(settle_ticks=2)
    assert s.tick([_f("big", NOW, 10)]) == []  # first sighting
    assert s.tick([_f("big", NOW, 20)]) == []  # still growing: a new version, counted from 1
    assert s.tick([_f("big", NOW, 20)]) == [_f("big", NOW, 20)]
    assert s.tick([_f("big", NOW, 20)]) == []
    # A version seen once, then the daemon restarts: the restart does not reset the count.
    assert s.tick([_f("big", NOW, 20), _f("c", OLD)]) == []
    assert s.tick([_f("big", NOW, 20), _f("c", OLD)]) == [_f("c", OLD)]


def test_stability_never_compares_the_file_mtime_with_the_local_clock():
    # mtimes far in the future or the past (clock skew, archives) settle exactly alike.
    for mtime in (0, OLD, NOW, NOW + 10**12):
        s = Sensor(settle_ticks=2)
        assert s.tick([_f("f", mtime)], now_s=5) == []
        assert s.tick([_f("f", mtime)], now_s=6) == [_f("f", mtime)]


def test_settle_seconds_is_measured_on_the_sensor_clock_from_first_sighting():
    s = Sensor(settle_ticks=1, settle_seconds=30)
    assert s.tick([_f("m", OLD)], now_s=1_000) == []  # an ancient mtime does not make it "settled"
    assert s.tick([_f("m", OLD)], now_s=1_029) == []
    assert s.tick([_f("m", OLD)], now_s=1_030) == [_f("m", OLD)]


def test_burst_beyond_the_run_cap_drains_over_ticks_without_loss():
    s = Sensor(max_groups=400)
    files = [_f(f"burst/{i:05d}", OLD + (i * 7919) % 1000, i) for i in range(1001)]
    assert [len(s.tick(files)) for _ in range(4)] == [400, 400, 201, 0]
    assert len(s.triggered) == 1001 and set(s.triggered.values()) == {1}


def test_backlog_files_rewritten_while_waiting_trigger_once_in_their_final_version():
    s = Sensor(max_groups=2, settle_ticks=2)
    files = [_f(f"q{i}", NOW + i) for i in range(6)]
    s.tick(files)
    assert _paths(s.tick(files)) == ["q0", "q1"]
    files[5] = _f("q5", NOW + 5, 99)  # rewritten while still in the backlog
    assert _paths(s.tick(files)) == ["q2", "q3"]
    assert _paths(s.tick(files)) == ["q4", "q5"]
    assert s.tick(files) == []
    assert _f("q5", NOW + 5, 99) in s.triggered and _f("q5", NOW + 5, 1) not in s.triggered


def test_groups_take_all_stable_files_of_an_open_group_and_skipped_files_are_not_retried():
    def group_of(f: FileVersion) -> str | None:
        return None if f.path.endswith(".tmp") else f.path.split("/")[0]

    s = Sensor(max_groups=1, group_of=group_of)
    files = [_f("d1/a", NOW), _f("d2/a", NOW + 1), _f("d1/b", NOW + 2), _f("d3/x.tmp", NOW + 3)]
    assert _paths(s.tick(files)) == ["d1/a", "d1/b", "d3/x.tmp"]  # the skipped file is handled too
    assert _paths(s.tick(files)) == ["d2/a"]
    assert s.tick(files) == []


def test_exactly_once_under_random_churn_with_restarts():
    """A random landing zone: new files with any mtime, rewrites, deletions, restores, moves.
    Every version that stays unchanged long enough triggers exactly once; none twice."""
    rng = random.Random(7)
    s = Sensor(settle_ticks=2, max_groups=25)
    present: dict[str, FileVersion] = {}
    archive: list[FileVersion] = []  # deleted versions that may come back unchanged
    for _ in range(300):
        for _ in range(rng.randint(0, 12)):
            roll = rng.random()
            if roll < 0.45:
                path = f"z/{rng.randint(0, 400):04d}"
                present[path] = _f(path, rng.choice([OLD, NOW]) + rng.randint(0, 5), rng.randint(0, 3))
            elif roll < 0.7 and present:
                archive.append(present.pop(rng.choice(sorted(present))))
            elif roll < 0.85 and archive:
                f = archive.pop(rng.randrange(len(archive)))
                present[f.path] = f
        s.tick(list(present.values()))
    assert max(s.triggered.values()) == 1  # nothing ever triggered twice
    for _ in range(50):  # quiet period: the backlog drains
        s.tick(list(present.values()))
    assert max(s.triggered.values()) == 1
    assert all(f in s.triggered for f in present.values())  # everything present got its run


def test_cursor_size_at_10000_and_100000_files():
    sizes = {}
    for n in (10_000, 100_000):
        files = [_f(f"dbfs:/landing/bench/part-{i:06d}.csv", NOW + i * 3, 23) for i in range(n)]
        plan = plan_tick(FileCursor(), files, settle_ticks=1)
        raw = plan.cursor.to_json()
        sizes[n] = len(raw)
        assert plan_tick(FileCursor.from_json(raw), files, settle_ticks=1).to_trigger == []
        late = _f("dbfs:/landing/bench/late.csv", OLD)
        grown = plan_tick(FileCursor.from_json(raw), files + [late], settle_ticks=1, max_tracked=n + 1)
        assert grown.to_trigger == [late]
    assert sizes[10_000] < 5_000 and sizes[100_000] < 40_000, sizes
    # Random names (UUIDs) carry real entropy: the bound is per file, not per directory.
    rng = random.Random(1)
    files = [
        _f(
            f"/Volumes/main/raw/f/{uuid.UUID(int=rng.getrandbits(128))}.json",
            NOW + rng.randint(0, 10**9),
            rng.randint(1, 10**6),
        )
        for _ in range(10_000)
    ]
    raw = plan_tick(FileCursor(), files, settle_ticks=1).cursor.to_json()
    assert len(raw) < 45 * 10_000, len(raw)


def test_more_files_than_the_cap_fail_the_tick_loudly():
    files = [_f(f"f{i}") for i in range(11)]
    with pytest.raises(CursorCapacityError, match="11 matching files are present, more than the 10"):
        plan_tick(FileCursor(), files, max_tracked=10)


def test_version_1_cursor_is_migrated():
    v1 = json.dumps({"v": 1, "floor": NOW, "seen": {"same_ms": [NOW, 4]}, "pending": {"growing": [NOW, 1]}})
    cursor = FileCursor.from_json(v1)
    assert "Migrated a version-1" in cursor.notes[0]
    files = [_f("below", NOW - 1), _f("same_ms", NOW, 4), _f("other_same_ms", NOW, 4), _f("growing", NOW, 1)]
    plan = plan_tick(cursor, files, settle_ticks=1)
    assert sorted(_paths(plan.to_trigger)) == ["growing", "other_same_ms"]
    assert plan.notes == cursor.notes
    again = plan_tick(FileCursor.from_json(plan.cursor.to_json()), files + [_f("late", OLD)], settle_ticks=1)
    assert _paths(again.to_trigger) == ["late"] and again.notes == []  # v2 from here on: the late file is found


@pytest.mark.parametrize("stored", ['{"v":99}', "not json", '{"v":2,"z":"@@@"}', "[]"])
def test_unreadable_cursor_resets_with_a_note(stored):
    cursor = FileCursor.from_json(stored)
    assert cursor.files == {} and "Reset an unreadable file-sensor cursor" in cursor.notes[0]


def test_cursor_round_trip_keeps_pending_state_and_retired_versions():
    cursor = FileCursor(
        files={
            "dbfs:/a/x": Entry(5, NOW, HANDLED),
            "dbfs:/a/y": Entry(6, OLD, 1, 1234),
            "/Volumes/c/s/v/ü": Entry(0, 0, 2, 9),
        },
        retired={("dbfs:/gone", 7, NOW): None},
    )
    back = FileCursor.from_json(cursor.to_json())
    assert back.files == cursor.files and back.retired == cursor.retired


def test_template_regex_extracts_partition_within_one_segment():
    regex = template_regex("dbfs:/landing/orders/date={partition}/*.csv")
    match = regex.fullmatch("dbfs:/landing/orders/date=2026-11-01/a.csv")
    assert match is not None and match.group("partition") == "2026-11-01"
    assert regex.fullmatch("dbfs:/landing/orders/date=2026-11-01/sub/a.csv") is None
    assert template_regex("/landing/x/{partition}/_SUCCESS").fullmatch("dbfs:/landing/x/k/_SUCCESS")


def test_target_is_required():
    with pytest.raises(TypeError):
        build_file_sensor(name="x", watch_path="dbfs:/x")  # type: ignore[call-arg]


# ============================================================================ through the SDK


# Stand-ins for the demo graph's shape: the sensor resolves its target against real definitions.
@dg.asset(partitions_def=daily_partitions)
def bronze_orders() -> None: ...


@dg.asset(partitions_def=daily_partitions, deps=[bronze_orders])
def silver_orders() -> None: ...


@dg.asset
def raw_files() -> None: ...


ORDERS_TARGET = dg.AssetSelection.assets("bronze_orders").downstream()


def _tick(sensor: dg.SensorDefinition, cursor: str | None, resource: DatabricksResource):
    defs = dg.Definitions(assets=[bronze_orders, silver_orders, raw_files], sensors=[sensor])
    # As a context manager, so the resources (and their ephemeral instance) are torn down.
    with dg.build_sensor_context(cursor=cursor, resources={"databricks": resource}, definitions=defs) as context:
        result = sensor.evaluate_tick(context)
    # A tick that does not return a cursor leaves the stored one as it was.
    return (
        list(result.run_requests or []),
        (result.cursor if result.cursor is not None else cursor),
        result.skip_message,
    )


@pytest.fixture(scope="module")
def resource(fake_dbx) -> DatabricksResource:
    return DatabricksResource(host=fake_dbx.host, token=fake_dbx.token)


@pytest.fixture
def root() -> str:
    """A fresh DBFS directory per test, so tests sharing the workspace never see each other's files."""
    return f"dbfs:/sensor_tests/{uuid.uuid4().hex[:10]}"


def put_dbfs(client, path: str, data: bytes) -> None:
    # One inline `put` call (upload() streams with create/add-block/close: three calls).
    client.dbfs.put(path, contents=base64.b64encode(data).decode(), overwrite=True)


def put_volume(client, path: str, data: bytes) -> None:
    client.files.upload(path, io.BytesIO(data), overwrite=True)


def set_mtime(local: Path, mtime_s: float) -> None:
    """What `cp -p` of an old file looks like: the workspace lists the file's own mtime."""
    os.utime(local, (mtime_s, mtime_s))


def orders_sensor(root: str, **overrides) -> dg.SensorDefinition:
    options: dict[str, Any] = dict(
        name="orders_landing",
        watch_path=root,
        target=ORDERS_TARGET,
        marker="_SUCCESS",
        partition_template=f"{root}/date={{partition}}/_SUCCESS",
        partitions_def=daily_partitions,
    )
    options.update(overrides)
    return build_file_sensor(**options)


def land_day(client, root: str, day: str) -> None:
    put_dbfs(client, f"{root}/date={day}/orders.csv", b"order_id,amount\n1,10\n")
    put_dbfs(client, f"{root}/date={day}/_SUCCESS", b"")


def test_new_marker_triggers_exactly_one_run_for_its_partition(fake_client, resource, root):
    land_day(fake_client, root, "2026-11-05")
    put_dbfs(fake_client, f"{root}/date=2026-11-06/orders.csv", b"order_id\n2\n")  # no marker yet
    sensor = orders_sensor(root)

    requests, cursor, _ = _tick(sensor, None, resource)  # a marker reacts at first sight
    assert [r.partition_key for r in requests] == ["2026-11-05"]
    assert requests[0].tags[TRIGGER_FILE_TAG] == f"{root}/date=2026-11-05"
    assert requests[0].run_key.startswith(f"{root}/date=2026-11-05/_SUCCESS@")

    requests, cursor2, skip = _tick(sensor, cursor, resource)
    assert requests == []
    assert "No new or changed files" in skip

    put_dbfs(fake_client, f"{root}/date=2026-11-06/_SUCCESS", b"")
    requests, _, _ = _tick(sensor, cursor2, resource)
    assert [r.partition_key for r in requests] == ["2026-11-06"]


def test_files_outside_the_partitions_are_skipped_not_retried(fake_client, resource, root, capfd):
    for bad in ("2025-01-01", "yesterday"):
        put_dbfs(fake_client, f"{root}/date={bad}/_SUCCESS", b"")
    land_day(fake_client, root, "2026-11-07")
    sensor = orders_sensor(root)
    requests, cursor, _ = _tick(sensor, None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-07"]
    logged = capfd.readouterr().err  # the sensor context's log goes to stderr
    assert "date=2025-01-01/_SUCCESS: '2025-01-01' is not a partition" in logged
    assert "'yesterday' is not a partition" in logged
    requests, _, _ = _tick(sensor, cursor, resource)
    assert requests == []


def test_dbfs_late_copy_with_an_old_mtime_and_a_rewrite(fake_client, fake_dbx, resource, root):
    sensor = build_file_sensor(name="csvs", watch_path=root, pattern="*.csv", target="raw_files")
    put_dbfs(fake_client, f"{root}/today.csv", b"v1\n")
    requests, cursor, skip = _tick(sensor, None, resource)
    assert requests == [] and "waiting to settle" in skip  # seen once; stable when seen again unchanged
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert [r.run_key.split("@")[0] for r in requests] == [f"{root}/today.csv"]

    late = f"{root}/2001/archive.csv"
    put_dbfs(fake_client, late, b"old,data\n")
    set_mtime(fake_dbx.paths.dbfs / late[len("dbfs:/") :], 978_307_200)  # 2001-01-01
    for expected in ([], [f"{late}@978307200000:9"], []):
        requests, cursor, _ = _tick(sensor, cursor, resource)
        assert [r.run_key for r in requests] == expected

    put_dbfs(fake_client, late, b"old,data,rewritten\n")  # a new size: a new version
    set_mtime(fake_dbx.paths.dbfs / late[len("dbfs:/") :], 978_307_200)
    for expected in ([], [f"{late}@978307200000:19"], []):
        requests, cursor, _ = _tick(sensor, cursor, resource)
        assert [r.run_key for r in requests] == expected


def test_daemon_restart_neither_retriggers_nor_misses(fake_client, resource, root):
    land_day(fake_client, root, "2026-11-08")
    requests, stored_cursor, _ = _tick(orders_sensor(root), None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-08"]

    land_day(fake_client, root, "2026-11-09")  # lands while the daemon is down
    # A new process: a freshly built sensor, a fresh resource and client, only the stored cursor.
    fresh_resource = DatabricksResource(host=resource.host, token=resource.token)
    requests, _, _ = _tick(orders_sensor(root), str(stored_cursor), fresh_resource)
    assert [r.partition_key for r in requests] == ["2026-11-09"]


def test_volume_listing_pages_and_finds_an_old_mtime(fake_dbx, resource):
    rel = f"main/landing/files/{uuid.uuid4().hex[:10]}"
    root = f"/Volumes/{rel}"
    local_dir = fake_dbx.paths.volumes / rel / "batch"
    local_dir.mkdir(parents=True)
    for i in range(1001):  # > one 1000-entry page; written on disk, listed over HTTP
        (local_dir / f"{i:05d}.csv").write_bytes(b"id\n1\n")
    (local_dir / "readme.txt").write_bytes(b"not a csv")
    sensor = build_file_sensor(
        name="volume_csvs", watch_path=root, pattern="*.csv", settle_ticks=1, max_runs_per_tick=None, target="raw_files"
    )
    requests, cursor, _ = _tick(sensor, None, resource)
    assert {r.run_key.split("@")[0] for r in requests} == {f"{root}/batch/{i:05d}.csv" for i in range(1001)}

    (local_dir / "late.csv").write_bytes(b"id\n2\n")
    set_mtime(local_dir / "late.csv", 978_307_200)
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert [r.run_key for r in requests] == [f"{root}/batch/late.csv@978307200000:5"]
    assert _tick(sensor, cursor, resource)[0] == []


def test_volume_marker_with_partitions(fake_client, resource):
    root = f"/Volumes/main/landing/files/{uuid.uuid4().hex[:10]}"
    put_volume(fake_client, f"{root}/date=2026-11-10/orders.csv", b"x\n")
    put_volume(fake_client, f"{root}/date=2026-11-10/_SUCCESS", b"")
    requests, cursor, _ = _tick(orders_sensor(root), None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-10"]
    assert requests[0].tags[TRIGGER_FILE_TAG] == f"{root}/date=2026-11-10"
    assert _tick(orders_sensor(root), cursor, resource)[0] == []


@pytest.mark.parametrize("missing", ["dbfs:/no/such/landing", "/Volumes/main/landing/files/no_such_dir"])
def test_missing_watch_path_skips_naming_the_path(resource, missing):
    sensor = build_file_sensor(name="missing", watch_path=missing, target="raw_files")
    stored = FileCursor(files={f"{missing}/x": Entry(1, 5, HANDLED)}).to_json()
    requests, cursor, skip = _tick(sensor, stored, resource)
    assert requests == []
    assert missing in skip and "does not exist" in skip
    assert cursor == stored


# ---------------------------------------------------------------------------- failures


def test_rejected_credentials_name_the_path_and_identity(fake_dbx, root):
    bad = DatabricksResource(host=fake_dbx.host, token="dapi-not-the-token")
    sensor = build_file_sensor(name="orders", watch_path=root, api_retry_seconds=2, target="raw_files")
    with pytest.raises(Exception) as info:
        _tick(sensor, None, bad)
    err: BaseException = info.value
    while not isinstance(err, WatchPathAccessError) and err.__cause__ is not None:
        err = err.__cause__  # dagster wraps sensor errors
    assert isinstance(err, WatchPathAccessError)
    assert root in str(err) and "identity" in str(err)
    assert "dapi-not-the-token" not in str(info.value)


@pytest.mark.parametrize(
    "faults",
    [
        {"server_error": 1.0, "server_error_status": 500},  # not retried by the SDK
        {"server_error": 1.0, "server_error_status": 503},  # retried until the sensor's budget
        {"rate_limit": 1.0},  # 429 + Retry-After
    ],
    ids=["500", "503", "429"],
)
def test_transient_api_failures_skip_and_keep_the_cursor(fake_client, resource, root, faults):
    land_day(fake_client, root, "2026-11-11")
    sensor = orders_sensor(root, api_retry_seconds=2)
    stored = FileCursor(files={f"{root}/x": Entry(1, 123, HANDLED)}).to_json()
    # The workspace's own fault injection, only on listing calls, switched off afterwards.
    fake_client.api_client.do("PUT", "/api/2.0/local/faults", body={**faults, "endpoints": ["/dbfs/list"]})
    try:
        started = time.monotonic()
        requests, cursor, skip = _tick(sensor, stored, resource)
        assert time.monotonic() - started < 60  # the sensor's short retry, not the SDK's 5 minutes
    finally:
        fake_client.api_client.do("PUT", "/api/2.0/local/faults", body={})
    assert requests == [] and cursor == stored
    assert root in skip and "transiently" in skip and "cursor unchanged" in skip
    # Nothing was lost: the next healthy tick sees the day.
    requests, _, _ = _tick(sensor, stored, resource)
    assert [r.partition_key for r in requests] == ["2026-11-11"]


class _ForbiddingWorkspace(BaseHTTPRequestHandler):
    """A minimal stand-in for a workspace with ACLs (the local one has none): it knows the
    caller but answers every listing with 403 PERMISSION_DENIED."""

    def do_GET(self):
        if self.path.startswith("/api/2.0/preview/scim/v2/Me"):
            code, body = 200, {"userName": "sensor@example.com"}
        else:
            code, body = 403, {"error_code": "PERMISSION_DENIED", "message": "User does not have READ on path"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def forbidding_workspace():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForbiddingWorkspace)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_permission_denied_names_the_path_and_identity(forbidding_workspace):
    resource = DatabricksResource(host=forbidding_workspace, token="dapi-test-token")
    sensor = build_file_sensor(
        name="orders", watch_path="dbfs:/landing/orders", api_retry_seconds=2, target="raw_files"
    )
    with pytest.raises(Exception) as info:
        _tick(sensor, None, resource)
    message = str(info.value)
    assert "dbfs:/landing/orders" in message and "sensor@example.com" in message and "PERMISSION_DENIED" in message
    assert "dapi-test-token" not in message


def test_unreachable_workspace_skips_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    resource = DatabricksResource(host=f"http://127.0.0.1:{port}", token="dapi-x")
    sensor = build_file_sensor(
        name="orders", watch_path="dbfs:/landing/orders", api_retry_seconds=2, target="raw_files"
    )
    requests, cursor, skip = _tick(sensor, None, resource)
    assert requests == [] and cursor is None and "transiently" in skip
