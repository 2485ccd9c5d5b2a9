"""Synthetic landing data for the demo: deterministic CSVs per day, made here, never downloaded."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random

# CH is outside the markets dbt expects: its warn-severity test flags it without failing the build.
COUNTRIES = ("DE", "FR", "NL", "US", "GB", "ES", "IT", "CH")
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Eva", "Finn", "Gita", "Hugo", "Ines", "Jon")
LAST = ("Meyer", "Dubois", "de Vries", "Smith", "Jones", "Garcia", "Rossi", "Novak")
CUSTOMERS = 60
ORDERS_PER_DAY = 150


def customers_csv() -> bytes:
    rng = random.Random("customers")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "name", "country", "signup_date"])
    for cid in range(1, CUSTOMERS + 1):
        signup = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(600))
        writer.writerow([cid, f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(COUNTRIES), signup.isoformat()])
    return out.getvalue().encode()


def orders_csv(day: dt.date) -> bytes:
    """One day's orders, with the defects a cleaning step must handle: duplicates (a later
    correction of the same order), missing customers and non-positive amounts."""
    rng = random.Random(f"orders-{day.isoformat()}")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order_id", "customer_id", "order_ts", "amount", "status"])
    base_id = (day - dt.date(2026, 1, 1)).days * 10_000
    for i in range(ORDERS_PER_DAY):
        ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86_400 - 3_600))
        customer = "" if rng.random() < 0.02 else str(rng.randrange(1, CUSTOMERS + 1))
        amount = round(rng.uniform(5, 400), 2) if rng.random() > 0.02 else -1.0
        status = rng.choice(("completed", "completed", "completed", "pending", "cancelled", "refunded", "Completed "))
        writer.writerow([base_id + i, customer, ts.isoformat(sep=" "), amount, status])
        if rng.random() < 0.03:  # a correction arriving later the same day
            writer.writerow(
                [
                    base_id + i,
                    customer,
                    (ts + dt.timedelta(minutes=30)).isoformat(sep=" "),
                    round(amount * 0.9, 2),
                    "completed",
                ]
            )
    return out.getvalue().encode()


def demo_days(today: dt.date | None = None, count: int = 3) -> list[dt.date]:
    """The last `count` complete days before today."""
    today = today or dt.date.today()
    return [today - dt.timedelta(days=n) for n in range(count, 0, -1)]
