# Databricks notebook source
# MAGIC %md
# MAGIC Test source: ten rows into a table; the exit value is a JSON object echoing the partition.

# COMMAND ----------

import json

dbutils.widgets.text("table", "default.t_source")
for name in ("partition_key", "partition_start", "partition_end"):
    dbutils.widgets.text(name, "")
table = dbutils.widgets.get("table")
spark.range(10).write.mode("overwrite").saveAsTable(table)
dbutils.notebook.exit(json.dumps({
    "rows": spark.table(table).count(),
    "partition_key": dbutils.widgets.get("partition_key"),
    "partition_start": dbutils.widgets.get("partition_start"),
    "partition_end": dbutils.widgets.get("partition_end"),
}))
