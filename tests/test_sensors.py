"""File sensors against the shared local workspace, through the real SDK over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.file_sensor import (
    TRIGGER_FILE_TAG,
    FileCursor,
    FileVersion,
    WatchPathAccessError,
    build_file_sensor,
    plan_tick,
    template_regex,
)


# ---------------------------------------------------------------------------- helpers


# Stand-ins for the demo graph's shape: the sensor resolves its target against real definitions.
@dg.asset(partitions_def=daily_partitions)
def bronze_orders() -> None: ...


@dg.asset(partitions_def=daily_partitions, deps=[bronze_orders])
def silver_orders() -> None: ...


@dg.asset
def raw_files() -> None: ...


def _tick(sensor: dg.SensorDefinition, cursor: str | None, resource: DatabricksResource):
    defs = dg.Definitions(assets=[bronze_orders, silver_orders, raw_files], sensors=[sensor])
    # As a context manager, so the resources (and their ephemeral instance) are torn down.
    with dg.build_sensor_context(cursor=cursor, resources={"databricks": resource}, definitions=defs) as context:
        result = sensor.evaluate_tick(context)
    # A tick that does not return a cursor leaves the stored one as it was.
    return list(result.run_requests or []), (result.cursor if result.cursor is not None else cursor), result.skip_message


@pytest.fixture(scope="module")
def resource(local_workspace) -> DatabricksResource:
    return DatabricksResource(local_state_dir=str(local_workspace.state_dir))


@pytest.fixture
def root() -> str:
    """A fresh DBFS directory per test, so tests sharing the workspace never see each other's files."""
    return f"dbfs:/sensor_tests/{uuid.uuid4().hex[:10]}"


def put_dbfs(client, path: str, data: bytes) -> None:
    # One inline `put` call (upload() streams with create/add-block/close: three calls).
    client.dbfs.put(path, contents=base64.b64encode(data).decode(), overwrite=True)


def put_volume(client, path: str, data: bytes) -> None:
    client.files.upload(path, io.BytesIO(data), overwrite=True)


def put_many(put, client, paths: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: put(client, p, b"id,amount\n1,2\n"), paths))


def orders_sensor(root: str, **overrides) -> dg.SensorDefinition:
    options = dict(
        name="orders_landing",
        watch_path=root,
        marker="_SUCCESS",
        partition_template=f"{root}/date={{partition}}/_SUCCESS",
        partitions_def=daily_partitions,
        settle_seconds=0,
    )
    options.update(overrides)
    return build_file_sensor(**options)


def land_day(client, root: str, day: str) -> None:
    put_dbfs(client, f"{root}/date={day}/orders.csv", b"order_id,amount\n1,10\n")
    put_dbfs(client, f"{root}/date={day}/_SUCCESS", b"")


# ---------------------------------------------------------------------------- behaviour


