# Databricks notebook source
# MAGIC %md
# MAGIC Cleaned, typed and enriched orders: duplicates removed (latest version of an order wins),
# MAGIC rows without a customer or with a non-positive amount dropped, customer name and country joined in.

# COMMAND ----------

import json

from pyspark.sql import Window
from pyspark.sql import functions as F

dbutils.widgets.text("catalog", "main")
catalog = dbutils.widgets.get("catalog")

orders = spark.table(f"{catalog}.bronze.orders")
customers = spark.table(f"{catalog}.bronze.customers").select(
    F.col("customer_id").cast("int").alias("customer_id"),
    F.col("name").alias("customer_name"),
    "country",
)

# COMMAND ----------

typed = orders.select(
    F.col("order_id").cast("int").alias("order_id"),
    F.col("customer_id").cast("int").alias("customer_id"),
    F.to_timestamp("order_ts").alias("order_ts"),
    F.col("amount").cast("double").alias("amount"),
    F.lower(F.trim("status")).alias("status"),
)
latest = Window.partitionBy("order_id").orderBy(F.col("order_ts").desc())
deduped = typed.withColumn("_rank", F.row_number().over(latest)).where("_rank = 1").drop("_rank")
valid = deduped.where(F.col("customer_id").isNotNull() & (F.col("amount") > 0) & F.col("order_ts").isNotNull())

enriched = valid.join(customers, "customer_id", "left").withColumn("order_date", F.to_date("order_ts"))

# COMMAND ----------

# Each deployment writes its own catalog (the `catalog` parameter); the first run creates it.
spark.sql(f"CREATE CATALOG IF NOT EXISTS {catalog}")
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {catalog}.silver")
enriched.write.mode("overwrite").saveAsTable(f"{catalog}.silver.orders_enriched")

stats = {
    "input_rows": orders.count(),
    "output_rows": enriched.count(),
    "dropped_rows": orders.count() - enriched.count(),
}
print(stats)
dbutils.notebook.exit(json.dumps(stats))
