"""`python -m dbx_assets.demo seed|drop|run` — the demo's data and its headless run.

seed   upload customers and the last few days of orders (with `_SUCCESS` markers) to the
       workspace the resource is configured for (the embedded local one by default)
drop   land one more day's file, e.g. to watch the landing sensor trigger a run
run    materialize every asset for the latest landed day and print a summary; exit 1 on failure
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from dbx_assets.demo.data import demo_days
from dbx_assets.demo.landing import land_customers, land_day


def _resource():
    from dbx_assets.demo.definitions import databricks_resource

    return databricks_resource


def seed(days: int) -> list[dt.date]:
    client = _resource().get_client()
    land_customers(client)
    landed = demo_days(count=days)
    for day in landed:
        land_day(client, day)
    print(f"Landed customers and {len(landed)} day(s) of orders: {landed[0]} .. {landed[-1]}")
    return landed


def drop(day: dt.date) -> None:
    marker = land_day(_resource().get_client(), day)
    print(f"Landed orders for {day}: {marker}")


def run(partition_key: str | None) -> int:
    from dbx_assets.demo.headless import materialize_all

    return materialize_all(partition_key or demo_days(count=1)[-1].isoformat())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbx_assets.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_seed = sub.add_parser("seed", help="land customers and recent days of orders")
    p_seed.add_argument("--days", type=int, default=3)
    p_drop = sub.add_parser("drop", help="land one day's orders (default: today)")
    p_drop.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    p_run = sub.add_parser("run", help="materialize every asset headlessly and print a summary")
    p_run.add_argument("--partition", default=None, help="YYYY-MM-DD (default: yesterday)")
    args = parser.parse_args(argv)
    if args.command == "seed":
        seed(args.days)
        return 0
    if args.command == "drop":
        drop(args.date)
        return 0
    return run(args.partition)


if __name__ == "__main__":
    sys.exit(main())
