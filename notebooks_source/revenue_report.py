# Databricks notebook source
# MAGIC %md
# MAGIC Daily revenue report: reads the dbt mart `analytics.fct_daily_revenue` and returns the
# MAGIC headline figures for the partition (or all days) as the notebook's exit value.

# COMMAND ----------

import json

from pyspark.sql import functions as F

dbutils.widgets.text("partition_key", "")
dbutils.widgets.text("partition_start", "")
dbutils.widgets.text("partition_end", "")
start = dbutils.widgets.get("partition_start") or dbutils.widgets.get("partition_key")
end = dbutils.widgets.get("partition_end") or start

daily = spark.table("analytics.fct_daily_revenue")
if start:
    daily = daily.where((F.col("order_date") >= F.lit(start)) & (F.col("order_date") <= F.lit(end)))

# COMMAND ----------

totals = daily.agg(F.sum("revenue").alias("revenue"), F.sum("order_count").alias("orders")).first()
top = daily.groupBy("country").agg(F.sum("revenue").alias("revenue")).orderBy(F.desc("revenue")).first()
report = {
    "report_period": f"{start}..{end}" if start else "all",
    "revenue": round(float(totals["revenue"] or 0.0), 2),
    "orders": int(totals["orders"] or 0),
    "top_country": top["country"] if top else None,
}
display(daily.orderBy("order_date", "country"))
dbutils.notebook.exit(json.dumps(report))
