# Databricks notebook source
# MAGIC %md
# MAGIC Real Spark only: a CSV written through /dbfs, read by Spark from dbfs:/, summed by a %sql cell.

# COMMAND ----------

import json
import os

dbutils.widgets.text("dir", "/dbfs/tmp/spark_sql")
local_dir = dbutils.widgets.get("dir")
os.makedirs(local_dir, exist_ok=True)
with open(f"{local_dir}/numbers.csv", "w") as fh:
    fh.write("n\n" + "\n".join(str(i) for i in range(1, 11)) + "\n")
spark_dir = "dbfs:" + local_dir[len("/dbfs"):]
spark.read.option("header", True).csv(f"{spark_dir}/numbers.csv").createOrReplaceTempView("numbers")

# COMMAND ----------

# MAGIC %sql
# MAGIC CREATE OR REPLACE TEMP VIEW numbers_total AS SELECT SUM(CAST(n AS INT)) AS total, COUNT(*) AS n FROM numbers

# COMMAND ----------

row = spark.table("numbers_total").first()
dbutils.notebook.exit(json.dumps({"total": row["total"], "rows": row["n"]}))
