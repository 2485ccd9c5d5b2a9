"""Delta Lake on the local workspace's clusters, written as Databricks users write it: SQL cells,
%sql, spark.sql, the DataFrame API and `from delta.tables import DeltaTable`, in `main` and in
another catalog. One workspace and one cluster (`a`) for the module; a second cluster (`b`) joins
for what crosses clusters: a table one cluster wrote is read on the other, the SQL warehouse
counts it (real HTTP, real SDK), Unity Catalog reports it as DELTA, and two clusters writing one
table get Delta's own conflict error instead of a lost commit."""

from __future__ import annotations

import itertools
import json
import textwrap
import threading
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from dbx_assets.local_workspace.app import LocalWorkspace
from dbx_assets.local_workspace.runtime import LocalCluster
from dbx_assets.local_workspace.runtime.contract import ClusterSpec, TaskInvocation, TaskOutcome

TASK_TIMEOUT = 240
_ids = itertools.count(7000)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    ws = LocalWorkspace(tmp_path_factory.mktemp("delta_ws")).start()
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def cluster(workspace: LocalWorkspace):
    c = LocalCluster("delta-a", ClusterSpec(), workspace.paths)
    c.start()
    yield c
    c.terminate()


@pytest.fixture(scope="module")
def other_cluster(workspace: LocalWorkspace, cluster: LocalCluster):
    c = LocalCluster("delta-b", ClusterSpec(), workspace.paths)
    c.start()
    yield c
    c.terminate()


@pytest.fixture(scope="module")
def client(workspace: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=workspace.host, token=workspace.token)


def invocation(cluster: LocalCluster, source: str, language: str = "PYTHON") -> TaskInvocation:
    run_id = next(_ids)
    header = "# Databricks notebook source" if language == "PYTHON" else "-- Databricks notebook source"
    return TaskInvocation(
        task_run_id=run_id,
        kind="notebook",
        output_dir=cluster.paths.task_runs / str(run_id),
        notebook_source=header + "\n" + textwrap.dedent(source).strip() + "\n",
        notebook_path="/Users/me/delta",
        notebook_language=language,
    )


def finished(cluster: LocalCluster, inv: TaskInvocation) -> TaskOutcome:
    outcome = cluster.run_task(inv).wait(TASK_TIMEOUT)
    assert outcome is not None, f"task {inv.task_run_id} did not finish within {TASK_TIMEOUT} s"
    assert outcome.result_state == "SUCCESS", f"{outcome.state_message}\n{outcome.error_trace}\n{outcome.logs[-4000:]}"
    return outcome


def notebook(cluster: LocalCluster, source: str, language: str = "PYTHON") -> dict:
    outcome = finished(cluster, invocation(cluster, source, language))
    return json.loads(outcome.notebook_result) if outcome.notebook_result else {}


