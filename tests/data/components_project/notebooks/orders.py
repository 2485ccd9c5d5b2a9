# Databricks notebook source
# MAGIC %md
# MAGIC The component example's orders notebook.

# COMMAND ----------

dbutils.notebook.exit("orders")
