# Databricks notebook source
# MAGIC %md
# MAGIC Customer master data from `dbfs:/landing/customers/customers.csv`, replaced on every run.

# COMMAND ----------

import json

dbutils.widgets.text("customers_path", "dbfs:/landing/customers/customers.csv")
dbutils.widgets.text("catalog", "main")
path = dbutils.widgets.get("customers_path")
catalog = dbutils.widgets.get("catalog")

# The CRM export's API key lives in a secret scope (`python -m dbx_assets.demo seed` creates it).
# Never print a secret: a printed value shows as [REDACTED] in the notebook's output, but Databricks
# does not redact the driver's stdout, which this job cluster delivers to its cluster logs (and the
# Dagster step copies into the run's stdout).
api_key = dbutils.secrets.get("dbx-assets-demo", "crm_api_key")
print(f"CRM API key read from the secret scope ({len(api_key)} characters)")

customers = spark.read.option("header", True).option("inferSchema", True).csv(path)

# Each deployment writes its own catalog (the `catalog` parameter); the first run creates it.
spark.sql(f"CREATE CATALOG IF NOT EXISTS {catalog}")
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {catalog}.bronze")
customers.write.mode("overwrite").saveAsTable(f"{catalog}.bronze.customers")

count = customers.count()
print(f"Loaded {count} customers from {path}")
dbutils.notebook.exit(json.dumps({"customers": count}))
