"""The cluster's driver process: starts the JVM (SparkContext + SparkSession), publishes
how to attach to it, then serves cancel requests until it is terminated or orphaned."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.2


def main(argv: list[str]) -> None:
    cluster_dir = Path(argv[0])
    config = json.loads(Path(argv[1]).read_text())
    parent = os.getppid()

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(config["master"]).appName(config["app_name"])
    for key, value in config["spark_conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    sc.setLogLevel("WARN")
    # Warm the JVM (catalog, SQL planner, a job) here, so cluster start pays it once
    # instead of the first task.
    spark.sql("SHOW DATABASES").collect()
    spark.range(10).selectExpr("sum(id)").collect()
    assert sc._gateway is not None and sc._jvm is not None  # set once a SparkContext exists
    gateway = sc._gateway.gateway_parameters
    info = {
        "port": gateway.port,
        "secret": gateway.auth_token,
        "pid": os.getpid(),
        "java_home": sc._jvm.System.getProperty("java.home"),
        "spark_version": spark.version,
    }
    # The gateway secret grants full control of the JVM: owner-only file, written atomically.
    tmp = cluster_dir / "gateway.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, cluster_dir / "gateway.json")
    print(f"cluster driver ready: spark {spark.version}, java {info['java_home']}", flush=True)

    cancel_dir = cluster_dir / "cancel"
    cancel_dir.mkdir(exist_ok=True)
    while True:
        if os.getppid() != parent:  # the server died: do not leave an orphaned JVM behind
            print("cluster driver: parent process gone, exiting", flush=True)
            os.killpg(0, signal.SIGKILL)  # this process group: the driver and its JVM
        for request in cancel_dir.iterdir():
            # Killing a task process does not stop Spark jobs it started; its job group does.
            sc.cancelJobGroup(request.name)
            request.unlink(missing_ok=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":  # python -P -m dbx_assets.local_workspace.runtime.driver <cluster_dir> <config.json>
    main(sys.argv[1:])
