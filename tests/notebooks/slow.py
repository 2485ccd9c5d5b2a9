# Databricks notebook source
# MAGIC %md
# MAGIC Test notebook that sleeps for `seconds`, for cancellation and reattach tests.

# COMMAND ----------

import time

dbutils.widgets.text("seconds", "1")
time.sleep(float(dbutils.widgets.get("seconds")))
dbutils.notebook.exit("slept")
