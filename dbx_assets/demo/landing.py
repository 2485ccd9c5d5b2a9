"""Putting demo files where the pipeline expects them, through the Databricks API (local or remote)."""

from __future__ import annotations

import datetime as dt
import io

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound

from dbx_assets.demo.data import customers_csv, orders_csv

LANDING_ROOT = "dbfs:/landing"
ORDERS_DIR = f"{LANDING_ROOT}/orders"
CUSTOMERS_FILE = f"{LANDING_ROOT}/customers/customers.csv"


def day_dir(day: dt.date) -> str:
    return f"{ORDERS_DIR}/date={day.isoformat()}"


def upload(client: WorkspaceClient, path: str, content: bytes) -> None:
    client.dbfs.upload(path, io.BytesIO(content), overwrite=True)


def land_customers(client: WorkspaceClient) -> str:
    upload(client, CUSTOMERS_FILE, customers_csv())
    return CUSTOMERS_FILE


def land_day(client: WorkspaceClient, day: dt.date) -> str:
    """Write a day's orders, then its `_SUCCESS` marker last, as an upstream export would."""
    upload(client, f"{day_dir(day)}/orders.csv", orders_csv(day))
    marker = f"{day_dir(day)}/_SUCCESS"
    upload(client, marker, b"")
    return marker


def exists(client: WorkspaceClient, path: str) -> bool:
    try:
        client.dbfs.get_status(path)
        return True
    except NotFound:
        return False


def day_landed(client: WorkspaceClient, day: dt.date) -> bool:
    """A day counts as landed once its `_SUCCESS` marker is there (the sensor's definition too)."""
    return exists(client, f"{day_dir(day)}/_SUCCESS")
