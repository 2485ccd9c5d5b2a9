"""Attach this (task) process to the cluster's running JVM, so `spark` here is the
cluster's one SparkSession (shared catalog, conf and job scheduler across tasks)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def attach(gateway_file: Path, job_group: str) -> Any:
    info = json.loads(gateway_file.read_text())
    # pyspark's launch_gateway() connects to an existing JVM when these are set.
    os.environ["PYSPARK_GATEWAY_PORT"] = str(info["port"])
    os.environ["PYSPARK_GATEWAY_SECRET"] = info["secret"]

    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    gateway = launch_gateway()
    jvm = gateway.jvm
    jsc = jvm.org.apache.spark.api.java.JavaSparkContext(jvm.org.apache.spark.SparkContext.getOrCreate())
    sc = SparkContext(gateway=gateway, jsc=jsc)
    jsession = jvm.org.apache.spark.sql.SparkSession.builder().getOrCreate()
    spark = SparkSession(sc, jsparkSession=jsession)
    # SparkSession.builder.getOrCreate() (user code, dbt-spark session mode) returns this one.
    SparkSession._instantiatedSession = spark
    SparkSession._activeSession = spark

    # The JVM is the cluster's, not this task's: stopping it from a task would kill the cluster.
    SparkContext.stop = lambda self: None  # type: ignore[method-assign]
    SparkSession.stop = lambda self: None  # type: ignore[method-assign]

    _tag_threads_with_job_group(sc, SparkSession, job_group)
    return spark


def _tag_threads_with_job_group(sc: Any, session_cls: Any, job_group: str) -> None:
    """Every Spark job of this task runs in job group `job_group`, so the cluster can cancel
    them. Job groups are per (pinned) thread; dbt runs SQL on worker threads, so spark.sql
    tags the calling thread the first time it is used there."""
    tagged = threading.local()

    def ensure_tagged() -> None:
        if not getattr(tagged, "done", False):
            sc.setJobGroup(job_group, f"task run {job_group}", interruptOnCancel=True)
            tagged.done = True

    ensure_tagged()
    original_sql = session_cls.sql

    def sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        ensure_tagged()
        return original_sql(self, *args, **kwargs)

    sql.__wrapped__ = original_sql  # type: ignore[attr-defined]
    sql._dbx_patched = getattr(original_sql, "_dbx_patched", False)  # type: ignore[attr-defined]
    session_cls.sql = sql
