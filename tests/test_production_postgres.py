"""Dagster's production setup (dbx_assets/demo/production/) on a real PostgreSQL server.

The test's own PostgreSQL (tests/postgres_server.py) holds the instance; DAGSTER_HOME holds a copy
of the production dagster.yaml and nothing else. Three processes run as in production: a code
server (`dagster code-server start -m production_location`, the only one given the Databricks
host and token), and the webserver and `dagster-daemon`, both pointed at it by the production
workspace.yaml. A run launched through the webserver's GraphQL API and a run requested by the file
sensor's tick in the daemon both go through the run queue, run on the no-JVM local workspace
`fake_dbx`, and are checked in the Postgres tables: runs, materializations, the sensor's ticks and
cursor, the daemon's heartbeats; no SQLite file may appear in DAGSTER_HOME.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from postgres_server import PostgresDatabase, PostgresServer, free_port
from production_location import JOB_NAME, NAME_ENV, SENSOR_NAME, landing_path
from workflow_support import ALL_ASSETS, key, new_name

from dbx_assets.demo.production import CODE_SERVER_ENV_VARS, DAGSTER_YAML, INSTANCE_ENV_VARS, WORKSPACE_YAML
from dbx_assets.integration.file_cursor import FileCursor

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
BIN = Path(sys.executable).parent
LOCATION_NAME = "dbx_assets"  # as production/workspace.yaml names it
TIMEOUT_S = 180.0  # per wait; generous for a loaded 2-core machine, never reached when things work
SQLITE_HEADER = b"SQLite format 3\x00"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[PostgresDatabase]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    try:
        yield server.start()
    finally:
        server.stop()


class Service:
    """One Dagster process in a process group of its own (with whatever it spawns), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.log = name, log_dir / f"{name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def terminate(self) -> None:
        _signal_group(self.proc.pid, signal.SIGTERM)  # start_new_session: the group id is the leader's pid

    def wait_or_kill(self, deadline: float) -> None:
        """Waits for a clean shutdown until `deadline` (monotonic), then kills what is left of the group."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-2500:]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class Deployment:
    """The code server, the daemon and the webserver of the production setup."""

    def __init__(self, home: Path, postgres: PostgresDatabase, databricks_env: dict[str, str], name: str):
        grpc_port, self.web_port = free_port(), free_port()
        # No Databricks settings reach the webserver or the daemon: they only talk to the code server.
        base = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
        dagster_env = {
            **base,
            "DAGSTER_HOME": str(home),
            **postgres.dagster_env(),
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(grpc_port),
        }
        code_env = {
            **dagster_env,
            **databricks_env,
            NAME_ENV: name,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO)]),
        }
        location = ["-m", "production_location", "--location-name", LOCATION_NAME]
        workspace = ["-w", str(WORKSPACE_YAML)]
        commands = {
            "code_server": ([str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
                             *location], code_env),
            "daemon": ([str(BIN / "dagster-daemon"), "run", *workspace], dagster_env),
            "webserver": ([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), *workspace],
                          dagster_env),
        }  # fmt: skip
        self.services: list[Service] = []
        try:
            for service_name, (argv, env) in commands.items():
                self.services.append(Service(service_name, argv, env, home.parent))
        except BaseException:
            self.stop()  # what did start
            raise

    def stop(self) -> None:
        """All three at once: each shuts down cleanly on SIGTERM within seconds."""
        started = time.monotonic()
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.wait_or_kill(deadline=started + 20)
        print(f"stopped in {time.monotonic() - started:.1f}s", flush=True)

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def graphql(self, query: str) -> dict[str, Any]:
        answer = requests.post(f"http://127.0.0.1:{self.web_port}/graphql", json={"query": query}, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"]

    def location_loaded(self) -> bool:
        """The webserver has loaded the code location from the code server."""
        try:
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename } } } } }"
            )
        except requests.RequestException:
            return False  # not answering yet
        entries = data["workspaceOrError"].get("locationEntries", [])
        return any(
            e["name"] == LOCATION_NAME and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
            for e in entries
        )


def _wait(what: str, condition: Callable[[], bool], deployment: Deployment) -> None:
    print(time.strftime("%X"), "waiting for", what, flush=True)  # a timeline if the test fails
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return
        for service in deployment.services:
            if service.proc.poll() is not None:
                pytest.fail(f"the {service.name} exited while waiting for {what}:\n{deployment.logs()}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{deployment.logs()}")


def _finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.is_finished


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR_NAME})))


def _sensor_state(instance: dg.DagsterInstance) -> Any:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR_NAME]
    assert len(states) == 1, states
    return states[0]


def _sqlite_files(home: Path) -> list[str]:
    found = []
    for path in home.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                if path.suffix == ".db" or fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                    found.append(str(path.relative_to(home)))
    return found


def _rows(postgres: PostgresDatabase, sql: str, *params: Any) -> list[tuple]:
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_production_setup_runs_and_ticks_with_storage_on_postgres(postgres, dbx_env, tmp_path, monkeypatch):
    ws, name = dbx_env, new_name()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    for k, v in postgres.dagster_env().items():
        monkeypatch.setenv(k, v)  # this process opens the same instance to read it back
    expected_assets = {key(name, a) for a in ALL_ASSETS}

    deployment = Deployment(home, postgres, ws.env(), name)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

            # (a) A run launched through the webserver: queued, launched by the daemon, executed by a
            # run worker the code server starts, against the workspace named by DATABRICKS_HOST.
            _wait("the webserver to load the code location", deployment.location_loaded, deployment)
            client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.web_port)
            launched = client.submit_job_execution(JOB_NAME, repository_location_name=LOCATION_NAME)
            _wait("the launched run to finish", lambda: _finished(instance, launched), deployment)
            run = instance.get_run_by_id(launched)
            assert run is not None
            assert run.status == dg.DagsterRunStatus.SUCCESS, deployment.logs()

            # (b) A file lands: the daemon's sensor tick (evaluated in the code server) requests a run.
            landed = f"{landing_path(name)}/orders.csv"
            ws.client.dbfs.put(landed, contents=base64.b64encode(b"id\n1\n").decode(), overwrite=True)
            _wait("the sensor's run", lambda: len(_sensor_runs(instance)) == 1, deployment)
            sensor_run = _sensor_runs(instance)[0]
            _wait("the sensor's run to finish", lambda: _finished(instance, sensor_run.run_id), deployment)
            assert instance.get_run_by_id(sensor_run.run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
            assert sensor_run.tags["dagster/run_key"].startswith(landed + "@"), sensor_run.tags

            state = _sensor_state(instance)
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            requesting = [t for t in ticks if t.status.value == "SUCCESS"]
            assert [t.run_ids for t in requesting] == [[sensor_run.run_id]], [(t.status, t.run_ids) for t in ticks]
            cursor = FileCursor.from_json(state.instigator_data.cursor)
            assert landed in cursor.files, cursor.files
            heartbeats = instance.get_daemon_heartbeats()
            # The daemons dagster.yaml turns on, each beating into Postgres.
            assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= set(heartbeats), heartbeats
    finally:
        deployment.stop()

    # The same facts, read from the Postgres tables themselves.
    runs = dict(_rows(postgres, "SELECT run_id, status FROM runs"))
    assert runs == {launched: "SUCCESS", sensor_run.run_id: "SUCCESS"}
    for run_id in runs:
        materialized = _rows(
            postgres,
            "SELECT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            run_id,
        )
        assert {dg.AssetKey(json.loads(k)) for (k,) in materialized} == expected_assets, run_id
    tick_rows = _rows(
        postgres,
        "SELECT status, tick_body FROM job_ticks WHERE type = 'SENSOR' AND selector_id = %s",
        state.selector_id,
    )
    assert len(tick_rows) >= len(ticks)  # the daemon may have ticked again before it stopped
    assert [sensor_run.run_id in body for status, body in tick_rows if status == "SUCCESS"] == [True]
    assert _rows(postgres, "SELECT count(*) FROM instigators WHERE selector_id = %s", state.selector_id) == [(1,)]
    # The Databricks token reached only the code server's environment: no run, event or tick holds it.
    for table, column in (("runs", "run_body"), ("event_logs", "event"), ("job_ticks", "tick_body")):
        leaked = _rows(postgres, f"SELECT count(*) FROM {table} WHERE {column} LIKE %s", f"%{ws.token}%")
        assert leaked == [(0,)], table

    assert _sqlite_files(home) == [], "storage fell back to SQLite"


def _env_references(node: Any) -> set[str]:
    """Every `{env: NAME}` in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(_env_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_references(v) for v in node))
    return set()


def test_production_files_read_exactly_the_documented_variables(tmp_path, monkeypatch):
    instance_config = yaml.safe_load(DAGSTER_YAML.read_text())
    assert _env_references(instance_config) == set(INSTANCE_ENV_VARS)
    assert _env_references(yaml.safe_load(WORKSPACE_YAML.read_text())) == set(CODE_SERVER_ENV_VARS)
    assert set(instance_config["storage"]) == {"postgres"}  # runs, event log and schedules together
    # No defaults hide a missing setting: without the variables the instance names each of them.
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    for name in INSTANCE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(dg.DagsterInvalidConfigError) as raised:
        dg.DagsterInstance.from_config(str(tmp_path))
    assert all(f'"{name}" which is not set' in str(raised.value) for name in INSTANCE_ENV_VARS), raised.value
