"""`python -m dbx_assets.integration.existing_jobs snapshot --job NAME [--job-id ID] [--job-pattern GLOB]
--output FILE`: write the named jobs' definitions to FILE for `DatabricksJobs(FILE)`.

The workspace is the one the code location uses: DATABRICKS_HOST with DATABRICKS_TOKEN (or OAuth
M2M, or DATABRICKS_CONFIG_PROFILE), else the embedded local workspace, as `DatabricksResource()`
finds it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dbx_assets.integration.existing_jobs.snapshot import (
    CLI_MODULE,
    JobSnapshotError,
    Snapshot,
    take_snapshot,
    write_snapshot,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {CLI_MODULE}", description="Existing Databricks jobs as assets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("snapshot", help="write the named jobs' definitions (jobs/get) to a JSON file")
    p.add_argument("--job", action="append", default=[], metavar="NAME", help="a job's exact name (repeatable)")
    p.add_argument("--job-id", action="append", default=[], type=int, metavar="ID", help="a job id (repeatable)")
    p.add_argument(
        "--job-pattern", action="append", default=[], metavar="GLOB", help="jobs whose name matches, e.g. 'sales_*'"
    )
    p.add_argument("--output", type=Path, required=True, help="the snapshot file, e.g. databricks_jobs.json")
    args = parser.parse_args(argv)
    selectors = [f"--job {shlex.quote(n)}" for n in args.job]
    selectors += [f"--job-id {i}" for i in args.job_id]
    selectors += [f"--job-pattern {shlex.quote(g)}" for g in args.job_pattern]
    from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError

    resource = DatabricksResource()
    try:
        with resource.explained_connection_errors():
            client = resource.get_client()
            jobs = take_snapshot(client, names=args.job, job_ids=args.job_id, name_patterns=args.job_pattern)
    except (JobSnapshotError, WorkspaceConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    host = (client.config.host or "").rstrip("/")
    path = write_snapshot(args.output, Snapshot(host=host, selectors=tuple(selectors), jobs=tuple(jobs)))
    for job in jobs:
        print(f"{job.name} ({job.job_id}): {len(job.tasks)} task(s)")
    print(f"job snapshot written: {path}")
    return 0