def test_sql_dml_merge_history_time_travel_and_maintenance(cluster: LocalCluster, client: WorkspaceClient):
    out = notebook(
        cluster,
        """
        # MAGIC %sql
        # MAGIC CREATE SCHEMA IF NOT EXISTS main.shop;
        # MAGIC CREATE TABLE main.shop.orders (order_id INT, status STRING, amount DOUBLE);
        # MAGIC INSERT INTO main.shop.orders VALUES (1, 'new', 10.0), (2, 'new', 20.0), (3, 'new', 30.0);
        # MAGIC UPDATE main.shop.orders SET status = 'paid' WHERE order_id = 1;
        # MAGIC DELETE FROM main.shop.orders WHERE order_id = 3;
        # MAGIC CREATE OR REPLACE TEMP VIEW updates AS
        # MAGIC   SELECT * FROM VALUES (2, 'shipped', 20.0), (4, 'new', 40.0) AS u(order_id, status, amount);
        # MAGIC MERGE INTO main.shop.orders AS t USING updates AS s ON t.order_id = s.order_id
        # MAGIC   WHEN MATCHED THEN UPDATE SET *
        # MAGIC   WHEN NOT MATCHED THEN INSERT *
        # MAGIC   WHEN NOT MATCHED BY SOURCE AND t.status = 'paid' THEN DELETE

        # COMMAND ----------
        import json
        from pyspark.errors import AnalysisException

        def error(statement):
            try:
                spark.sql(statement).collect()
            except Exception as e:
                return str(e)
            return None

        t = "main.shop.orders"
        rows = lambda q: sorted(tuple(r) for r in spark.sql(q).collect())
        history = spark.sql(f"DESCRIBE HISTORY {t}").orderBy("version").collect()
        out = {
            "after_merge": rows(f"SELECT order_id, status FROM {t}"),
            "operations": [r.operation for r in history],
            "v1": rows(f"SELECT order_id FROM {t} VERSION AS OF 1"),
            "at_v2": rows(f"SELECT order_id, status FROM {t}@v2"),
            "ts_v1": rows(f"SELECT order_id FROM {t} TIMESTAMP AS OF '{history[1].timestamp}'"),
            "reader_v3": spark.read.option("versionAsOf", 3).table(t).count(),
        }
        restored = spark.sql(f"RESTORE TABLE {t} TO VERSION AS OF 1").first()
        out["restored"] = [rows(f"SELECT order_id, status FROM {t}"), restored.restored_files_size is not None]
        spark.sql(f"INSERT INTO {t} VALUES (5, 'new', 50.0)")
        out["optimize"] = spark.sql(f"OPTIMIZE {t} ZORDER BY (order_id)").first().metrics.numFilesAdded
        out["vacuum_too_short"] = error(f"VACUUM {t} RETAIN 0 HOURS")
        out["vacuum"] = spark.sql(f"VACUUM {t}").columns
        spark.sql(f"ALTER TABLE {t} ADD COLUMNS (note STRING COMMENT 'free text')")
        detail = spark.sql(f"DESCRIBE DETAIL {t}").first()
        out["detail"] = [detail.format, detail.location, detail.numFiles, detail.name]
        out["columns"] = spark.table(t).columns
        out["last_operations"] = [r.operation for r in spark.sql(f"DESCRIBE HISTORY {t} LIMIT 4").collect()]
        dbutils.notebook.exit(json.dumps(out, default=str))
        """,
    )
    assert out["after_merge"] == [[2, "shipped"], [4, "new"]]
    assert out["operations"] == ["CREATE TABLE", "WRITE", "UPDATE", "DELETE", "MERGE"]
    assert out["v1"] == [[1], [2], [3]]
    assert out["at_v2"] == [[1, "paid"], [2, "new"], [3, "new"]]
    assert out["ts_v1"] == [[1], [2], [3]]
    assert out["reader_v3"] == 2
    assert out["restored"] == [[[1, "new"], [2, "new"], [3, "new"]], True]
    assert out["optimize"] == 1  # the table's files compacted into one
    assert (
        "retention" in out["vacuum_too_short"].lower()
        and "spark.databricks.delta.retentionDurationCheck" in (out["vacuum_too_short"])
    )
    assert out["vacuum"] == ["path"]
    fmt, location, num_files, name = out["detail"]
    assert fmt == "delta" and num_files == 1 and name.endswith("shop.orders")
    assert location.startswith("file:") and location.endswith("/warehouse/shop.db/orders")
    assert out["columns"] == ["order_id", "status", "amount", "note"]
    assert out["last_operations"] == ["ADD COLUMNS", "VACUUM END", "VACUUM START", "OPTIMIZE"]

    # Unity Catalog reads the same table from its Delta log.
    table = client.tables.get("main.shop.orders")
    assert table.data_source_format is not None and table.data_source_format.value == "DELTA"
    assert table.columns is not None and [c.name for c in table.columns] == ["order_id", "status", "amount", "note"]
    assert table.properties is not None and int(table.properties["delta.lastUpdateVersion"]) >= 9


