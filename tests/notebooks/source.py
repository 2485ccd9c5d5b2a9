# Databricks notebook source
# MAGIC %md
# MAGIC Test source: ten rows into a file under /dbfs (no Spark, so it runs on the fake runtime too);
# MAGIC the exit value is a JSON object with the row count read back, echoing the partition.

# COMMAND ----------

import json
import os

dbutils.widgets.text("out", "/dbfs/tmp/t_source/rows.txt")
for name in ("partition_key", "partition_start", "partition_end"):
    dbutils.widgets.text(name, "")
out = dbutils.widgets.get("out")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as fh:
    fh.write("\n".join(str(i) for i in range(10)) + "\n")
with open(out) as fh:
    rows = len(fh.read().splitlines())
dbutils.notebook.exit(json.dumps({
    "rows": rows,
    "partition_key": dbutils.widgets.get("partition_key"),
    "partition_start": dbutils.widgets.get("partition_start"),
    "partition_end": dbutils.widgets.get("partition_end"),
}))
