"""The newcomer's path, end to end, in the real daemon: `make dev`'s launcher on a fresh
DAGSTER_HOME and local workspace, the landing sensor ON.

One module starts the product ONCE (a `dagster dev` start and each Spark run cost tens of
seconds); its tests run in order against it:

1. the sensor's first runs build every asset for the days `make dev` landed, all green: the demo
   graph on real Spark and real dbt as one Databricks run on one job cluster, with each asset's
   table, row count, columns and share of the cluster, the dbt tests as checks, no secret in any event;
2. one more day is landed as the banner suggests (the daemon works on it during step 3);
3. what a user sees in headless Chromium: materialized assets, a `databricks_run_url` link, the
   Databricks run page behind it;
4. the daemon launched exactly one run for that day within two ticks;
5. Ctrl-C to the launcher while that run is in flight stops every process it started (webserver,
   daemon, code servers, the run, the local workspace and its cluster JVMs), and the instance keeps
   what it recorded.

Chromium is Debian's /usr/bin/chromium (`make browser` installs it), driven by the playwright
package. Screenshots go to the module's tmp dir (printed).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCATION = "dbx_assets.demo.definitions"
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": "orders_landing"}
MARKER_ENV = "DBX_NEWCOMER_TEST"  # inherited by every process the launcher starts
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
START_TIMEOUT_S = 420  # a loaded 2-core machine takes minutes to load dagster dev
RUN_TIMEOUT_S = 900

pytestmark = pytest.mark.timeout(2400)


# ------------------------------------------------------------------------------ processes


def _marked_processes(marker: str) -> dict[int, str]:
    """pid -> start time and command, for live processes carrying MARKER_ENV=marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":  # exited, not yet reaped
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[int(entry.name)] = f"{stat[19]} {cmd[:160]}"
        except OSError:
            continue
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Product:
    url: str
    proc: subprocess.Popen
    home: Path
    state_dir: Path
    log: Path
    env: dict[str, str]
    marker: str
    shots: Path
    started_s: float

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """`python -m dbx_assets.demo dev`, exactly what `make dev` runs, in its own process group."""
    base = tmp_path_factory.mktemp("newcomer")
    home, state_dir, shots = base / "dagster_home", base / "local_workspace", base / "screenshots"
    shots.mkdir()
    marker = uuid.uuid4().hex
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "DBX_DEMO_"))}
    env.update(DAGSTER_HOME=str(home), DBX_LOCAL_STATE_DIR=str(state_dir), **{MARKER_ENV: marker})
    log = base / "make_dev.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbx_assets.demo", "dev", "--pool-limit", "1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    p = Product(f"http://127.0.0.1:{port}", proc, home, state_dir, log, env, marker, shots, started)
    print(f"\nmake dev log: {log}\nscreenshots: {shots}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Dagster UI:" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                pytest.fail(f"the launcher exited with {proc.returncode}:\n{p.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no UI within {START_TIMEOUT_S} s:\n{p.log_tail()}")
            time.sleep(1)
        print(f"UI up after {time.monotonic() - started:.0f} s")
        yield p
    finally:
        if proc.poll() is None:  # a failed test before the stop test: stop it as a user would
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in _marked_processes(marker):  # never leave anything running, whatever failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ Dagster's APIs


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


RUNS = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
  sensorState { status ticks(limit: 20) { status timestamp runIds skipReason error { message } } } } } }"""
RUN_LOGS = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on MessageEvent { message } } } } }"""
ASSET_KEYS = "{ assetNodes { assetKey { path } groupName } }"


def _runs(url: str) -> dict[str, dict]:
    return {
        r["runId"]: {**r, "tags": {t["key"]: t["value"] for t in r["tags"]}}
        for r in _graphql(url, RUNS)["runsOrError"]["results"]
    }