def test_sql_notebook_creates_replaces_and_overwrites_delta_tables(cluster: LocalCluster, client: WorkspaceClient):
    notebook(
        cluster,
        """
        CREATE SCHEMA IF NOT EXISTS main.sqlnb

        -- COMMAND ----------
        CREATE TABLE main.sqlnb.events (id INT, day STRING);
        INSERT INTO main.sqlnb.events VALUES (1, 'mon'), (2, 'tue'), (3, 'tue')

        -- COMMAND ----------
        INSERT INTO main.sqlnb.events REPLACE WHERE day = 'tue' SELECT 9 AS id, 'tue' AS day

        -- COMMAND ----------
        CREATE OR REPLACE TABLE main.sqlnb.summary AS SELECT day, count(*) AS n FROM main.sqlnb.events GROUP BY day

        -- COMMAND ----------
        CREATE TABLE main.sqlnb.snapshot AS SELECT * FROM main.sqlnb.events;
        INSERT OVERWRITE main.sqlnb.snapshot SELECT id * 10, day FROM main.sqlnb.events WHERE day = 'mon'
        """,
        language="SQL",
    )
    out = notebook(
        cluster,
        """
        import json
        rows = lambda t: sorted(tuple(r) for r in spark.table(t).collect())
        ops = lambda t: [r.operation for r in spark.sql(f"DESCRIBE HISTORY {t}").orderBy("version").collect()]
        dbutils.notebook.exit(json.dumps({
            "events": rows("main.sqlnb.events"),
            "summary": rows("main.sqlnb.summary"),
            "snapshot": rows("main.sqlnb.snapshot"),
            "events_ops": ops("main.sqlnb.events"),
            "snapshot_ops": ops("main.sqlnb.snapshot"),
            "formats": [spark.sql(f"DESCRIBE DETAIL main.sqlnb.{t}").first().format for t in ("events", "summary", "snapshot")],
        }))
        """,
    )
    assert out["events"] == [[1, "mon"], [9, "tue"]]
    assert out["summary"] == [["mon", 1], ["tue", 1]]
    assert out["snapshot"] == [[10, "mon"]]
    assert out["events_ops"] == ["CREATE TABLE", "WRITE", "WRITE"]  # REPLACE WHERE is a WRITE with a predicate
    assert out["snapshot_ops"] == ["CREATE TABLE AS SELECT", "WRITE"]
    assert out["formats"] == ["delta", "delta", "delta"]
    assert {
        t.name: t.data_source_format.value for t in client.tables.list("main", "sqlnb") if t.data_source_format
    } == {
        "events": "DELTA",
        "summary": "DELTA",
        "snapshot": "DELTA",
    }


def test_dataframe_and_delta_table_api_in_another_catalog_and_on_paths(cluster: LocalCluster, workspace):
    out = notebook(
        cluster,
        """
        import json
        from delta.tables import DeltaTable

        spark.sql("CREATE CATALOG IF NOT EXISTS dev")
        spark.sql("CREATE SCHEMA IF NOT EXISTS dev.s")
        out = {}
        items = spark.createDataFrame([(1, "a"), (2, "b")], "id INT, v STRING")
        items.write.saveAsTable("dev.s.items")  # no format: Delta
        extra = spark.createDataFrame([(3, "c", True)], "id INT, v STRING, flag BOOLEAN")
        try:
            extra.write.mode("append").saveAsTable("dev.s.items")
        except Exception as e:
            out["mismatch"] = str(e).splitlines()[0][:300]
        extra.write.mode("append").option("mergeSchema", "true").saveAsTable("dev.s.items")
        out["merged_columns"] = spark.table("dev.s.items").columns

        dt = DeltaTable.forName(spark, "dev.s.items")
        dt.update("id = 1", {"v": "'A'"})
        dt.delete("id = 2")
        source = spark.createDataFrame([(1, "AA", False), (7, "g", True)], "id INT, v STRING, flag BOOLEAN")
        (dt.alias("t").merge(source.alias("s"), "t.id = s.id")
            .whenMatchedUpdateAll().whenNotMatchedInsertAll().whenNotMatchedBySourceDelete().execute())
        out["items"] = sorted((r.id, r.v) for r in dt.toDF().collect())
        out["history"] = [r.operation for r in dt.history().orderBy("version").collect()]
        out["compaction"] = dt.optimize().executeZOrderBy("id").first().metrics.numFilesAdded
        out["detail_format"] = dt.detail().first().format

        spark.createDataFrame([(1, "x")], "id INT, v STRING").write.saveAsTable("dev.s.reshaped")
        (spark.createDataFrame([(1.5,)], "w DOUBLE").write.mode("overwrite")
            .option("overwriteSchema", "true").saveAsTable("dev.s.reshaped"))
        out["reshaped"] = spark.table("dev.s.reshaped").columns

        # Paths: dbfs:/ and /Volumes/, read and written by path, and the DeltaTable API on them.
        spark.range(5).write.format("delta").save("dbfs:/delta/numbers")
        DeltaTable.forPath(spark, "dbfs:/delta/numbers").delete("id < 2")
        out["dbfs_rows"] = spark.read.format("delta").load("dbfs:/delta/numbers").count()
        spark.range(3).write.format("delta").mode("overwrite").save("/Volumes/main/raw/files/numbers")
        out["volume"] = [
            DeltaTable.isDeltaTable(spark, "/Volumes/main/raw/files/numbers"),
            spark.sql("SELECT count(*) FROM delta.`/Volumes/main/raw/files/numbers`").first()[0],
            spark.sql("DESCRIBE HISTORY delta.`dbfs:/delta/numbers`").count(),
        ]

        # An external table, and the change data feed.
        spark.sql("CREATE TABLE dev.s.ext (id BIGINT) LOCATION 'dbfs:/external/ext'")
        spark.sql("INSERT INTO dev.s.ext VALUES (1), (2)")
        spark.sql("CREATE TABLE dev.s.feed (id INT, v STRING) TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        spark.sql("INSERT INTO dev.s.feed VALUES (1, 'a'), (2, 'b')")
        spark.sql("UPDATE dev.s.feed SET v = 'B' WHERE id = 2")
        out["changes"] = [
            (r.id, r._change_type, r._commit_version)
            for r in spark.sql(
                "SELECT * FROM table_changes('dev.s.feed', 1) ORDER BY _commit_version, id, _change_type"
            ).collect()
        ]
        out["feed_reader"] = (
            spark.read.option("readChangeFeed", "true").option("startingVersion", 2).table("dev.s.feed").count()
        )
        ext = spark.sql("DESCRIBE DETAIL dev.s.ext").first()
        out["ext"] = [ext.format, ext.location]
        spark.sql("CREATE TABLE dev.s.clone_me (id INT) USING parquet")
        out["parquet_still_works"] = spark.sql("DESCRIBE DETAIL dev.s.clone_me").first().format
        dbutils.notebook.exit(json.dumps(out))
        """,
    )
    assert "schema mismatch" in out["mismatch"].lower(), out["mismatch"]
    assert out["merged_columns"] == ["id", "v", "flag"]
    assert out["items"] == [[1, "AA"], [7, "g"]]  # 3 was not in the source: deleted by source
    assert out["history"] == ["CREATE TABLE AS SELECT", "WRITE", "UPDATE", "DELETE", "MERGE"]
    assert out["compaction"] == 1 and out["detail_format"] == "delta"
    assert out["reshaped"] == ["w"]
    assert out["dbfs_rows"] == 3
    assert out["volume"] == [True, 3, 2]
    paths = workspace.paths
    assert (paths.dbfs / "delta" / "numbers" / "_delta_log").is_dir()
    assert (paths.volumes / "main" / "raw" / "files" / "numbers" / "_delta_log").is_dir()
    assert out["changes"] == [
        [1, "insert", 1],
        [2, "insert", 1],
        [2, "update_postimage", 2],
        [2, "update_preimage", 2],
    ]
    assert out["feed_reader"] == 2
    assert out["ext"] == ["delta", (paths.dbfs / "external" / "ext").as_uri().replace("file:///", "file:/")]
    assert out["parquet_still_works"] == "parquet"
    assert (paths.warehouse / "dev__s.db" / "items" / "_delta_log").is_dir()


