"""Unity Catalog names on a real cluster (one JVM): notebooks create and read
`main.<schema>.<table>` through the Python API and %sql, a second catalog works, dbt builds
models into `main` and `dev` that a later notebook reads by three-level name, and the
workspace's Unity Catalog endpoints (real HTTP, real SDK) list what they created."""

from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest
from databricks.sdk.service.catalog import SchemaInfo, TableInfo

from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime import LocalCluster
from dbx_assets.local_workspace.runtime.contract import ClusterSpec, DbtInvocation, TaskInvocation, TaskOutcome

TASK_TIMEOUT = 180
_ids = itertools.count(5000)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    ws = LocalWorkspace(tmp_path_factory.mktemp("uc_ws")).start()
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def cluster(workspace: LocalWorkspace):
    c = LocalCluster("uc", ClusterSpec(), workspace.paths)
    c.start()
    yield c
    c.terminate()


def run(cluster: LocalCluster, **kwargs) -> TaskOutcome:
    run_id = next(_ids)
    inv = TaskInvocation(task_run_id=run_id, output_dir=cluster.paths.task_runs / str(run_id), **kwargs)
    outcome = cluster.run_task(inv).wait(TASK_TIMEOUT)
    assert outcome is not None, f"task {run_id} did not finish within {TASK_TIMEOUT} s"
    assert outcome.result_state == "SUCCESS", f"{outcome.state_message}\n{outcome.error_trace}\n{outcome.logs[-4000:]}"
    return outcome


def sorted_names(items: Iterable[SchemaInfo] | Iterable[TableInfo]) -> list[str]:
    names = [item.name for item in items]
    assert all(name is not None for name in names), names
    return sorted(name for name in names if name is not None)


def notebook(cluster: LocalCluster, source: str) -> dict:
    text = "# Databricks notebook source\n" + textwrap.dedent(source).strip() + "\n"
    outcome = run(cluster, kind="notebook", notebook_source=text, notebook_path="/Users/me/uc")
    assert outcome.notebook_result is not None
    return json.loads(outcome.notebook_result)


def _dbt_project(root: Path) -> Path:
    project = root / "uc_dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: uc_tiny\nversion: '1.0'\nconfig-version: 2\nprofile: uc_tiny\n"
        "models:\n  uc_tiny:\n    +materialized: table\n    +file_format: parquet\n"
    )
    (project / "models" / "customers.sql").write_text("select 1 as id, 'ada' as name union all select 2, 'alan'")
    return project


