"""Session-wide fixtures and the test tiers.

Fixtures: ONE in-process fake workspace (`fake_dbx`, and `fake_workspace` / `fake_client` on it) shared by
every no-JVM test, and ONE local workspace server (a real process, real HTTP) for the tests that need the
process itself.

Tiers: every test is in exactly one of three, set here and nowhere else (`TIERS`, below), as a marker
(`pytest -m pure`, `pytest -m "not spark"`; registered in pyproject.toml).
"""

from __future__ import annotations

import ast
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster  # noqa: F401  (its first import runs `file -b` for the platform's bits: at collection, not in a pure test)
import pytest

from dbx_assets.local_workspace.launcher import ensure_running, stop
from dbx_assets.local_workspace.runtime.contract import StoragePaths

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from fake_runtime import FakeWorkspace

    from dbx_assets.local_workspace.app import LocalWorkspace


@dataclass(frozen=True)
class LocalWorkspaceHandle:
    host: str
    token: str
    state_dir: Path
    paths: StoragePaths


@pytest.fixture(scope="session")
def local_workspace(tmp_path_factory) -> Iterator[LocalWorkspaceHandle]:
    state_dir = tmp_path_factory.mktemp("local_workspace")
    conn = ensure_running(state_dir, timeout=60)
    try:
        yield LocalWorkspaceHandle(conn.host, conn.token, conn.state_dir, StoragePaths(conn.state_dir))
    finally:
        stop(state_dir)


@pytest.fixture(scope="session")
def workspace_client(local_workspace):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=local_workspace.host, token=local_workspace.token)


@pytest.fixture(scope="session")
def fake_dbx(tmp_path_factory) -> Iterator[FakeWorkspace]:
    """THE in-process local workspace of the session: its clusters are the no-JVM fake runtime
    (tests/fake_runtime.py). Every test that needs a workspace but not its process shares it; each
    names its own job, folder or scope, so they do not interfere."""
    from fake_runtime import FakeWorkspace

    ws = FakeWorkspace(tmp_path_factory.mktemp("fake_dbx"))
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture(scope="session")
def fake_workspace(fake_dbx: FakeWorkspace) -> LocalWorkspace:
    """The shared in-process workspace itself (its scheduler, clusters, storage paths)."""
    return fake_dbx.ws


