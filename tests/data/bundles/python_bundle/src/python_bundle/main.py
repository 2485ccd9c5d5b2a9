import argparse

from databricks.sdk.runtime import spark

from python_bundle import taxis


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()
    spark.sql(f"USE CATALOG {args.catalog}")
    spark.sql(f"USE SCHEMA {args.schema}")
    spark.table("bundle_numbers").show(5)
    print(f"taxi trips: {taxis.trips().select('trip_distance', 'fare_amount').count()}")