def test_three_level_names_in_notebooks_dbt_and_the_unity_catalog_api(workspace, cluster, tmp_path):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound

    # 1. Python API and %sql with main.<schema>.<table>; a second catalog; errors in UC terms.
    created = notebook(
        cluster,
        """
        spark.sql("CREATE SCHEMA IF NOT EXISTS main.uc_demo")
        spark.createDataFrame([(1, "a"), (2, "b")], "id INT, v STRING").write.mode("overwrite").saveAsTable("main.uc_demo.orders")

        # COMMAND ----------
        # MAGIC %sql
        # MAGIC CREATE TABLE main.uc_demo.totals USING parquet AS SELECT v, sum(id) AS total FROM main.uc_demo.orders GROUP BY v;
        # MAGIC INSERT INTO main.uc_demo.orders SELECT 3, 'c';
        # MAGIC CREATE CATALOG IF NOT EXISTS dev;
        # MAGIC CREATE SCHEMA IF NOT EXISTS dev.s;
        # MAGIC CREATE TABLE dev.s.t USING parquet AS SELECT o.id, o.v FROM main.uc_demo.orders o WHERE o.id > 1

        # COMMAND ----------
        import json
        from pyspark.errors import AnalysisException

        def error(fn):
            try:
                fn()
            except AnalysisException as e:
                return str(e).splitlines()[0]
            return None

        spark.sql("CREATE CATALOG scratch")
        spark.sql("CREATE TABLE scratch.default.x USING parquet AS SELECT 1 AS a")
        not_empty = error(lambda: spark.sql("DROP CATALOG scratch"))
        spark.sql("DROP CATALOG scratch CASCADE")
        out = {
            "not_empty": not_empty,
            "orders": spark.table("main.uc_demo.orders").count(),
            "two_level": spark.read.table("uc_demo.orders").count(),  # s.t is <current catalog = main>.s.t
            "legacy": spark.table("hive_metastore.uc_demo.totals").count(),
            "exists": [spark.catalog.tableExists(n) for n in ("main.uc_demo.orders", "dev.s.t", "dev.s.nope")],
            "dev_rows": sorted(r.id for r in spark.sql("SELECT id FROM dev.s.t").collect()),
            "show_tables": sorted((r.namespace, r.tableName) for r in spark.sql("SHOW TABLES IN dev.s").collect()),
            "catalogs": [r.catalog for r in spark.sql("SHOW CATALOGS").collect()],
            "dev_schemas": [r.databaseName for r in spark.sql("SHOW SCHEMAS IN dev").collect()],
            "describe": [r.col_name for r in spark.sql("DESCRIBE TABLE main.uc_demo.orders").collect()][:2],
            "no_catalog": error(lambda: spark.table("nope.s.t")),
            "no_table": error(lambda: spark.table("dev.s.missing")),
            "no_schema": error(lambda: spark.sql("CREATE TABLE dev.nope.x USING parquet AS SELECT 1")),
        }
        spark.sql("USE CATALOG dev")
        out["current"] = [spark.catalog.currentCatalog(), spark.catalog.currentDatabase(), spark.sql("SELECT current_catalog()").first()[0]]
        out["dev_two_level"] = spark.table("s.t").count()  # now <dev>.s.t
        spark.createDataFrame([(9,)], "n INT").write.saveAsTable("s.written_in_dev")
        spark.sql("USE main.uc_demo")
        out["back_in_main"] = [spark.catalog.currentCatalog(), spark.table("orders").count()]
        spark.catalog.setCurrentCatalog("main")
        spark.sql("USE default")
        dbutils.notebook.exit(json.dumps(out))
        """,
    )
    assert created["orders"] == 3 and created["two_level"] == 3 and created["legacy"] == 2
    assert created["exists"] == [True, True, False]
    assert created["dev_rows"] == [2, 3]
    assert created["show_tables"] == [["s", "t"]]
    # `samples` (Databricks' sample data, generated locally) is listed as on a Databricks workspace.
    assert created["catalogs"] == ["dev", "main", "samples"] and created["dev_schemas"] == ["default", "s"]
    assert created["describe"] == ["id", "v"]
    assert created["no_catalog"].startswith("[NO_SUCH_CATALOG_EXCEPTION] The catalog 'nope' was not found")
    assert created["no_table"].startswith("[TABLE_OR_VIEW_NOT_FOUND]") and "`dev`.`s`.`missing`" in created["no_table"]
    assert created["no_schema"].startswith("[SCHEMA_NOT_FOUND]") and "`dev`.`nope`" in created["no_schema"]
    assert created["not_empty"].startswith("[CATALOG_NOT_EMPTY]")
    assert created["current"] == ["dev", "default", "dev"]
    assert created["dev_two_level"] == 2
    assert created["back_in_main"] == ["main", 3]
    warehouse = workspace.paths.warehouse
    assert (warehouse / "uc_demo.db" / "orders").is_dir() and (warehouse / "dev__s.db" / "t").is_dir()
    assert not (warehouse / "scratch__default.db").exists() and not (warehouse / "default.db").exists()

    # 2. dbt with catalog main and with catalog dev (generated profile of a warehouse task).
    project = _dbt_project(tmp_path)
    for catalog in ("main", "dev"):
        dbt = DbtInvocation(
            commands=("dbt run",),
            project_dir=project,
            profiles_dir=None,
            schema="analytics",
            catalog=catalog,
            warehouse_id="4c0a1d5e7b9f2a63",
        )
        # what the engine injects for a warehouse task: the principal's token, read by the generated profile
        run(cluster, kind="dbt", dbt=dbt, env={"DBT_ACCESS_TOKEN": workspace.token})
    read = notebook(
        cluster,
        """
        import json
        dbutils.notebook.exit(json.dumps([spark.table(f"{c}.analytics.customers").count() for c in ("main", "dev")]))
        """,
    )
    assert read == [2, 2]

    # 3. The Unity Catalog REST API sees all of it, with columns.
    w = WorkspaceClient(host=workspace.host, token=workspace.token)
    names = [str(c.name) for c in w.catalogs.list()]
    assert names[0] == "main" and sorted(names[1:]) == ["dev", "samples"]
    assert {"default", "uc_demo", "analytics"} <= {s.name for s in w.schemas.list("main")}
    assert sorted_names(w.schemas.list("dev")) == ["analytics", "default", "s"]
    assert sorted_names(w.tables.list("main", "uc_demo")) == ["orders", "totals"]
    assert sorted_names(w.tables.list("dev", "s")) == ["t", "written_in_dev"]
    orders = w.tables.get("main.uc_demo.orders")
    assert orders.columns is not None
    assert [
        (c.name, c.type_name.value if c.type_name else None, c.type_text, c.position, c.nullable)
        for c in orders.columns
    ] == [
        ("id", "INT", "int", 0, True),
        ("v", "STRING", "string", 1, True),
    ]
    assert orders.table_type is not None and orders.data_source_format is not None
    # saveAsTable without a format writes Delta, Databricks' default; `USING parquet` still writes parquet.
    assert orders.table_type.value == "MANAGED" and orders.data_source_format.value == "DELTA"
    assert orders.storage_location == (warehouse / "uc_demo.db" / "orders").as_uri()
    totals = w.tables.get("main.uc_demo.totals")
    assert totals.data_source_format is not None and totals.data_source_format.value == "PARQUET"
    assert totals.columns is not None
    assert [(c.name, c.type_text) for c in totals.columns] == [("v", "string"), ("total", "bigint")]
    customers = w.tables.get("dev.analytics.customers")
    assert customers.columns is not None
    assert [c.name for c in customers.columns] == ["id", "name"]
    with pytest.raises(NotFound):
        w.tables.get("dev.s.missing")
