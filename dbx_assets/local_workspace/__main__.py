"""`python -m dbx_assets.local_workspace serve|stop|status --state-dir DIR` (console script dbx-local-workspace)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dbx-local-workspace", description="A local Databricks workspace (REST API + local Spark clusters).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server in the foreground until SIGTERM/SIGINT")
    serve.add_argument("--state-dir", required=True, type=Path)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--tls", action="store_true", help="serve https with a self-signed certificate in DIR/tls/")
    for name in ("stop", "status"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args.state_dir, args.port, args.tls)
    from .launcher import healthy, stop

    if args.command == "stop":
        print("stopped" if stop(args.state_dir) else "not running")
        return 0
    conn = healthy(args.state_dir.resolve())
    print(json.dumps({"running": conn is not None, **({"host": conn.host} if conn else {})}))
    return 0 if conn else 1


def _serve(state_dir: Path, port: int | None, tls: bool) -> int:
    from .app import LocalWorkspace, configure_logging

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(state_dir)
    ws = LocalWorkspace(state_dir, port=port, tls=tls)
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
