# Databricks notebook source
# MAGIC %md Loads `rows` numbers into the target's schema.

# COMMAND ----------

rows = int(dbutils.widgets.get("rows"))
spark.range(rows).write.mode("overwrite").saveAsTable("numbers")