def _ticks(url: str) -> list[dict]:
    found = _graphql(url, TICKS, {"s": SENSOR})["sensorOrError"]
    assert found["__typename"] == "Sensor", found
    return sorted(found["sensorState"]["ticks"], key=lambda t: t["timestamp"])


def _days(run: dict) -> list[str]:
    """The partitions a run covers: one day, or a range (consecutive days landed together)."""
    tags = run["tags"]
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start = dt.date.fromisoformat(tags["dagster/asset_partition_range_start"])
    end = dt.date.fromisoformat(tags["dagster/asset_partition_range_end"])
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _failure_messages(url: str, run_id: str) -> list[str]:
    events = _graphql(url, RUN_LOGS, {"runId": run_id})["logsForRun"]["events"]
    return [e.get("message", "")[:500] for e in events if "Failure" in e["__typename"]][-5:]


def _wait_runs_done(p: Product, run_ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        runs = _runs(p.url)
        if all(runs[r]["status"] in TERMINAL for r in run_ids):
            return {r: runs[r] for r in run_ids}
        assert time.monotonic() < deadline, (
            f"runs not done in {RUN_TIMEOUT_S} s: {[runs[r]['status'] for r in run_ids]}"
        )
        assert p.proc.poll() is None, f"make dev exited:\n{p.log_tail()}"
        time.sleep(3)


def _assert_green(p: Product, runs: dict[str, dict]) -> None:
    failed = {r: (run["status"], _failure_messages(p.url, r)) for r, run in runs.items() if run["status"] != "SUCCESS"}
    assert not failed, f"failed runs: {failed}"


@contextlib.contextmanager
def _instance(home: Path):
    """The Dagster instance on that DAGSTER_HOME (what the UI and the daemon recorded)."""
    import dagster as dg

    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


def _materialized_days(home: Path) -> dict[str, set[str]]:
    """Asset key -> days with a materialization, from the instance on that DAGSTER_HOME."""
    from dbx_assets.demo.definitions import defs

    with _instance(home) as instance:
        out = {}
        for key in defs.resolve_all_asset_keys():
            records = instance.fetch_materializations(key, limit=1000).records
            out[key.to_user_string()] = {r.partition_key for r in records if r.partition_key}
        return out


@dataclass
class RecordedRun:
    """One Dagster run as its event log holds it: each asset's last metadata, each check's evaluation."""

    metadata: dict[str, dict]
    checks: dict[tuple[str, str], Any]
    events_text: str


def _recorded_run(home: Path, run_id: str) -> RecordedRun:
    with _instance(home) as instance:
        entries = instance.all_logs(run_id)
    metadata, checks = {}, {}
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            metadata[materialization.asset_key.to_user_string()] = {
                k: v.value for k, v in materialization.metadata.items()
            }
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            checks[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation
    return RecordedRun(metadata, checks, repr(entries))


def _step_stdout(home: Path, run_id: str) -> str:
    """What the run's step wrote to its stdout: the UI's stdout tab, from the instance's compute logs."""
    with _instance(home) as instance:
        manager = instance.compute_log_manager
        stdout = ""
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            file_key = getattr(event.event_specific_data, "file_key", None) if event else None
            if event is not None and event.event_type_value == "LOGS_CAPTURED" and isinstance(file_key, str):
                data = manager.get_log_data(manager.build_log_key_for_run(run_id, file_key))
                stdout += (data.stdout or b"").decode()
        return stdout


def _assert_one_databricks_run_and_what_each_asset_reports(p: Product, run_id: str, days: list[str]) -> None:
    """The demo graph for those days, as Dagster recorded it and as the workspace shows it: one
    Databricks run on one job cluster, tables in the deployment's catalog, each task's share of the
    cluster, the dbt tests as checks (a warning not blocking), and no secret in any event."""
    from dbx_assets.demo.definitions import CATALOG
    from dbx_assets.demo.landing import CRM_API_KEY, SECRET_SCOPE
    from dbx_assets.integration.deployment import default_deployment

    recorded = _recorded_run(p.home, run_id)
    meta = recorded.metadata
    client = _workspace_client(p)
    [databricks_run_id] = {m["databricks_run_id"] for m in meta.values()}
    run = client.jobs.get_run(databricks_run_id)
    task_keys = ["bronze_orders", "bronze_customers", "silver_orders", "dbt_build", "revenue_report"]
    assert sorted(t.task_key for t in run.tasks or []) == sorted(task_keys)
    assert len({t.cluster_instance.cluster_id for t in run.tasks or [] if t.cluster_instance}) == 1
    assert meta["fct_daily_revenue"]["databricks_run_url"] == run.run_page_url

    report = meta["revenue_report"]
    assert report["report_period"] == f"{days[0]}..{days[-1]}" and report["days"] == len(days), report
    assert report["revenue"] > 0 and report["orders"] > 100
    assert meta["bronze_orders"]["days"] == len(days)
    assert meta["bronze_orders"]["dagster/row_count"] == meta["bronze_orders"]["rows_ingested"]  # a fresh table

    # Each notebook asset names its table in the deployment's own catalog (dbt's models too, nothing
    # in the workspace default): columns from Unity Catalog, rows from the warehouse, a DBU estimate
    # from its share of the cluster (i3.xlarge driver + 1 worker).
    catalog = CATALOG.format(deployment=default_deployment())
    assert client.catalogs.get(catalog).name == catalog
    assert client.tables.get(f"{catalog}.analytics.fct_daily_revenue").columns
    assert "silver" not in {s.name for s in client.schemas.list("main")}
    for asset, table in {
        "bronze_orders": "bronze.orders",
        "bronze_customers": "bronze.customers",
        "silver_orders": "silver.orders_enriched",
    }.items():
        m = meta[asset]
        assert m["dagster/table_name"] == f"{catalog}.{table}", m
        assert m["dagster/row_count"] > 0 and m["dagster/column_schema"].columns, m
        assert m["databricks_compute_s"] > 0
        assert m["databricks_dbu_estimate"] == pytest.approx(2.0 * m["databricks_compute_s"] / 3600, rel=1e-2)
    silver_columns = {c.name for c in meta["silver_orders"]["dagster/column_schema"].columns}
    assert {"order_id", "customer_name", "order_date"} <= silver_columns
    # Silver is a Delta table the notebook upserts (MERGE INTO by order id): each materialization names
    # the table version it left, and the MERGE's counts are the notebook's result.
    silver = meta["silver_orders"]
    assert silver["delta_version"] >= 1 and "VERSION AS OF" in silver["delta_time_travel"], silver
    assert silver["rows_inserted"] + silver["rows_updated"] > 0, silver
    # The shared cluster's busy time is split among its tasks: the shares add up to it.
    busy: list[list[int]] = []
    for start, end in sorted((t.start_time or 0, t.end_time or 0) for t in run.tasks or []):
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    one_asset_per_task = ["bronze_orders", "bronze_customers", "silver_orders", "stg_orders", "revenue_report"]
    shares = sum(meta[a]["databricks_compute_s"] for a in one_asset_per_task)
    assert shares == pytest.approx(sum(e - s for s, e in busy) / 1000, abs=0.02)

    checks = recorded.checks
    assert checks[("stg_orders", "unique_stg_orders_order_id")].passed
    warn = next(c for (k, n), c in checks.items() if k == "dim_customers" and n.startswith("accepted_values"))
    assert not warn.passed and warn.severity.value == "WARN"  # CH customers: a warning only
    assert all(c.passed for c in checks.values() if c.severity.value == "ERROR")

    # What the notebooks printed is in the run's stdout tab, with no setting of the user's: the demo's
    # job cluster delivers its driver logs (cluster_log_conf) and the step tails them, labelled by cluster.
    stdout = _step_stdout(p.home, run_id)
    [cluster_id] = {t.cluster_instance.cluster_id for t in run.tasks or [] if t.cluster_instance}
    label = f"[shared {cluster_id}] "
    assert f"{label}Ingested {meta['bronze_orders']['rows_ingested']} rows for {len(days)} day(s)" in stdout, stdout[
        -3000:
    ]
    assert f"{label}CRM API key read from the secret scope" in stdout
    assert f"{label}Revenue for {days[0]}..{days[-1]}: " in stdout

    # The customers notebook read a secret: neither it nor the token reaches Dagster's events or logs.
    secret = client.secrets.get_secret(SECRET_SCOPE, CRM_API_KEY).value
    assert secret is not None and client.config.token
    assert base64.b64decode(secret).decode() not in recorded.events_text
    assert base64.b64decode(secret).decode() not in stdout
    assert client.config.token not in recorded.events_text


def _landed_days(p: Product) -> list[str]:
    from dbx_assets.demo.data import demo_days

    return [d.isoformat() for d in demo_days(count=3)]


# ------------------------------------------------------------------------------ the tests


def test_consecutive_days_landed_together_run_as_one_range():
    """The demo sensor's regrouping alone (no product needed): 19..21 together, 17 alone."""
    import dagster as dg

    from dbx_assets import TRIGGER_FILE_TAG
    from dbx_assets.demo.sensors import LANDING_TARGET, merge_consecutive_days

    per_day = [
        dg.RunRequest(run_key=f"k{d}", partition_key=d, tags={TRIGGER_FILE_TAG: d, "dagster/partition": d})
        for d in ("2026-11-21", "2026-11-17", "2026-11-19", "2026-11-20")
    ]
    merged = merge_consecutive_days(per_day)
    assert [(r.partition_key, r.partition_key_range) for r in merged] == [
        ("2026-11-17", None),
        (None, dg.PartitionKeyRange("2026-11-19", "2026-11-21")),
    ]
    assert merged[0].run_key == "k2026-11-17" and "dagster/partition" not in merged[0].tags
    assert merged[1].run_key != merge_consecutive_days(per_day[2:])[0].run_key  # 19..20 is another request
    from dbx_assets.demo.definitions import defs

    selected = {k.to_user_string() for k in LANDING_TARGET.resolve(defs.resolve_asset_graph())}
    assert {"bronze_orders", "bronze_customers", "silver_orders", "revenue_report"} <= selected


FIRST_RUNS: dict[str, dict] = {}


def test_the_first_runs_build_every_asset_for_the_landed_days(product):
    p = product
    deadline = time.monotonic() + START_TIMEOUT_S
    ticks = _ticks(p.url)
    while not any(t["runIds"] for t in ticks):  # the first tick that requested runs
        assert time.monotonic() < deadline, f"the sensor requested no run: {ticks}\n{p.log_tail()}"
        assert not any(t["status"] == "FAILURE" for t in ticks), f"sensor tick failed: {ticks}"
        time.sleep(2)
        ticks = _ticks(p.url)
    first = next(t for t in ticks if t["runIds"])
    runs = _wait_runs_done(p, first["runIds"])
    print(
        f"first runs ended {time.monotonic() - p.started_s:.0f} s after make dev started: "
        f"{[(r['status'], _days(r)) for r in runs.values()]}"
    )
    _assert_green(p, runs)
    FIRST_RUNS.update(runs)

    landed = _landed_days(p)
    covered = sorted(d for r in runs.values() for d in _days(r))
    assert covered == landed, f"the sensor's first runs cover {covered}, landed {landed}"
    assert len(runs) == 1, "consecutive days landed in one tick should run as one partition range (one cluster)"
    assert all(t["status"] != "FAILURE" for t in _ticks(p.url)), _ticks(p.url)
    assert all(r["status"] == "SUCCESS" for r in _runs(p.url).values())  # the Runs page: no failed run

    materialized = _materialized_days(p.home)
    missing = {k: sorted(set(landed) - days) for k, days in materialized.items() if set(landed) - days}
    assert "bronze_customers" in materialized and not missing, f"not materialized: {missing}"
    _assert_one_databricks_run_and_what_each_asset_reports(p, next(iter(runs)), landed)


DROPPED: dict = {}


def test_landing_another_day(product):
    """Lands a day the way the banner tells a user to; the daemon reacts while the browser test runs."""
    if not FIRST_RUNS:
        pytest.skip("the first runs did not succeed")
    p = product
    day = (dt.date.fromisoformat(_landed_days(p)[0]) - dt.timedelta(days=1)).isoformat()
    assert f"drop --date {day}" in p.log.read_text(errors="replace"), "make dev's banner suggests another day to land"
    before = {"runs": set(_runs(p.url)), "ticks": {t["timestamp"] for t in _ticks(p.url)}}
    dropped_at = time.time()  # a tick started during the drop may or may not see the marker
    drop = subprocess.run(
        [sys.executable, "-m", "dbx_assets.demo", "drop", "--date", day],
        cwd=ROOT,
        env=p.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert drop.returncode == 0, drop.stderr[-2000:]
    DROPPED.update(day=day, dropped_at=dropped_at, **before)


def test_a_user_sees_the_assets_materialized_and_a_link_to_the_databricks_run(product):
    if not FIRST_RUNS:
        pytest.skip("the first runs did not succeed")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser` (make test does)"
    from playwright.sync_api import sync_playwright

    p = product
    day = _landed_days(p)[-1]
    workspace_host = json.loads((p.state_dir / "connection.json").read_text())["host"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{p.url}/asset-groups", wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")  # the first-visit "join the community" dialog
            try:
                skip.wait_for(timeout=5_000)
                skip.click()
            except Exception:
                pass
            page.screenshot(path=str(p.shots / "1-global-lineage.png"))

            # Each group's graph: every asset has a latest event and some partitions filled.
            nodes = _graphql(p.url, ASSET_KEYS)["assetNodes"]
            for i, group in enumerate(sorted({n["groupName"] for n in nodes}), start=2):
                page.goto(f"{p.url}/locations/{LOCATION}/asset-groups/{group}", wait_until="networkidle")
                page.get_by_text("% filled").first.wait_for()
                page.wait_for_timeout(1000)  # the remaining nodes' live data
                page.screenshot(path=str(p.shots / f"{i}-group-{group}.png"))
                text = page.locator("body").inner_text()
                members = [n["assetKey"]["path"][-1] for n in nodes if n["groupName"] == group]
                assert text.count("% filled") >= len(members), f"{group}: {members} (see {p.shots})"
                assert not re.search(r"(^|\D)0% filled", text), f"{group} shows an empty asset (see {p.shots})"

            page.goto(f"{p.url}/runs", wait_until="networkidle")
            page.get_by_text("orders_landing").first.wait_for()
            page.screenshot(path=str(p.shots / "6-runs.png"))
            runs_text = page.locator("body").inner_text()
            assert "Success" in runs_text and "Failure" not in runs_text, f"the Runs page (see {p.shots})"

            # One asset's partition page: the day is shown materialized (every asset's days are
            # checked on the instance; the group graphs above show each one filled).
            page.goto(f"{p.url}/assets/bronze_orders?view=partitions&partition={day}", wait_until="networkidle")
            page.get_by_text("Latest materialization").first.wait_for()
            shown = time.monotonic() + 30  # the partition status loads after the page on a busy machine
            text = page.locator("body").inner_text()
            while (f"{day}\nMaterialized\n" not in text or "Materialized (0)" in text) and time.monotonic() < shown:
                page.wait_for_timeout(1000)
                text = page.locator("body").inner_text()
            assert f"{day}\nMaterialized\n" in text and "Materialized (0)" not in text, f"{day} (see {p.shots})"
            page.get_by_text("databricks_run_url").first.wait_for()
            page.screenshot(path=str(p.shots / "7-bronze-orders-metadata.png"), full_page=True)
            href = page.locator(f"a[href^='{workspace_host}']").first.get_attribute("href")
            assert href and "/runs/" in href, f"no Databricks run link on the asset page (see {p.shots})"

            # The catalog's page of a notebook asset that names its table: columns (Unity Catalog) and row
            # count (the warehouse) on its overview, the DBU estimate in its metadata, the table's name on
            # its events.
            page.goto(f"{p.url}/assets/silver_orders", wait_until="networkidle")
            page.get_by_text("Row count").first.wait_for()
            page.get_by_text("customer_name").first.wait_for()
            page.screenshot(path=str(p.shots / "7b-silver-orders-table.png"), full_page=True)
            overview = page.locator("body").inner_text()
            assert re.search(r"Row count\n[1-9][\d,]*\n", overview), f"no row count on the asset page (see {p.shots})"
            assert "Columns" in overview and "order_date" in overview, f"no columns on the asset page (see {p.shots})"
            assert "databricks_dbu_estimate" in overview, f"no DBU estimate on the asset page (see {p.shots})"
            page.goto(f"{p.url}/assets/silver_orders?view=events", wait_until="networkidle")
            page.get_by_text("dagster/table_name").first.wait_for()
            events = page.locator("body").inner_text()
            assert ".silver.orders_enriched" in events, f"the table's name (see {p.shots})"
            # Silver is a Delta table the notebook MERGEs into: each materialization names its table version.
            assert "delta_version" in events and "VERSION AS OF" in events, f"no Delta version (see {p.shots})"

            # The link leads to the local workspace's run page; a browser gets in with a one-time
            # login link (what `make dev` prints), never with the token in a URL.
            page.goto(href, wait_until="networkidle")
            assert "SUCCESS" not in page.locator("body").inner_text(), "the run page answered without a login"
            login = (
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "dbx_assets.local_workspace",
                        "login-url",
                        "--state-dir",
                        str(p.state_dir),
                        "--path",
                        href[len(workspace_host) :],
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            page.goto(login, wait_until="networkidle")
            page.screenshot(path=str(p.shots / "8-databricks-run-page.png"), full_page=True)
            run_page = page.locator("body").inner_text()
            assert "Timeline" in run_page and "Graph" in run_page, f"the run page (see {p.shots})"
            for task_key in ("bronze_orders", "bronze_customers", "silver_orders", "dbt_build", "revenue_report"):
                row = page.locator(f"tr[data-task='{task_key}']")
                assert "Succeeded" in row.inner_text(), f"task {task_key} on the run page (see {p.shots})"
            page.locator("tr[data-task='revenue_report'] a").first.click()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(p.shots / "9-revenue-report-output.png"), full_page=True)
            output = page.locator("body").inner_text()
            assert "Revenue for" in output, f"the report's printed line (see {p.shots})"
            assert "revenue_date" in output and "order_count" in output, f"its display() table (see {p.shots})"
            print(f"screenshots: {p.shots}; databricks run url: {href}")
        finally:
            browser.close()


IN_FLIGHT: dict = {}


def test_the_daemon_launches_exactly_that_day_within_two_ticks(product):
    if not DROPPED:
        pytest.skip("no day was landed")
    p, day = product, DROPPED["day"]
    deadline = time.monotonic() + 600
    while True:  # the first two ticks that started after the drop
        new_ticks = [
            t
            for t in _ticks(p.url)
            if t["timestamp"] not in DROPPED["ticks"]
            and t["timestamp"] > DROPPED["dropped_at"]
            and t["status"] != "STARTED"
        ]
        if len(new_ticks) >= 2:
            break
        assert time.monotonic() < deadline, f"fewer than two sensor ticks in 600 s after the drop: {new_ticks}"
        time.sleep(2)
    launched = [r for t in new_ticks[:2] for r in t["runIds"]]
    assert len(launched) == 1, f"the two ticks after landing {day} launched {launched}: {new_ticks[:2]}"
    run = _runs(p.url)[launched[0]]
    assert _days(run) == [day]
    assert set(_runs(p.url)) - DROPPED["runs"] == set(launched), "another run was launched besides that day's"
    # Its execution is the first runs' path (sensor -> run -> one Databricks run), checked above; the
    # next test stops make dev while this one is still in flight, as a user pressing Ctrl-C would.
    assert run["status"] in {"QUEUED", "STARTING", "STARTED", "SUCCESS"}, _failure_messages(p.url, launched[0])
    IN_FLIGHT.update(run_id=launched[0])


def _workspace_client(p: Product):
    from databricks.sdk import WorkspaceClient

    info = json.loads((p.state_dir / "connection.json").read_text())
    return WorkspaceClient(host=info["host"], token=info["token"])


def _running_clusters(client) -> list[str]:
    return [c.cluster_id for c in client.clusters.list() if c.state and c.state.value == "RUNNING"]


def test_ctrl_c_stops_everything_make_dev_started(product):
    p = product
    client = _workspace_client(p)
    # A Spark JVM to stop: the in-flight run's job cluster once it is up, or, if that run already
    # ended (a fast machine), an all-purpose cluster left running, as a user might.
    day_run = IN_FLIGHT.get("run_id")
    deadline = time.monotonic() + 300
    while True:
        started = _marked_processes(p.marker)
        running = _running_clusters(client)
        if running and "java" in " | ".join(started.values()):
            break
        if not running and (day_run is None or _runs(p.url)[day_run]["status"] in TERMINAL):
            client.clusters.create(
                cluster_name="left-running", spark_version="15.4.x-scala2.12", node_type_id="local", num_workers=0
            ).result()
        assert time.monotonic() < deadline, f"no cluster came up: {list(started.values())}"
        time.sleep(1)
    workspace_pid = json.loads((p.state_dir / "connection.json").read_text())["pid"]
    commands = " | ".join(started.values())
    for part in (
        "dbx_assets.demo dev",
        "dagster dev",
        "dagster_webserver",
        "dagster._daemon",
        "dagster api grpc",
        "dbx_assets.local_workspace serve",
        "java",
    ):
        assert part in commands, f"expected a running {part!r} among {list(started.values())}"
    assert workspace_pid in started

    in_flight = day_run if day_run and _runs(p.url)[day_run]["status"] == "STARTED" else None
    t0 = time.monotonic()
    os.kill(p.proc.pid, signal.SIGINT)  # Ctrl-C (the terminal signals make and the launcher)
    returncode = p.proc.wait(timeout=120)
    stop_s = time.monotonic() - t0
    print(f"stopped {len(started)} processes in {stop_s:.1f} s")
    assert returncode == 0, p.log_tail()

    time.sleep(1)
    left = {pid: cmd for pid, cmd in _marked_processes(p.marker).items()}
    assert left == {}, f"still running after Ctrl-C: {left}"
    for pid, desc in started.items():  # the same pid with the same start time would be a survivor
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            assert stat[19] != desc.split()[0] or stat[0] == "Z", f"survived: {pid} {desc}"
        except FileNotFoundError:
            pass
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{p.url}/server_info", timeout=5)
    assert "Stopped in" in p.log_tail()

    # Nothing is lost: the next `make dev` finds the runs and the materializations; the run that was
    # in flight is recorded as failed, after it cancelled its Databricks run.
    assert all(days for days in _materialized_days(p.home).values())
    if in_flight:
        with _instance(p.home) as instance:
            interrupted = instance.get_run_by_id(in_flight)
            messages = [e.user_message for e in instance.all_logs(in_flight)]
        assert interrupted is not None and interrupted.status.value == "FAILURE", interrupted
        assert any(m.startswith("Cancelling Databricks run") for m in messages), messages[-10:]
    assert (p.state_dir / "connection.json").exists()
