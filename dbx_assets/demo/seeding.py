"""Landing the demo's data in the workspace the demo resource points at (local or remote)."""

from __future__ import annotations

import datetime as dt

from dbx_assets.demo.data import demo_days
from dbx_assets.demo.landing import (
    CUSTOMERS_FILE,
    day_landed,
    ensure_crm_api_key,
    exists,
    land_customers,
    land_day,
)
from dbx_assets.demo.pool import ensure_demo_pool


def _resource():
    from dbx_assets.demo.definitions import databricks_resource

    return databricks_resource


def seed(days: int) -> list[dt.date]:
    """Land what is missing. Re-landing a day would write a new `_SUCCESS` version, which the
    sensor rightly treats as new data and rebuilds; a second `make dev` must not do that."""
    client = _resource().get_client()
    ensure_crm_api_key(client)
    ensure_demo_pool(client)  # the job cluster's drivers start ahead, while the rest is landed
    if not exists(client, CUSTOMERS_FILE):
        land_customers(client)
        print(f"Landed customers: {CUSTOMERS_FILE}")
    wanted = demo_days(count=days)
    new = [day for day in wanted if not day_landed(client, day)]
    for day in new:
        land_day(client, day)
    if new:
        print(f"Landed {len(new)} day(s) of orders: {new[0]} .. {new[-1]}")
    else:
        print(f"Orders for {wanted[0]} .. {wanted[-1]} were landed before; nothing new to land.")
    return new


def drop(day: dt.date) -> None:
    from dbx_assets.demo.partitions import daily_partitions

    marker = land_day(_resource().get_client(), day)
    print(f"Landed orders for {day}: {marker}")
    if not daily_partitions.has_partition_key(day.isoformat()):
        # The sensor skips it for good: a day is a partition only once it is over.
        print(
            f"Note: {day} is not a partition of the demo graph (days from {daily_partitions.start.date()} "
            "through yesterday); the landing sensor skips it."
        )
