import argparse

from databricks.sdk.runtime import spark


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()
    spark.table(f"{args.catalog}.{args.schema}.bundle_numbers").show(5)
