# Databricks notebook source
# MAGIC %md
# MAGIC Raw orders, loaded from the CSV files that land under `dbfs:/landing/orders/date=YYYY-MM-DD/`.
# MAGIC One row per order line as delivered; a partition's rows are replaced when it is re-ingested.

# COMMAND ----------

import json

from pyspark.sql import functions as F

dbutils.widgets.text("landing_path", "dbfs:/landing/orders")
dbutils.widgets.text("partition_key", "")
dbutils.widgets.text("partition_start", "")
dbutils.widgets.text("partition_end", "")
dbutils.widgets.text("catalog", "main")
catalog = dbutils.widgets.get("catalog")

landing_path = dbutils.widgets.get("landing_path")
start = dbutils.widgets.get("partition_start") or dbutils.widgets.get("partition_key")
end = dbutils.widgets.get("partition_end") or start

# COMMAND ----------

# Only the dates asked for are read, so a daily run touches one day of files.
dates = sorted(
    f.name.rstrip("/").split("=", 1)[1]
    for f in dbutils.fs.ls(landing_path)
    if f.name.startswith("date=")
)
wanted = [d for d in dates if (not start or d >= start) and (not end or d <= end)]
if not wanted:
    raise ValueError(f"No landed orders under {landing_path} for {start or 'any date'}..{end or 'any date'}")

raw = (
    spark.read.option("header", True)
    .csv([f"{landing_path}/date={d}/*.csv" for d in wanted])
    .withColumn("ingest_date", F.regexp_extract(F.input_file_name(), r"date=(\d{4}-\d{2}-\d{2})", 1))
    .withColumn("ingested_at", F.current_timestamp())
)

# COMMAND ----------

# Each deployment writes its own catalog (the `catalog` parameter); the first run creates it.
spark.sql(f"CREATE CATALOG IF NOT EXISTS {catalog}")
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {catalog}.bronze")
if spark.catalog.tableExists(f"{catalog}.bronze.orders"):
    # Keep other days, replace the ones re-ingested; localCheckpoint cuts the read-while-overwrite lineage.
    kept = spark.table(f"{catalog}.bronze.orders").where(~F.col("ingest_date").isin(wanted))
    combined = kept.unionByName(raw).localCheckpoint()
else:
    combined = raw
combined.write.mode("overwrite").saveAsTable(f"{catalog}.bronze.orders")

rows = raw.count()
print(f"Ingested {rows} rows for {len(wanted)} day(s): {', '.join(wanted)}")
dbutils.notebook.exit(json.dumps({"rows_ingested": rows, "days": len(wanted), "first_day": wanted[0], "last_day": wanted[-1]}))
