"""The whole product through its front door: `dagster dev` on the project's definitions,
the asset graph in headless Chromium, "Materialize all" for the latest day, and every asset
materialized with a Databricks run URL in its metadata.

Chromium is Debian's package driven by the `playwright` package (no `playwright install`).
The test installs it when missing and running as root; it skips only if no browser starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
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
RUN_TIMEOUT_S = 600
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

pytestmark = pytest.mark.timeout(1200)


# ------------------------------------------------------------------------------ browser


def _install_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installing it if we can), else why not."""
    if Path(CHROMIUM).exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and this user cannot apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in ([["apt-get", "install", "-y", "chromium"]], [["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]]):
        for cmd in attempt:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if Path(CHROMIUM).exists():
            return None
    return f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def browser():
    reason = _install_chromium()
    if reason:
        print(f"SKIP REASON: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as err:  # e.g. missing shared libraries
            reason = f"cannot start {CHROMIUM}: {str(err).splitlines()[0]}"
            print(f"SKIP REASON: {reason}")
            pytest.skip(reason)
        try:
            yield chromium
        finally:
            chromium.close()


# ------------------------------------------------------------------------------ dagster dev


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture(scope="module")
def dagster_dev(local_workspace, tmp_path_factory):
    """`dagster dev -w workspace.yaml` on the shared local workspace, in its own process group."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env.update(
        DAGSTER_HOME=str(home),
        DBX_LOCAL_STATE_DIR=str(local_workspace.state_dir),
        DBX_DEMO_SENSOR="stopped",  # the test's own "Materialize all" is the only run
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # dagster-dbt needs this env's `dbt`
    )
    seed = subprocess.run(
        [sys.executable, "-m", "dbx_assets.demo", "seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert seed.returncode == 0, f"demo seed failed: {seed.stderr[-2000:]}"

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "dagster_dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a signal reaches the webserver, daemon and code servers
            preexec_fn=_default_signals,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"dagster dev did not answer on {url} in 180 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        _stop_group(proc)
        print(f"dagster dev log: {log_path}")


def _default_signals() -> None:
    # A parent started in the background by a non-interactive shell hands down SIGINT and
    # SIGTERM as *ignored*; dagster dev would then never stop. Restore the defaults.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_group(proc: subprocess.Popen) -> None:
    """Ctrl-C to the whole group (dagster dev's graceful path), then SIGKILL whatever is left."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the leader are still in the group
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


# ------------------------------------------------------------------------------ the test

RUNS = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
ASSET_KEYS = "{ assetNodes { assetKey { path } } }"
EVENT_ERRORS = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on MessageEvent { message } } } } }"""


def _wait_for_run(url: str, page, screenshots: Path) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = _graphql(url, RUNS)["runsOrError"]["results"]
        if runs and runs[0]["status"] in TERMINAL:
            return runs[0]
        time.sleep(3)
    page.screenshot(path=str(screenshots / "timeout.png"))
    pytest.fail(f"the run did not finish within {RUN_TIMEOUT_S} s: {runs}")


def test_materialize_all_from_the_asset_graph(dagster_dev, browser, local_workspace, tmp_path):
    url = dagster_dev
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{url}/asset-groups", wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")  # the first-visit "join the community" dialog
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:
        pass
    page.screenshot(path=str(tmp_path / "1-asset-graph.png"))

    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Latest", exact=True).click()  # one day, not all 21
    page.screenshot(path=str(tmp_path / "2-launch-dialog.png"))
    dialog.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text("Launched run").wait_for()
    page.screenshot(path=str(tmp_path / "3-launched.png"))

    run = _wait_for_run(url, page, tmp_path)
    partition = next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")
    if run["status"] != "SUCCESS":
        events = _graphql(url, EVENT_ERRORS, {"runId": run["runId"]})["logsForRun"]["events"]
        failures = [e.get("message") for e in events if "Failure" in e["__typename"]]
        page.goto(f"{url}/runs/{run['runId']}", wait_until="networkidle")
        page.screenshot(path=str(tmp_path / "failed-run.png"))
        pytest.fail(f"run {run['runId']} ended {run['status']}: {failures[-5:]} (screenshots in {tmp_path})")

    # Every asset shows as materialized for that day, on its partition page in the UI.
    asset_keys = ["/".join(n["assetKey"]["path"]) for n in _graphql(url, ASSET_KEYS)["assetNodes"]]
    assert "bronze_orders" in asset_keys
    not_materialized = []
    for key in asset_keys:
        page.goto(f"{url}/assets/{key}?view=partitions&partition={partition}", wait_until="networkidle")
        page.get_by_text("Latest materialization").first.wait_for()
        text = page.locator("body").inner_text()
        if f"{partition}\nMaterialized\n" not in text or "Materialized (0)" in text:
            not_materialized.append(key)
            page.screenshot(path=str(tmp_path / f"not-materialized-{key.replace('/', '_')}.png"), full_page=True)
    assert not_materialized == [], f"not shown as materialized for {partition}: {not_materialized} (see {tmp_path})"
    page.goto(f"{url}/asset-groups", wait_until="networkidle")
    page.screenshot(path=str(tmp_path / "4-graph-after.png"))

    # The ingest asset's materialization metadata links to the (local) Databricks run page.
    page.goto(f"{url}/assets/bronze_orders?view=partitions&partition={partition}", wait_until="networkidle")
    page.get_by_text("databricks_run_url").first.wait_for()
    page.screenshot(path=str(tmp_path / "5-bronze-orders-metadata.png"), full_page=True)
    link = page.locator(f"a[href^='{local_workspace.host}']").first
    href = link.get_attribute("href")
    assert href and "/run/" in href, f"no Databricks run link on the asset page (screenshots in {tmp_path})"
    print(f"screenshots: {tmp_path}; databricks run url: {href}")


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
TERMINATE = """mutation($runId: String!) { terminateRun(runId: $runId) {
  __typename ... on PythonError { message } ... on TerminateRunFailure { message } } }"""
RUN_STATUS = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status tags { key value } } } }"""


def test_terminating_the_dagster_run_cancels_the_databricks_run(dagster_dev, local_workspace, workspace_client):
    """What the UI's Terminate button does, through the same GraphQL API and run launcher."""
    url = dagster_dev
    params = {
        "selector": {"repositoryLocationName": "dbx_assets.demo.definitions", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["bronze_orders"]}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-11-20"}]},
        "runConfigData": {},
    }
    launched = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    databricks_run_id = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and databricks_run_id is None:
        tags = {t["key"]: t["value"] for t in _graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]["tags"]}
        databricks_run_id = tags.get("dbx_assets/databricks_run_id")
        time.sleep(0.5)
    assert databricks_run_id, "the Dagster run never started a Databricks run"
    while workspace_client.jobs.get_run(int(databricks_run_id)).state.life_cycle_state.value not in ("RUNNING",):
        assert time.monotonic() < deadline, "the Databricks run never started running"
        time.sleep(0.5)

    terminated = _graphql(url, TERMINATE, {"runId": run_id})["terminateRun"]
    assert terminated["__typename"] == "TerminateRunSuccess", terminated
    cancel_deadline = time.monotonic() + 30
    state = workspace_client.jobs.get_run(int(databricks_run_id)).state
    while state.life_cycle_state.value != "TERMINATED" and time.monotonic() < cancel_deadline:
        time.sleep(0.5)
        state = workspace_client.jobs.get_run(int(databricks_run_id)).state
    assert state.result_state and state.result_state.value == "CANCELED", state
    while _graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]["status"] not in TERMINAL:
        assert time.monotonic() < cancel_deadline + 60
        time.sleep(1)
    assert _graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]["status"] == "CANCELED"