def test_new_marker_triggers_exactly_one_run_for_its_partition(workspace_client, resource, root):
    land_day(workspace_client, root, "2026-11-05")
    put_dbfs(workspace_client, f"{root}/date=2026-11-06/orders.csv", b"order_id\n2\n")  # no marker yet
    sensor = orders_sensor(root)

    requests, cursor, _ = _tick(sensor, None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-05"]
    assert requests[0].tags[TRIGGER_FILE_TAG] == f"{root}/date=2026-11-05"
    assert requests[0].run_key.startswith(f"{root}/date=2026-11-05/_SUCCESS@")

    requests, cursor2, skip = _tick(sensor, cursor, resource)
    assert requests == []
    assert "No new or changed files" in skip

    put_dbfs(workspace_client, f"{root}/date=2026-11-06/_SUCCESS", b"")
    requests, _, _ = _tick(sensor, cursor2, resource)
    assert [r.partition_key for r in requests] == ["2026-11-06"]


def test_default_target_is_bronze_orders_and_downstream(root):
    defs = dg.Definitions(assets=[bronze_orders, silver_orders, raw_files], sensors=[orders_sensor(root)])
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("orders_landing")
    assert repo.get_job(sensor.job_name).asset_layer.selected_asset_keys == {
        dg.AssetKey("bronze_orders"),
        dg.AssetKey("silver_orders"),
    }
    assert sensor.minimum_interval_seconds == 30


def test_files_outside_the_partitions_are_skipped_not_retried(workspace_client, resource, root, capfd):
    for bad in ("2025-01-01", "yesterday"):
        put_dbfs(workspace_client, f"{root}/date={bad}/_SUCCESS", b"")
    land_day(workspace_client, root, "2026-11-07")
    sensor = orders_sensor(root)
    requests, cursor, _ = _tick(sensor, None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-07"]
    logged = capfd.readouterr().err  # the sensor context's log goes to stderr
    assert "date=2025-01-01/_SUCCESS: '2025-01-01' is not a partition" in logged
    assert "'yesterday' is not a partition" in logged
    requests, _, _ = _tick(sensor, cursor, resource)
    assert requests == []


def test_rewritten_file_is_a_new_version_but_unchanged_reappearance_is_not(workspace_client, resource, root):
    sensor = build_file_sensor(name="csvs", watch_path=root, pattern="*.csv", settle_seconds=0, target="raw_files")
    put_dbfs(workspace_client, f"{root}/a.csv", b"v1\n")
    requests, cursor, _ = _tick(sensor, None, resource)
    assert len(requests) == 1

    # Moved away and back: same mtime and size, so the same version.
    workspace_client.dbfs.move(f"{root}/a.csv", f"{root}/../parked_{uuid.uuid4().hex[:6]}.txt")
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert requests == []
    parked = [f.path for f in workspace_client.dbfs.list(root + "/..") if "parked_" in f.path]
    workspace_client.dbfs.move(parked[0], f"{root}/a.csv")
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert requests == []

    time.sleep(0.01)  # a new mtime even on coarse clocks
    put_dbfs(workspace_client, f"{root}/a.csv", b"v2, longer\n")
    requests, _, _ = _tick(sensor, cursor, resource)
    assert len(requests) == 1 and requests[0].run_key.endswith(":11")


def test_growing_file_waits_until_stable(workspace_client, resource, root):
    sensor = build_file_sensor(name="csvs", watch_path=root, pattern="*.csv", settle_seconds=2, target="raw_files")
    path = f"{root}/big.csv"
    put_dbfs(workspace_client, path, b"part one\n")
    requests, cursor, skip = _tick(sensor, None, resource)
    assert requests == [] and "still settling" in skip
    assert path in json.loads(cursor)["pending"]

    put_dbfs(workspace_client, path, b"part one\npart two\n")  # still being written
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert requests == []

    modified = workspace_client.dbfs.get_status(path).modification_time / 1000
    time.sleep(max(0.0, modified + 2.2 - time.time()))
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert [r.run_key for r in requests] == [f"{path}@{int(modified * 1000)}:18"]
    assert json.loads(cursor)["pending"] == {}
    requests, _, _ = _tick(sensor, cursor, resource)
    assert requests == []


def test_daemon_restart_neither_retriggers_nor_misses(workspace_client, resource, root):
    land_day(workspace_client, root, "2026-11-08")
    requests, stored_cursor, _ = _tick(orders_sensor(root), None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-08"]

    land_day(workspace_client, root, "2026-11-09")  # lands while the daemon is down
    # A new process: a freshly built sensor, a fresh resource and client, only the stored cursor.
    fresh_resource = DatabricksResource(local_state_dir=resource.local_state_dir)
    requests, _, _ = _tick(orders_sensor(root), str(stored_cursor), fresh_resource)
    assert [r.partition_key for r in requests] == ["2026-11-09"]


def test_volume_path_pages_and_drains_a_backlog(workspace_client, resource):
    root = f"/Volumes/main/landing/files/{uuid.uuid4().hex[:10]}"
    paths = [f"{root}/batch/{i:05d}.csv" for i in range(1001)]  # > one 1000-entry page
    put_many(put_volume, workspace_client, paths)
    put_volume(workspace_client, f"{root}/batch/readme.txt", b"not a csv")
    sensor = build_file_sensor(
        name="volume_csvs", watch_path=root, pattern="*.csv", settle_seconds=0, max_runs_per_tick=400, target="raw_files"
    )

    seen_keys: list[str] = []
    cursor = None
    for expected in (400, 400, 201, 0):
        requests, cursor, _ = _tick(sensor, cursor, resource)
        assert len(requests) == expected
        seen_keys += [r.run_key for r in requests]
    assert len(set(seen_keys)) == 1001
    assert {k.split("@")[0] for k in seen_keys} == set(paths)


def test_volume_marker_with_partitions(workspace_client, resource):
    root = f"/Volumes/main/landing/files/{uuid.uuid4().hex[:10]}"
    put_volume(workspace_client, f"{root}/date=2026-11-10/orders.csv", b"x\n")
    put_volume(workspace_client, f"{root}/date=2026-11-10/_SUCCESS", b"")
    requests, cursor, _ = _tick(orders_sensor(root), None, resource)
    assert [r.partition_key for r in requests] == ["2026-11-10"]
    assert requests[0].tags[TRIGGER_FILE_TAG] == f"{root}/date=2026-11-10"
    assert _tick(orders_sensor(root), cursor, resource)[0] == []


@pytest.mark.parametrize("missing", ["dbfs:/no/such/landing", "/Volumes/main/landing/files/no_such_dir"])
def test_missing_watch_path_skips_naming_the_path(resource, missing):
    sensor = build_file_sensor(name="missing", watch_path=missing, settle_seconds=0, target="raw_files")
    requests, cursor, skip = _tick(sensor, '{"v":1,"floor":5,"seen":{},"pending":{}}', resource)
    assert requests == []
    assert missing in skip and "does not exist" in skip
    assert cursor == '{"v":1,"floor":5,"seen":{},"pending":{}}'


def test_cursor_stays_bounded_with_10000_files(workspace_client, resource, root):
    paths = [f"{root}/part-{i:05d}.csv" for i in range(10_000)]
    put_many(put_dbfs, workspace_client, paths)
    sensor = build_file_sensor(name="bulk", watch_path=root, pattern="*.csv", settle_seconds=0, max_runs_per_tick=None, target="raw_files")

    requests, cursor, _ = _tick(sensor, None, resource)
    assert len(requests) == 10_000
    state = json.loads(cursor)
    assert len(cursor) < 4_000, f"cursor is {len(cursor)} bytes"
    assert len(state["seen"]) < 100 and state["pending"] == {}

    put_many(put_dbfs, workspace_client, [f"{root}/late-{i}.csv" for i in range(3)])
    requests, cursor, _ = _tick(sensor, cursor, resource)
    assert sorted(r.run_key.split("@")[0] for r in requests) == [f"{root}/late-{i}.csv" for i in range(3)]
    assert len(cursor) < 4_000
    assert _tick(sensor, cursor, resource)[0] == []


# ---------------------------------------------------------------------------- failures


def test_rejected_credentials_name_the_path_and_identity(local_workspace, root):
    bad = DatabricksResource(host=local_workspace.host, token="dapi-not-the-token")
    sensor = build_file_sensor(name="orders", watch_path=root, settle_seconds=0, api_retry_seconds=2, target="raw_files")
    with pytest.raises(Exception) as info:
        _tick(sensor, None, bad)
    err = info.value
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
def test_transient_api_failures_skip_and_keep_the_cursor(workspace_client, resource, root, faults):
    land_day(workspace_client, root, "2026-11-11")
    sensor = orders_sensor(root, api_retry_seconds=2)
    stored = FileCursor(floor=123, seen={f"{root}/x": [123, 1]}).to_json()
    # The workspace's own fault injection, only on listing calls, switched off afterwards.
    workspace_client.api_client.do("PUT", "/api/2.0/local/faults", body={**faults, "endpoints": ["/dbfs/list"]})
    try:
        started = time.monotonic()
        requests, cursor, skip = _tick(sensor, stored, resource)
        assert time.monotonic() - started < 60  # the sensor's short retry, not the SDK's 5 minutes
    finally:
        workspace_client.api_client.do("PUT", "/api/2.0/local/faults", body={})
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
    sensor = build_file_sensor(name="orders", watch_path="dbfs:/landing/orders", api_retry_seconds=2, target="raw_files")
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
    sensor = build_file_sensor(name="orders", watch_path="dbfs:/landing/orders", api_retry_seconds=2, target="raw_files")
    requests, cursor, skip = _tick(sensor, None, resource)
    assert requests == [] and cursor is None and "transiently" in skip


# ---------------------------------------------------------------------------- pure planning logic


def _f(path, mtime, size=1):
    return FileVersion(mtime_ms=mtime, path=path, size=size)


def test_plan_catches_same_millisecond_files_and_size_change_without_mtime_change():
    plan = plan_tick(FileCursor(), [_f("a", 100)], now_ms=10_000, settle_ms=0)
    assert [f.path for f in plan.to_trigger] == ["a"]
    # b lands in the same millisecond as a, after a was handled
    plan = plan_tick(plan.cursor, [_f("a", 100), _f("b", 100)], now_ms=10_000, settle_ms=0)
    assert [f.path for f in plan.to_trigger] == ["b"]

    # object-store semantics: mtime fixed at creation while the size grows
    plan = plan_tick(FileCursor(), [_f("c", 100, 5)], now_ms=1_000, settle_ms=1_000)
    assert plan.to_trigger == [] and plan.cursor.pending == {"c": [100, 5]}
    plan = plan_tick(plan.cursor, [_f("c", 100, 9)], now_ms=5_000, settle_ms=1_000)
    assert plan.to_trigger == []  # changed since last tick
    plan = plan_tick(plan.cursor, [_f("c", 100, 9)], now_ms=6_000, settle_ms=1_000)
    assert [f.size for f in plan.to_trigger] == [9]


def test_plan_backlog_does_not_lose_a_formerly_pending_file_below_the_floor():
    cursor = FileCursor(floor=0, seen={}, pending={"old": [50, 1]})
    files = [_f("old", 50), _f("n1", 200), _f("n2", 300)]
    plan = plan_tick(cursor, files, now_ms=10_000, settle_ms=0, max_groups=1)
    assert [f.path for f in plan.to_trigger] == ["old"]
    plan = plan_tick(plan.cursor, files, now_ms=10_000, settle_ms=0, max_groups=1)
    assert [f.path for f in plan.to_trigger] == ["n1"]
    plan = plan_tick(plan.cursor, files, now_ms=10_000, settle_ms=0, max_groups=1)
    assert [f.path for f in plan.to_trigger] == ["n2"]
    assert plan_tick(plan.cursor, files, now_ms=10_000, settle_ms=0).to_trigger == []


def test_template_regex_extracts_partition_within_one_segment():
    regex = template_regex("dbfs:/landing/orders/date={partition}/*.csv")
    assert regex.fullmatch("dbfs:/landing/orders/date=2026-11-01/a.csv").group("partition") == "2026-11-01"
    assert regex.fullmatch("dbfs:/landing/orders/date=2026-11-01/sub/a.csv") is None
    assert template_regex("/landing/x/{partition}/_SUCCESS").fullmatch("dbfs:/landing/x/k/_SUCCESS")
