"""Lands the next batch of web orders (three JSON records in a new file) for the dbt models to ingest."""

import json
import sys

from databricks.sdk.runtime import dbutils

folder = f"dbfs:/tmp/dbt_bundle/{sys.argv[1]}/web_orders"
dbutils.fs.mkdirs(folder)
batch = len(dbutils.fs.ls(folder)) + 1
records = [
    {"order_number": batch * 100 + i, "customer_name": f"web customer {i}", "order_datetime": str(1564617600 + batch * 86400)}
    for i in range(3)
]
dbutils.fs.put(f"{folder}/batch-{batch:03d}.json", "".join(json.dumps(r) + "\n" for r in records))
print(f"landed batch {batch} in {folder}")
