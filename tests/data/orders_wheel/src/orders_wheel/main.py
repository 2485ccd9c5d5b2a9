"""The `summarize` console script: totals per day of an orders table, written to another table."""

import argparse

from databricks.sdk.runtime import dbutils, display, spark


def summarize() -> None:
    parser = argparse.ArgumentParser(prog="summarize")
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--source", required=True)
    args, _ = parser.parse_known_args()  # Databricks also pushes the job's parameters down as --name=value
    schema = f"{args.catalog}.{args.schema}"
    totals = spark.sql(
        f"SELECT day, count(*) AS orders, sum(amount) AS revenue FROM {schema}.{args.source} GROUP BY day ORDER BY day"
    )
    totals.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.daily_totals")
    written = spark.table(f"{schema}.daily_totals")
    display(written)
    dbutils.jobs.taskValues.set("days", written.count())
    print(f"summarize: {written.count()} days into {schema}.daily_totals")
