from databricks.sdk.runtime import spark
from pyspark.sql import DataFrame


def trips() -> DataFrame:
    """Databricks' sample taxi trips (generated locally on the local workspace)."""
    return spark.read.table("samples.nyctaxi.trips")
