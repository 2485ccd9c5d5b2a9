# Databricks notebook source
# MAGIC %md
# MAGIC The component example's customers notebook.

# COMMAND ----------

dbutils.notebook.exit("customers")
