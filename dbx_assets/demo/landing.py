"""Putting demo files where the pipeline expects them, through the Databricks API (local or remote)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import secrets

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists

from dbx_assets.demo.data import customers_csv, orders_csv

LANDING_ROOT = "dbfs:/landing"
ORDERS_DIR = f"{LANDING_ROOT}/orders"
CUSTOMERS_FILE = f"{LANDING_ROOT}/customers/customers.csv"
# The customers notebook reads the CRM export's API key from this secret scope.
SECRET_SCOPE = "dbx-assets-demo"
CRM_API_KEY = "crm_api_key"
CRM_API_KEY_ENV = "DBX_DEMO_CRM_API_KEY"


def day_dir(day: dt.date) -> str:
    return f"{ORDERS_DIR}/date={day.isoformat()}"


def upload(client: WorkspaceClient, path: str, content: bytes) -> None:
    client.dbfs.upload(path, io.BytesIO(content), overwrite=True)


def land_customers(client: WorkspaceClient) -> str:
    """The customers file, and the secret its notebook reads."""
    ensure_crm_api_key(client)
    upload(client, CUSTOMERS_FILE, customers_csv())
    return CUSTOMERS_FILE


def ensure_crm_api_key(client: WorkspaceClient) -> None:
    """Create the demo's secret scope and key unless they exist (a made-up key unless
    $DBX_DEMO_CRM_API_KEY gives one); an existing key is never overwritten."""
    with contextlib.suppress(ResourceAlreadyExists):
        client.secrets.create_scope(SECRET_SCOPE)
    if any(s.key == CRM_API_KEY for s in client.secrets.list_secrets(SECRET_SCOPE)):
        return
    value = os.environ.get(CRM_API_KEY_ENV) or f"demo-{secrets.token_urlsafe(24)}"
    client.secrets.put_secret(SECRET_SCOPE, CRM_API_KEY, string_value=value)


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
