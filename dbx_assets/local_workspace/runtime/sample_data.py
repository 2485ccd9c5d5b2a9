"""Databricks' sample data, generated locally: the read-only `samples` catalog (`samples.nyctaxi.trips`,
`samples.tpch.{nation, customer, orders, lineitem}`) and `/databricks-datasets/` paths tutorials and
templates read (`retail-org/sales_orders/`, `nyctaxi/tripdata/yellow/`).

Nothing is copied from Databricks: rows come from a seeded `random.Random`, so every workspace gets
the same few thousand rows, with the column names and types Databricks documents. Files are
written once per workspace state dir by pure Python (CSV and JSON, milliseconds, no Spark job):
the tables under `<state>/samples/`, the datasets under `<dbfs>/databricks-datasets/`. Each task
process registers the tables in its cluster's catalog as external CSV tables with explicit
schemas (DDL only, no inference job) in databases `samples__nyctaxi` / `samples__tpch` located
outside the warehouse (the catalog sync leaves them alone). Writes to `samples.*` are refused.
"""

from __future__ import annotations

import calendar
import contextlib
import csv
import gzip
import io
import json
import os
import random
import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

VERSION = "1"
CATALOG = "samples"

# Column names and types as Databricks documents them.
TABLES: dict[tuple[str, str], str] = {
    ("nyctaxi", "trips"): (
        "tpep_pickup_datetime TIMESTAMP, tpep_dropoff_datetime TIMESTAMP, trip_distance DOUBLE, "
        "fare_amount DOUBLE, pickup_zip INT, dropoff_zip INT"
    ),
    ("tpch", "nation"): "n_nationkey BIGINT, n_name STRING, n_regionkey BIGINT, n_comment STRING",
    ("tpch", "customer"): (
        "c_custkey BIGINT, c_name STRING, c_address STRING, c_nationkey BIGINT, c_phone STRING, "
        "c_acctbal DECIMAL(18,2), c_mktsegment STRING, c_comment STRING"
    ),
    ("tpch", "orders"): (
        "o_orderkey BIGINT, o_custkey BIGINT, o_orderstatus STRING, o_totalprice DECIMAL(18,2), o_orderdate DATE, "
        "o_orderpriority STRING, o_clerk STRING, o_shippriority INT, o_comment STRING"
    ),
    ("tpch", "lineitem"): (
        "l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, l_quantity DECIMAL(18,2), "
        "l_extendedprice DECIMAL(18,2), l_discount DECIMAL(18,2), l_tax DECIMAL(18,2), l_returnflag STRING, "
        "l_linestatus STRING, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct STRING, "
        "l_shipmode STRING, l_comment STRING"
    ),
}
NATIONS = [
    ("ALGERIA", 0), ("ARGENTINA", 1), ("BRAZIL", 1), ("CANADA", 1), ("EGYPT", 4), ("ETHIOPIA", 0), ("FRANCE", 3),
    ("GERMANY", 3), ("INDIA", 2), ("INDONESIA", 2), ("IRAN", 4), ("IRAQ", 4), ("JAPAN", 2), ("JORDAN", 4),
    ("KENYA", 0), ("MOROCCO", 0), ("MOZAMBIQUE", 0), ("PERU", 1), ("CHINA", 2), ("ROMANIA", 3),
    ("SAUDI ARABIA", 4), ("VIETNAM", 2), ("RUSSIA", 3), ("UNITED KINGDOM", 3), ("UNITED STATES", 1),
]  # fmt: skip
_WORDS = [
    "quickly",
    "furiously",
    "carefully",
    "final",
    "pending",
    "regular",
    "express",
    "special",
    "ironic",
    "bold",
    "silent",
    "even",
    "blithely",
]
_SEGMENTS = ["AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY"]
_PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
_SHIPMODES = ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"]
_INSTRUCT = ["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"]
_ZIPS = [10001, 10003, 10011, 10013, 10016, 10019, 10021, 10023, 10028, 10036, 10065, 10075, 11101, 11201, 11371]
_PRODUCTS = [
    ("AVpfEf_y2n9GcyzkZbu4", "Standard Toaster", 1090),
    ("AVpe6jFBilAPnD_xQxO2", "Premium Blender", 2450),
    ("AVpfPaoqLJeJML435Xk9", "Wireless Speaker", 3299),
    ("AVpgdkC8ilAPnD_xsvyi", "Ultra HD Television", 49900),
    ("AVpf2tw1ilAPnD_xjflC", "Smart Thermostat", 12900),
    ("AVpfo9ukilAPnD_xfhuj", "Noise Cancelling Headphones", 19999),
]
CUSTOMERS, ORDERS, TRIPS, SALES_ORDERS = 300, 1500, 3000, 1000


