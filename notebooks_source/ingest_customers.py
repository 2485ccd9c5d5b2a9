# Databricks notebook source
# MAGIC %md
# MAGIC Customer master data from `dbfs:/landing/customers/customers.csv`, replaced on every run.

# COMMAND ----------

import json

dbutils.widgets.text("customers_path", "dbfs:/landing/customers/customers.csv")
path = dbutils.widgets.get("customers_path")

customers = spark.read.option("header", True).option("inferSchema", True).csv(path)

spark.sql("CREATE DATABASE IF NOT EXISTS bronze")
customers.write.mode("overwrite").saveAsTable("bronze.customers")

count = customers.count()
print(f"Loaded {count} customers from {path}")
dbutils.notebook.exit(json.dumps({"customers": count}))
