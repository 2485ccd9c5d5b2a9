"""A tiny package run as Databricks Python wheel tasks by tests/test_python_tasks_spark.py."""

from databricks.sdk.runtime import spark


def count_orders() -> None:
    """An entry point found as a function of the package (no [project.scripts] entry names it)."""
    import sys

    table = sys.argv[1]
    print(f"{table}: {spark.table(table).count()} orders")