@pytest.fixture(scope="session")
def fake_client(fake_dbx: FakeWorkspace) -> WorkspaceClient:
    """A client of the shared in-process workspace with the SDK's default settings."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=fake_dbx.host, token=fake_dbx.token)


@pytest.fixture
def dbx_env(fake_dbx, monkeypatch):
    """DATABRICKS_HOST/DATABRICKS_TOKEN point at `fake_dbx` for this test (and the processes it starts)."""
    for k, v in fake_dbx.env().items():
        monkeypatch.setenv(k, v)
    yield fake_dbx
    fake_dbx.faults_off()  # a test that failed half-way leaves no faults behind


# -- test tiers ---------------------------------------------------------------------------------------------
#
#   pure   in the test process only: no server, no socket, no child process. Logic on data, files, Dagster
#          definitions and in-process runs of plain assets, a fake clock.
#   http   no JVM, seconds at most: the shared in-process workspace (`fake_dbx`, `dbx_env`, `fake_workspace`,
#          `fake_client`) over real HTTP and the real SDK, its fake runtime (notebook tasks as short plain
#          Python processes), another in-process server of the test's own, short plain-Python, git or shell
#          child processes.
#   spark  a real Spark JVM, real dbt, or a heavy process of its own: the local workspace server process
#          (`local_workspace`), a Dagster step / daemon / webserver / code server process, uv against the
#          package index, a browser, PostgreSQL.
#
# A module's tier is that of its plainest tests; a test is in a higher tier when it uses a fixture of
# FIXTURE_TIERS or is named in TEST_TIERS. A module missing here fails collection. While a test runs,
# `_tier_guard` fails a `pure` test that starts a process or opens a socket, and an `http` test that
# starts a JVM or another heavy process.
PURE, HTTP, SPARK = "pure", "http", "spark"
RANK = {PURE: 0, HTTP: 1, SPARK: 2}

TIERS: dict[str, str] = {
    # -- tests/
    "tests/test_architecture.py": PURE,
    "tests/test_auto_loader_sensor.py": SPARK,
    "tests/test_bundles.py": PURE,
    "tests/test_bundles_spark.py": SPARK,
    "tests/test_cluster_logs.py": HTTP,
    "tests/test_components.py": PURE,
    "tests/test_cost.py": PURE,
    "tests/test_crash_e2e.py": SPARK,  # the embedded workspace's server process, killed mid-write; two clusters
    "tests/test_dbt_databricks.py": SPARK,  # a workspace server, two job-cluster runs of dbt-databricks
    "tests/test_dbt_parity.py": SPARK,  # parses a dbt project with dbt; a dagster-dbt process
    "tests/test_dbt_run_results.py": PURE,
    "tests/test_dbt_specs.py": PURE,  # + the real `dbt build` runs (fixture dbt_runs) and one `dbt parse` process
    "tests/test_deployments.py": PURE,
    "tests/test_existing_jobs.py": PURE,
    "tests/test_faults.py": HTTP,
    "tests/test_mixed_compute_e2e.py": SPARK,
    "tests/test_newcomer.py": SPARK,
    "tests/test_one_job_spec.py": SPARK,  # two workspace server processes (HTTP and TLS)
    "tests/test_outage_logic.py": PURE,
    "tests/test_outage_watch.py": HTTP,
    "tests/test_pipes.py": PURE,
    "tests/test_polling.py": PURE,
    "tests/test_production_postgres.py": SPARK,
    "tests/test_public_api.py": PURE,
    "tests/test_python_tasks.py": PURE,
    "tests/test_python_tasks_spark.py": SPARK,
    "tests/test_resource.py": PURE,
    "tests/test_schedules.py": PURE,
    "tests/test_sensor_daemon.py": SPARK,
    "tests/test_sensors.py": PURE,
    "tests/test_serverless_compute.py": PURE,
    "tests/test_table_metadata.py": PURE,
    "tests/test_translators.py": PURE,
    "tests/test_waiting_states.py": PURE,
    "tests/test_workflow_declarations.py": PURE,
    "tests/test_workflow_e2e.py": HTTP,
    "tests/test_workflow_limits.py": PURE,
    "tests/test_workflow_pools.py": PURE,  # + the runs on dbx_env
    # -- tests/local_workspace/
    "tests/local_workspace/test_api_cluster_events.py": HTTP,
    "tests/local_workspace/test_api_fidelity.py": HTTP,
    "tests/local_workspace/test_api_front_door.py": HTTP,  # + the tests on the workspace server process
    "tests/local_workspace/test_api_fuzz.py": HTTP,
    "tests/local_workspace/test_api_jobs.py": HTTP,
    "tests/local_workspace/test_api_notebook_formats.py": HTTP,  # its tests use the workspace server process
    "tests/local_workspace/test_api_server.py": SPARK,  # server processes: restart, TLS, the status CLI
    "tests/local_workspace/test_api_storage.py": HTTP,
    "tests/local_workspace/test_delta_log.py": PURE,
    "tests/local_workspace/test_instance_pools.py": HTTP,  # an in-process workspace of its own
    "tests/local_workspace/test_instance_pools_spark.py": SPARK,
    "tests/local_workspace/test_ingestion_rewrites.py": PURE,
    "tests/local_workspace/test_ingestion_spark.py": SPARK,
    "tests/local_workspace/test_jvm_options.py": PURE,
    "tests/local_workspace/test_libraries_install.py": SPARK,  # real uv against the package index
    "tests/local_workspace/test_notebook_features.py": HTTP,
    "tests/local_workspace/test_notebook_features_dagster.py": PURE,
    "tests/local_workspace/test_notebook_formats.py": PURE,
    "tests/local_workspace/test_notebook_formats_spark.py": SPARK,
    "tests/local_workspace/test_run_page.py": HTTP,
    "tests/local_workspace/test_run_page_browser.py": SPARK,
    "tests/local_workspace/test_runtime_cluster.py": SPARK,
    "tests/local_workspace/test_runtime_dbt_profile.py": PURE,
    "tests/local_workspace/test_dbsql_session.py": PURE,
    "tests/local_workspace/test_runtime_notebook_source.py": PURE,
    "tests/local_workspace/test_runtime_path_rewrite.py": PURE,
    "tests/local_workspace/test_table_commits.py": PURE,
    "tests/local_workspace/test_scheduler_wakeup.py": PURE,
    "tests/local_workspace/test_secrets_api.py": HTTP,
    "tests/local_workspace/test_secrets_runtime.py": HTTP,
    "tests/local_workspace/test_uc_names.py": PURE,
    "tests/local_workspace/test_uc_runtime.py": SPARK,
    "tests/local_workspace/test_delta_runtime.py": SPARK,
    "tests/local_workspace/test_delta_jars.py": HTTP,
    "tests/local_workspace/test_warehouses_api.py": HTTP,  # an in-process workspace of its own
}

# Tests above their module's tier that no fixture tells apart: what they start themselves.
TEST_TIERS: dict[str, str] = {
    "tests/test_bundles.py::test_dbt_bundle_models_become_dbt_assets": SPARK,  # dbt parse
    "tests/test_components.py::test_dg_validates_lists_the_defs_and_knows_the_components": SPARK,  # dg processes
    "tests/test_public_api.py::test_importing_the_package_loads_nothing_else": HTTP,  # a plain Python child
    # `uv build` fetches the wheel project's build backend from the package index
    "tests/test_python_tasks.py::test_the_wheel_is_built_at_deploy_only_when_its_sources_change": SPARK,
    "tests/test_bundles.py::test_python_bundle_tasks_deps_and_job_spec": SPARK,  # the whl artifact's wheel
    "tests/test_dbt_specs.py::test_missing_manifest_names_the_command_and_dagster_dev_prepares_it": SPARK,
    "tests/test_faults.py::test_cli_flags_and_faults_json_configure_the_server_and_admin_is_never_faulted": SPARK,
    "tests/test_outage_logic.py::test_the_real_sdk_against_a_closed_port_is_an_outage_named_by_its_cause": HTTP,
    "tests/test_resource.py::test_unreachable_host_is_one_clear_message_naming_the_host": HTTP,
    "tests/test_sensors.py::test_permission_denied_names_the_path_and_identity": HTTP,
    "tests/test_sensors.py::test_unreachable_workspace_skips_quickly": HTTP,
    "tests/test_workflow_e2e.py::test_killed_step_restarted_with_the_same_run_id_reattaches_whatever_the_clock": SPARK,
    "tests/test_workflow_e2e.py::test_sigint_to_the_step_process_cancels_the_run_and_its_task_process": SPARK,
    "tests/local_workspace/test_runtime_path_rewrite.py::test_file_patches_cover_builtins_os_pathlib_shutil": HTTP,
    "tests/local_workspace/test_secrets_runtime.py::test_notebook_job_reads_a_secret_and_every_output_is_redacted": SPARK,
    # a plain Python child whose exit wakes the waiter
    "tests/local_workspace/test_scheduler_wakeup.py::test_a_task_process_exit_wakes_its_waiter_however_long_it_would_wait": HTTP,
}

# Fixtures that put every test using them (directly or through another fixture) in at least a tier.
FIXTURE_TIERS: dict[str, str] = {
    "fake_dbx": HTTP,
    "fake_workspace": HTTP,
    "fake_client": HTTP,
    "dbx_env": HTTP,
    "local_workspace": SPARK,
    "workspace_client": SPARK,
    "dbt_runs": SPARK,
}

_HOW_TO_CHOOSE = (
    "'pure' (no server, no socket, no process: logic, files, a fake clock), "
    "'http' (the shared in-process workspace: fixtures fake_dbx / dbx_env / fake_client, the no-JVM fake runtime) "
    "or 'spark' (a real Spark JVM, dbt, or a process of its own: the workspace server, Dagster processes, "
    "a browser, PostgreSQL). See the README, Tests."
)


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def _test_of(item: pytest.Item) -> str:
    return f"{_module_of(item)}::{getattr(item, 'originalname', item.name)}"


def _check_tables(rootdir: Path) -> None:
    """Every entry names a module that exists and, in TEST_TIERS, a test function it defines."""
    problems = [f"{m} (in TIERS) does not exist: moved or renamed?" for m in TIERS if not (rootdir / m).is_file()]
    by_module: dict[str, set[str]] = {}
    for test, tier in TEST_TIERS.items():
        module, name = test.split("::")
        if module not in TIERS:
            problems.append(f"{test} (in TEST_TIERS) is in a module missing from TIERS")
        elif RANK[tier] <= RANK[TIERS[module]]:
            problems.append(f"{test} (in TEST_TIERS) is not above its module's tier {TIERS[module]!r}")
        elif (rootdir / module).is_file():
            if module not in by_module:
                tree = ast.parse((rootdir / module).read_text())
                by_module[module] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
            if name not in by_module[module]:
                problems.append(f"{test} (in TEST_TIERS): {module} defines no {name}")
    problems += [
        f"{tier!r} of {name} is no tier" for name, tier in [*TIERS.items(), *TEST_TIERS.items()] if tier not in RANK
    ]
    if problems:
        raise pytest.UsageError("tests/conftest.py, test tiers:\n  " + "\n  ".join(problems))


def tier_of(item: pytest.Item) -> str:
    """The tier of a collected test: its module's, raised by TEST_TIERS and by the fixtures it uses."""
    module = _module_of(item)
    candidates = [TIERS[module], TEST_TIERS.get(_test_of(item), PURE)]
    candidates += [FIXTURE_TIERS[f] for f in getattr(item, "fixturenames", ()) if f in FIXTURE_TIERS]
    return max(candidates, key=RANK.__getitem__)


