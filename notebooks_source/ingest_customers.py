# Databricks notebook source
# MAGIC %md
# MAGIC Customer master data from `dbfs:/landing/customers/customers.csv`, replaced on every run.

# COMMAND ----------

import json

dbutils.widgets.text("customers_path", "dbfs:/landing/customers/customers.csv")
dbutils.widgets.text("catalog", "main")
path = dbutils.widgets.get("customers_path")
catalog = dbutils.widgets.get("catalog")

# The CRM export's API key lives in a secret scope (`python -m dbx_assets.demo seed` creates it);
# printed values of secrets come back as [REDACTED], on Databricks and on the local workspace.
api_key = dbutils.secrets.get("dbx-assets-demo", "crm_api_key")
print(f"CRM API key: {api_key}")

customers = spark.read.option("header", True).option("inferSchema", True).csv(path)

# Each deployment writes its own catalog (the `catalog` parameter); the first run creates it.
spark.sql(f"CREATE CATALOG IF NOT EXISTS {catalog}")
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {catalog}.bronze")
customers.write.mode("overwrite").saveAsTable(f"{catalog}.bronze.customers")

count = customers.count()
print(f"Loaded {count} customers from {path}")
dbutils.notebook.exit(json.dumps({"customers": count}))