def _comment(rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _write_csv(path: Path, header: list[str] | None, rows: list[list[Any]], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def generate(root: Path, datasets: Path) -> None:
    """Write every sample table under `root/<schema>/<table>/` and the datasets under `datasets`."""
    rng = random.Random(20240101)
    _write_csv(
        root / "tpch/nation/part-00000.csv", None, [[i, n, r, _comment(rng)] for i, (n, r) in enumerate(NATIONS)]
    )
    customers = [
        [
            k,
            f"Customer#{k:09d}",
            _comment(rng, 2).replace(" ", ","),
            rng.randrange(25),
            f"{rng.randint(10, 34)}-{rng.randint(100, 999)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            f"{rng.uniform(-999.99, 9999.99):.2f}",
            rng.choice(_SEGMENTS),
            _comment(rng),
        ]
        for k in range(1, CUSTOMERS + 1)
    ]
    _write_csv(root / "tpch/customer/part-00000.csv", None, customers)
    orders, lines = [], []
    start = date(1992, 1, 1)
    for i in range(1, ORDERS + 1):
        key = i * 4 - 3  # TPC-H order keys are sparse
        ordered = start + timedelta(days=rng.randrange(2400))
        total = 0.0
        for n in range(1, rng.randint(1, 7) + 1):
            qty = rng.randint(1, 50)
            price = round(qty * rng.uniform(900, 2000), 2)
            discount, tax = rng.randint(0, 10) / 100, rng.randint(0, 8) / 100
            total += price * (1 - discount) * (1 + tax)
            ship = ordered + timedelta(days=rng.randint(1, 121))
            lines.append(
                [
                    key,
                    rng.randint(1, 20000),
                    rng.randint(1, 1000),
                    n,
                    f"{qty:.2f}",
                    f"{price:.2f}",
                    f"{discount:.2f}",
                    f"{tax:.2f}",
                    rng.choice("NRA"),
                    rng.choice("OF"),
                    ship.isoformat(),
                    (ordered + timedelta(days=rng.randint(30, 90))).isoformat(),
                    (ship + timedelta(days=rng.randint(1, 30))).isoformat(),
                    rng.choice(_INSTRUCT),
                    rng.choice(_SHIPMODES),
                    _comment(rng, 3),
                ]  # fmt: skip
            )
        orders.append(
            [
                key,
                rng.randint(1, CUSTOMERS),
                rng.choice("OFP"),
                f"{total:.2f}",
                ordered.isoformat(),
                rng.choice(_PRIORITIES),
                f"Clerk#{rng.randint(1, 1000):09d}",
                0,
                _comment(rng),
            ]  # fmt: skip
        )
    _write_csv(root / "tpch/orders/part-00000.csv", None, orders)
    _write_csv(root / "tpch/lineitem/part-00000.csv", None, lines)

    trips, yellow = [], []
    t0 = datetime(2016, 1, 1)
    for _ in range(TRIPS):
        pickup = t0 + timedelta(seconds=rng.randrange(60 * 86400))
        distance = round(rng.expovariate(1 / 2.8), 2)
        dropoff = pickup + timedelta(seconds=int(120 + distance * rng.uniform(150, 400)))
        fare = round(2.5 + distance * 2.5 + rng.choice([0, 0.5, 1.0]), 1)
        pu, do = rng.choice(_ZIPS), rng.choice(_ZIPS)
        trips.append([f"{pickup:%Y-%m-%d %H:%M:%S}", f"{dropoff:%Y-%m-%d %H:%M:%S}", distance, fare, pu, do])
        tip = round(fare * rng.choice([0, 0.15, 0.2]), 2)
        yellow.append(
            [
                rng.choice([1, 2]),
                trips[-1][0],
                trips[-1][1],
                rng.randint(1, 4),
                distance,
                1,
                "N",
                rng.randint(1, 263),
                rng.randint(1, 263),
                rng.choice([1, 2]),
                fare,
                0.5,
                0.5,
                tip,
                0,
                0.3,
                round(fare + 1.3 + tip, 2),
            ]  # fmt: skip
        )
    _write_csv(root / "nyctaxi/trips/part-00000.csv", None, trips)
    yellow_header = [
        "VendorID",
        "tpep_pickup_datetime",
        "tpep_dropoff_datetime",
        "passenger_count",
        "trip_distance",
        "RatecodeID",
        "store_and_fwd_flag",
        "PULocationID",
        "DOLocationID",
        "payment_type",
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "total_amount",
    ]
    _write_csv(datasets / "nyctaxi/tripdata/yellow/yellow_tripdata_2016-01.csv.gz", yellow_header, yellow, gz=True)

    folder = datasets / "retail-org/sales_orders"
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    base = calendar.timegm((2019, 8, 1, 0, 0, 0))  # unix seconds, whatever the local time zone
    for i in range(SALES_ORDERS):
        customer = rng.randint(1, CUSTOMERS)
        products = []
        for _ in range(rng.randint(1, 4)):
            pid, name, price = rng.choice(_PRODUCTS)
            products.append(
                {
                    "curr": "USD",
                    "id": pid,
                    "name": name,
                    "price": price,
                    "promotion_info": None,
                    "qty": rng.randint(1, 3),
                    "unit": "pcs",
                }  # fmt: skip
            )
        records.append(
            {
                "clicked_items": [[p["id"], str(rng.randint(100, 900))] for p in products],
                "customer_id": str(customer),
                "customer_name": f"CUSTOMER {customer:05d}",
                "number_of_line_items": str(len(products)),
                "order_datetime": str(base + rng.randrange(90 * 86400)),
                "order_number": 1000 + i,
                "ordered_products": products,
                "promo_info": None,
            }
        )
    for part in range(4):  # a few files, as the public dataset has
        chunk = records[part::4]
        (folder / f"part-{part:05d}.json").write_text("".join(json.dumps(r) + "\n" for r in chunk))


def ensure_generated(state_dir: Path, dbfs: Path) -> Path:
    """The sample tables' root, generated on first use (atomically: a concurrent task sees all or nothing)."""
    root = state_dir / "samples"
    marker = root / f".generated-v{VERSION}"
    if marker.exists():
        return root
    staging = state_dir / f".samples.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    generate(staging / "tables", staging / "databricks-datasets")
    (staging / "tables" / marker.name).write_text(VERSION)
    datasets = dbfs / "databricks-datasets"
    if not datasets.exists():
        datasets.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another task got there first
            os.rename(staging / "databricks-datasets", datasets)
    with contextlib.suppress(OSError):
        os.rename(staging / "tables", root)
    shutil.rmtree(staging, ignore_errors=True)
    return root


def register(spark: Any, root: Path, registry: Any) -> None:
    """The `samples` catalog in the registry and its tables in this cluster's catalog (DDL only)."""
    if CATALOG not in registry.names():
        registry.create(CATALOG, "Databricks sample data, generated locally (read-only)")
    jcatalog = spark._jsparkSession.catalog()
    for (schema, table), columns in TABLES.items():
        database = f"{CATALOG}__{schema}"
        if jcatalog.tableExists(database, table):
            continue
        from .uc_names import quote

        location = (root / schema).as_uri()
        spark._jsparkSession.sql(f"CREATE DATABASE IF NOT EXISTS {quote(database)} LOCATION '{location}'")
        spark._jsparkSession.sql(
            f"CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(table)} ({columns}) USING csv "
            f"OPTIONS (header 'false') LOCATION '{(root / schema / table).as_uri()}'"
        )


_WRITES = re.compile(
    r"^\s*(?:INSERT\s+(?:INTO|OVERWRITE)(?:\s+TABLE)?|CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW|SCHEMA|DATABASE)"
    r"(?:\s+IF\s+NOT\s+EXISTS)?|DROP\s+(?:TABLE|VIEW|SCHEMA|DATABASE)(?:\s+IF\s+EXISTS)?|ALTER\s+TABLE|"
    r"DELETE\s+FROM|UPDATE|MERGE\s+INTO|TRUNCATE\s+TABLE|COPY\s+INTO)\s+`?samples`?\s*\.",
    re.I,
)


class ReadOnlySamples(PermissionError):
    pass


def refuse_writes(text: str) -> None:
    """Raise for a statement that writes to the `samples` catalog, as Databricks refuses it."""
    if _WRITES.match(re.sub(r"^\s*(?:--[^\n]*\n\s*)*", "", text)):
        raise ReadOnlySamples(
            "[PERMISSION_DENIED] The catalog 'samples' is read-only: Databricks' sample data (generated locally) "
            "cannot be written. Write to a catalog of your own, e.g. main."
        )


def refuses_table(name: Any) -> bool:
    return isinstance(name, str) and name.strip().strip("`").lower().startswith(CATALOG + ".")