# The modules that take minutes, slowest first (as measured in a fresh clone's run, December 2026). `make test` hands whole modules to its workers in
# collection order (--dist loadfile --no-loadscope-reorder): the long ones start first, instead of
# one of them starting last and becoming the run's tail while the other workers sit idle.
SLOWEST_MODULES = (
    "tests/test_dbt_databricks.py",
    "tests/test_bundles_spark.py",
    "tests/test_newcomer.py",
    "tests/test_dbt_specs.py",
    "tests/local_workspace/test_delta_runtime.py",
    "tests/local_workspace/test_runtime_cluster.py",
    "tests/test_auto_loader_sensor.py",
    "tests/test_crash_e2e.py",
    "tests/test_production_postgres.py",
    "tests/test_mixed_compute_e2e.py",
    "tests/test_workflow_e2e.py",
    "tests/test_faults.py",
    "tests/test_components.py",  # the dg CLI, five times
    "tests/test_python_tasks_spark.py",
    "tests/local_workspace/test_notebook_formats_spark.py",
    "tests/local_workspace/test_ingestion_spark.py",
    "tests/local_workspace/test_uc_runtime.py",
    "tests/local_workspace/test_instance_pools_spark.py",
    "tests/local_workspace/test_secrets_runtime.py",
    "tests/local_workspace/test_run_page_browser.py",
    "tests/test_sensor_daemon.py",
)


