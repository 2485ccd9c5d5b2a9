"""`python -m dbx_assets.demo seed|drop|run|dev|stop` — the demo's data, its headless run and `make dev`.

seed   upload customers and the last few days of orders (with `_SUCCESS` markers) to the
       workspace the resource is configured for (the embedded local one by default); days
       already landed are left alone, so the landing sensor does not rebuild them
drop   land one more day's file, e.g. to watch the landing sensor trigger a run
run    materialize every asset for the latest landed day and print a summary; exit 1 on failure
dev    what `make dev` runs: seed, then `dagster dev` in its own process group until Ctrl-C or
       `stop`, then stop everything it started (the local workspace and its clusters included)
stop   stop a running `dev` from another shell (what `make stop` runs)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from dbx_assets.demo.data import demo_days
from dbx_assets.demo.seeding import drop, seed


def run(partition_key: str | None) -> int:
    from dbx_assets.demo.headless import materialize_all

    return materialize_all(partition_key or demo_days(count=1)[-1].isoformat())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dbx_assets.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_seed = sub.add_parser("seed", help="land customers and recent days of orders")
    p_seed.add_argument("--days", type=int, default=3)
    p_drop = sub.add_parser("drop", help="land one day's orders (default: yesterday, landed again)")
    p_drop.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today() - dt.timedelta(days=1))
    p_run = sub.add_parser("run", help="materialize every asset headlessly and print a summary")
    p_run.add_argument("--partition", default=None, help="YYYY-MM-DD (default: yesterday)")
    p_dev = sub.add_parser("dev", help="seed and run `dagster dev` until Ctrl-C; then stop everything it started")
    p_dev.add_argument("--host", default="127.0.0.1")
    p_dev.add_argument("--port", type=int, default=3000)
    p_dev.add_argument("--pool-limit", type=int, default=1, help="the `databricks` pool's limit in a new DAGSTER_HOME")
    sub.add_parser("stop", help="stop a running `dev` (from another shell)")
    args = parser.parse_args(argv)
    if args.command == "dev":
        from dbx_assets.demo.dev import run_dev

        return run_dev(host=args.host, port=args.port, pool_limit=args.pool_limit)
    if args.command == "stop":
        from dbx_assets.demo.dev import stop_dev

        return stop_dev()
    if args.command == "seed":
        seed(args.days)
        return 0
    if args.command == "drop":
        drop(args.date)
        return 0
    return run(args.partition)


if __name__ == "__main__":
    sys.exit(main())
