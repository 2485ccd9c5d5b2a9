"""`python -m dbx_assets.local_workspace serve|stop|status|login-url --state-dir DIR` and `... delta-jars`
(console script dbx-local-workspace)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dbx-local-workspace", description="A local Databricks workspace (REST API + local Spark clusters)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server in the foreground until SIGTERM/SIGINT")
    serve.add_argument("--state-dir", required=True, type=Path)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--tls", action="store_true", help="serve https with a self-signed certificate in DIR/tls/")
    faults = serve.add_argument_group(
        "fault injection (override DIR/faults.json; change live via PUT /api/2.0/local/faults)"
    )
    faults.add_argument("--fault-rate-limit", type=float, metavar="SHARE", help="share of calls answered 429")
    faults.add_argument("--fault-server-error", type=float, metavar="SHARE", help="share answered 500/503")
    faults.add_argument("--fault-latency-ms", type=int, metavar="MS", help="latency added to every call")
    faults.add_argument("--fault-drop", type=float, metavar="SHARE", help="share dropped before taking effect")
    faults.add_argument(
        "--fault-drop-after",
        type=float,
        metavar="SHARE",
        help="share of mutating calls dropped after taking effect (lost responses)",
    )
    faults.add_argument(
        "--fault-cluster-start-fail",
        type=float,
        nargs="?",
        const=1.0,
        metavar="SHARE",
        help="share of cluster starts that fail (default 1 when given without a value)",
    )
    faults.add_argument(
        "--fault-clock-offset",
        type=float,
        dest="fault_clock_offset_seconds",
        metavar="SECONDS",
        help="shift every timestamp the workspace reports by SECONDS (clock skew; may be negative)",
    )
    faults.add_argument("--fault-seed", type=int, help="RNG seed, to replay a failing run")
    faults.add_argument(
        "--fault-endpoint",
        action="append",
        dest="fault_endpoints",
        metavar="REGEX",
        help="fault only paths matching REGEX (repeatable)",
    )
    for name in ("stop", "status"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True, type=Path)
    login = sub.add_parser(
        "login-url", help="print a one-time link (valid 5 minutes) that logs a browser into the pages"
    )
    login.add_argument("--state-dir", required=True, type=Path)
    login.add_argument("--path", default="/", help="the page to land on, e.g. /jobs/1000/runs/100001")
    sub.add_parser("delta-jars", help="fetch Delta Lake's jars for the local clusters into the per-machine cache")
    args = parser.parse_args(argv)
    if args.command == "delta-jars":
        return _delta_jars()
    if args.command == "login-url":
        return _login_url(args.state_dir, args.path)

    if args.command == "serve":
        return _serve(args.state_dir, args.port, args.tls, _fault_settings(args))
    from .launcher import healthy, stop

    if args.command == "stop":
        print("stopped" if stop(args.state_dir) else "not running")
        return 0
    conn = healthy(args.state_dir.resolve())
    print(json.dumps({"running": conn is not None, **({"host": conn.host} if conn else {})}))
    return 0 if conn else 1


def _delta_jars() -> int:
    """`make setup`'s step: resolve the jars (and build the log store) now, so no cluster start fetches."""
    import os

    from .runtime.delta_jars import DELTA_VERSION, DeltaJarsUnavailable
    from .runtime.delta_log_store import driver_jars
    from .runtime.java import JavaNotFound, java_env

    try:
        env = {**os.environ}
        env.update(java_env(env))
        paths = driver_jars(env)
    except (JavaNotFound, DeltaJarsUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Delta Lake {DELTA_VERSION} jars: {os.pathsep.join(str(p) for p in paths)}")
    return 0


def _login_url(state_dir: Path, path: str) -> int:
    from .launcher import login_url

    url = login_url(state_dir, path)
    if url is None:
        print("error: no local workspace is running with this state dir", file=sys.stderr)
        return 1
    print(url)
    return 0


# The `serve --fault-*` flags, by the FaultConfig field each sets.
FAULT_FLAGS = (
    "rate_limit",
    "server_error",
    "latency_ms",
    "drop",
    "drop_after",
    "cluster_start_fail",
    "seed",
    "endpoints",
    "clock_offset_seconds",
)


def _fault_settings(args: argparse.Namespace) -> dict:
    return {n: getattr(args, "fault_" + n) for n in FAULT_FLAGS if getattr(args, "fault_" + n, None) is not None}


def _serve(state_dir: Path, port: int | None, tls: bool, fault_flags: dict | None = None) -> int:
    from .app import LocalWorkspace, configure_logging
    from .http.faults import FaultConfig, load_config_file

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(state_dir)
    try:
        faults = FaultConfig.from_dict({**load_config_file(state_dir), **(fault_flags or {})})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ws = LocalWorkspace(state_dir, port=port, tls=tls, faults=faults)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    ws.start()
    ws.write_connection_file()
    print(f"local workspace serving at {ws.host} (state dir {state_dir})", flush=True)
    stopping.wait()
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