def pytest_configure(config: pytest.Config) -> None:
    _check_tables(config.rootpath)


class _NoTier(pytest.File):
    """What a test module missing from TIERS collects: one collection error naming the choice."""

    def collect(self):
        raise self.CollectError(
            f"{self.nodeid} is in no test tier. Add it to TIERS in tests/conftest.py as {_HOW_TO_CHOOSE}"
        )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".py" or not any(file_path.match(p) for p in parent.config.getini("python_files")):
        return None
    module = file_path.relative_to(parent.config.rootpath).as_posix()
    return None if module in TIERS else _NoTier.from_parent(parent, path=file_path, name=f"{file_path.name} (no tier)")


# tryfirst: the markers must be on the items before `-m` deselects by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _module_of(item) in TIERS:  # else its module's collection error (_NoTier) says what to do
            item.add_marker(tier_of(item))
    rank = {module: i for i, module in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(_module_of(item), len(rank)))  # stable: order within a module kept


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str:
    counts = Counter(m.name for item in items for m in item.iter_markers() if m.name in RANK)
    return "tiers: " + ", ".join(f"{counts[tier]} {tier}" for tier in RANK)


# -- the tiers, kept while tests run ----------------------------------------------------------------------

# Processes an `http` test must not start (Python children by their `-m` module or `-c` imports).
_HEAVY_PROGRAMS = re.compile(
    r"(^|/)(java|spark-submit|pyspark|dbt|dagster[\w-]*|uv|chromium[\w-]*|initdb|pg_ctl|postgres)$"
)
_HEAVY_MODULES = re.compile(r"^(dbx_assets\.(local_workspace|demo|integration\.dbt)|dagster\w*|dbt|uv|playwright)\b")
_HEAVY_IMPORTS = re.compile(r"\b(import|from)\s+(dagster|dagster_dbt|dagster_webserver|pyspark|dbt)\b")


