# Databricks notebook source
# MAGIC %md
# MAGIC Test notebook that fails while a flag file exists under /dbfs, so a test can fail it and
# MAGIC later let a repair succeed without changing the job.

# COMMAND ----------

import os

dbutils.widgets.text("flag", "/dbfs/tmp/never")
flag = dbutils.widgets.get("flag")
if os.path.exists(flag):
    raise ValueError(f"flag file {flag} says fail")
dbutils.notebook.exit("plain text result")