def test_tables_cross_clusters_and_reach_the_sql_warehouse(
    cluster: LocalCluster, other_cluster: LocalCluster, client: WorkspaceClient
):
    notebook(
        cluster,
        """
        spark.sql("CREATE SCHEMA IF NOT EXISTS main.shared")
        spark.range(10).withColumnRenamed("id", "n").write.saveAsTable("main.shared.numbers")
        spark.sql("CREATE CATALOG IF NOT EXISTS dev")
        spark.sql("CREATE SCHEMA IF NOT EXISTS dev.x")
        spark.sql("CREATE TABLE dev.x.outside (id INT) LOCATION '/Volumes/main/raw/files/outside'")
        spark.sql("INSERT INTO dev.x.outside VALUES (1), (2), (3)")
        """,
    )
    read = notebook(
        other_cluster,
        """
        import json
        spark.sql("DELETE FROM main.shared.numbers WHERE n >= 7")
        dbutils.notebook.exit(json.dumps({
            "numbers": spark.table("main.shared.numbers").count(),
            "outside": spark.table("dev.x.outside").count(),
            "formats": [spark.sql(f"DESCRIBE DETAIL {t}").first().format for t in ("main.shared.numbers", "dev.x.outside")],
        }))
        """,
    )
    assert read == {"numbers": 7, "outside": 3, "formats": ["delta", "delta"]}
    back = notebook(
        cluster,
        """
        import json
        spark.sql("DROP TABLE dev.x.outside")  # external: the data stays, the name goes everywhere
        dbutils.notebook.exit(json.dumps({"numbers": spark.table("main.shared.numbers").count()}))
        """,
    )
    assert back == {"numbers": 7}  # the other cluster's DELETE, seen from this one
    gone = notebook(
        other_cluster,
        """
        import json
        dbutils.notebook.exit(json.dumps({"outside": spark.catalog.tableExists("dev.x.outside")}))
        """,
    )
    assert gone == {"outside": False}

    warehouse_id = next(iter(client.warehouses.list())).id
    assert warehouse_id is not None
    answer = client.statement_execution.execute_statement(
        statement="SELECT COUNT(*) FROM main.shared.numbers", warehouse_id=warehouse_id, wait_timeout="30s"
    )
    assert answer.result is not None and answer.result.data_array == [["7"]]
    table = client.tables.get("main.shared.numbers")
    assert table.data_source_format is not None and table.data_source_format.value == "DELTA"
    assert table.properties is not None and table.properties["delta.lastUpdateVersion"] == "1"