def _heavy(args: Any) -> bool:
    argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
    if not argv:
        return False
    if _HEAVY_PROGRAMS.search(argv[0]):
        return True
    for flag, value in zip(argv, argv[1:], strict=False):
        if (flag == "-m" and _HEAVY_MODULES.match(value)) or (flag == "-c" and _HEAVY_IMPORTS.search(value)):
            return True
    return False


class _TierGuard:
    """A Python audit hook (installed once): while a test of a tier runs, what its tier rules out —
    on the main thread, where tests run; the shared workspace's own threads are not the test's — is
    refused (the call raises) and recorded (the test fails at teardown even if the call's error was
    swallowed)."""

    def __init__(self) -> None:
        self.tier: str | None = None
        self.violations: list[str] = []
        self._main = threading.main_thread().ident

    def __call__(self, event: str, args: tuple) -> None:
        if self.tier is None or self.tier == SPARK or threading.get_ident() != self._main:
            return
        if event == "subprocess.Popen":
            if self.tier == PURE:
                self._refuse(f"started a process: {list(args[1]) if args[1] else args[0]}")
            elif _heavy(args[1]):
                self._refuse(f"started {list(args[1])}")
        elif self.tier == PURE and event in ("os.system", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec"):
            self._refuse(f"started a process ({event})")
        elif self.tier == PURE and event in ("socket.connect", "socket.bind") and _inet(args[0]):
            self._refuse(f"used the network ({event} {args[1]!r})")

    def _refuse(self, what: str) -> None:
        self.violations.append(what)
        raise RuntimeError(f"a {self.tier!r} test {what}: {_TIER_ADVICE[self.tier or PURE]}")


def _inet(sock: Any) -> bool:
    import socket

    return getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)


_TIER_ADVICE = {
    PURE: "it belongs in 'http' or 'spark' (TIERS / TEST_TIERS in tests/conftest.py)",
    HTTP: "it belongs in 'spark' (TIERS / TEST_TIERS in tests/conftest.py)",
}

_GUARD = _TierGuard()
sys.addaudithook(_GUARD)


@pytest.fixture(autouse=True)
def _tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    # Function-scoped fixtures set up after this one (and torn down before it) count as the test's own;
    # session and module fixtures (the shared workspace, a module's project) are set up before it.
    _GUARD.tier = next((m.name for m in request.node.iter_markers() if m.name in RANK), None)
    _GUARD.violations = []
    try:
        yield
    finally:
        _GUARD.tier = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A phase that passed although the guard refused something (its error swallowed) fails."""
    outcome: Any = yield
    report = outcome.get_result()
    if _GUARD.violations:
        violations, _GUARD.violations = _GUARD.violations, []
        if report.passed:
            tier = next((m.name for m in item.iter_markers() if m.name in RANK), PURE)
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} is in tier {tier!r} but " + "; ".join(violations) + f": {_TIER_ADVICE[tier]}"
            )
