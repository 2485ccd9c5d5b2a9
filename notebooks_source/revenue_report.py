# Databricks notebook source
# MAGIC %md
# MAGIC Daily revenue report: reads the dbt mart `analytics.fct_daily_revenue` in the deployment's catalog and
# MAGIC returns the headline figures for the partition (or all days) as the notebook's exit value.

# COMMAND ----------

import json

from pyspark.sql import functions as F

dbutils.widgets.text("partition_key", "")
dbutils.widgets.text("partition_start", "")
dbutils.widgets.text("partition_end", "")
dbutils.widgets.text("catalog", "main")
start = dbutils.widgets.get("partition_start") or dbutils.widgets.get("partition_key")
end = dbutils.widgets.get("partition_end") or start

mart = f"{dbutils.widgets.get('catalog')}.analytics.fct_daily_revenue"
daily = spark.table(mart)
if start:
    daily = daily.where(F.col("revenue_date").between(F.lit(start).cast("date"), F.lit(end).cast("date")))

# COMMAND ----------

totals = daily.agg(
    F.sum("revenue").alias("revenue"),
    F.sum("order_count").alias("orders"),
    F.sum("completed_order_count").alias("completed_orders"),
    F.count("*").alias("days"),
).first()
best = daily.orderBy(F.desc("revenue")).first()
report = {
    "report_period": f"{start}..{end}" if start else "all",
    "days": int(totals["days"]),
    "revenue": round(float(totals["revenue"] or 0.0), 2),
    "orders": int(totals["orders"] or 0),
    "completed_orders": int(totals["completed_orders"] or 0),
    "best_day": str(best["revenue_date"]) if best else None,
}
if report["days"] == 0:
    raise ValueError(f"{mart} has no rows for {report['report_period']}")
print(f"Revenue for {report['report_period']}: {report['revenue']:.2f} from {report['orders']} orders")
display(daily.orderBy("revenue_date"))
dbutils.notebook.exit(json.dumps(report))
