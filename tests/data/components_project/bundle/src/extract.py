# Databricks notebook source
# MAGIC %md
# MAGIC The example bundle's extract step: writes the run date it was given.

# COMMAND ----------

import os

dbutils.widgets.text("out", "")
dbutils.widgets.text("run_date", "")
out = dbutils.widgets.get("out")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as fh:
    fh.write(dbutils.widgets.get("run_date"))
dbutils.notebook.exit("extract " + dbutils.widgets.get("run_date"))