def test_two_clusters_writing_one_table_get_deltas_conflict_not_a_lost_commit(
    cluster: LocalCluster, other_cluster: LocalCluster, tmp_path: Path
):
    notebook(
        cluster,
        """
        spark.sql("CREATE SCHEMA IF NOT EXISTS main.race")
        spark.sql("CREATE TABLE main.race.counter (id INT, n INT)")
        spark.sql("INSERT INTO main.race.counter VALUES (1, 0)")
        """,
    )
    started, go = tmp_path / "merge-started", tmp_path / "go"
    # Cluster a's MERGE reads the table, then waits (inside its source) until cluster b has committed.
    slow_merge = invocation(
        cluster,
        f"""
        import json, os, time
        from pyspark.sql import functions as F

        @F.udf("int")
        def wait_for_the_other_cluster(n):
            open({str(started)!r}, "w").close()
            deadline = time.time() + 120
            while not os.path.exists({str(go)!r}) and time.time() < deadline:
                time.sleep(0.1)
            return n

        spark.range(1).select(F.lit(1).alias("id"), wait_for_the_other_cluster(F.lit(5)).alias("n")).createOrReplaceTempView("src")
        try:
            spark.sql("MERGE INTO main.race.counter t USING src s ON t.id = s.id WHEN MATCHED THEN UPDATE SET t.n = t.n + s.n")
            result = "committed"
        except Exception as e:
            result = type(e).__name__ + ": " + str(e).splitlines()[0]
        dbutils.notebook.exit(json.dumps({{"merge": result}}))
        """,
    )
    task = cluster.run_task(slow_merge)
    appender = invocation(
        other_cluster,
        f"""
        import os, time
        deadline = time.time() + 120
        while not os.path.exists({str(started)!r}) and time.time() < deadline:
            time.sleep(0.1)
        spark.sql("INSERT INTO main.race.counter VALUES (2, 100)")
        open({str(go)!r}, "w").close()
        """,
    )
    try:
        finished(other_cluster, appender)
    finally:
        go.touch()  # never leave the merge waiting
    outcome = task.wait(TASK_TIMEOUT)
    assert outcome is not None and outcome.result_state == "SUCCESS", outcome and outcome.error_trace
    merge = json.loads(outcome.notebook_result or "{}")["merge"]
    assert "ConcurrentAppendException" in merge, merge

    # Many appends from both clusters at once: every commit lands, one version each.
    body = """
    import json
    for i in range(12):
        spark.sql(f"INSERT INTO main.race.counter VALUES ({i + 10}, {tag})")
    dbutils.notebook.exit(json.dumps({"ok": True}))
    """
    results: list[TaskOutcome] = []
    runs = [(c, invocation(c, body.replace("{tag}", str(k)))) for k, c in ((1, cluster), (2, other_cluster))]
    threads = [threading.Thread(target=lambda c=c, inv=inv: results.append(finished(c, inv))) for c, inv in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    final = notebook(
        cluster,
        """
        import json
        t = "main.race.counter"
        dbutils.notebook.exit(json.dumps({
            "rows": spark.table(t).count(),
            "by_writer": sorted(tuple(r) for r in spark.sql(f"SELECT n, count(*) FROM {t} WHERE id >= 10 GROUP BY n").collect()),
            "versions": spark.sql(f"DESCRIBE HISTORY {t}").count(),
            "store": spark.conf.get("spark.delta.logStore.file.impl"),
        }))
        """,
    )
    assert final["by_writer"] == [[1, 12], [2, 12]]
    assert final["rows"] == 2 + 24 and final["versions"] == 3 + 24  # create, 2 inserts, 24 appends; the merge failed
    assert final["store"] == "dbx.local.delta.LinkLogStore"
