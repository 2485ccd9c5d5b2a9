# Databricks notebook source
# MAGIC %md
# MAGIC Cleaned, typed and enriched orders: duplicates removed (latest version of an order wins),
# MAGIC rows without a customer or with a non-positive amount dropped, customer name and country joined in.
# MAGIC The silver table is upserted by `order_id` (`MERGE INTO`): a newer version of an order replaces the
# MAGIC one kept, the same or an older one changes nothing, orders not seen in this run stay as they are.

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
silver = f"{catalog}.silver.orders_enriched"
if not spark.catalog.tableExists(silver):
    enriched.limit(0).write.saveAsTable(silver)  # a Delta table, Databricks' default
enriched.createOrReplaceTempView("orders_updates")
merge = spark.sql(f"""
    MERGE INTO {silver} AS t
    USING orders_updates AS s
    ON t.order_id = s.order_id
    WHEN MATCHED AND s.order_ts > t.order_ts THEN UPDATE SET *
    WHEN NOT MATCHED THEN INSERT *
""").first()

stats = {
    "input_rows": orders.count(),
    "output_rows": enriched.count(),
    "dropped_rows": orders.count() - enriched.count(),
    "rows_updated": merge["num_updated_rows"],
    "rows_inserted": merge["num_inserted_rows"],
}
print(stats)
dbutils.notebook.exit(json.dumps(stats))
