"""Dagster's production setup for the demo code location (README "Deploying").

`dagster.yaml` is the instance: runs, event log, schedules, sensor ticks and cursors on PostgreSQL,
read from `DAGSTER_PG_*`; the daemon drains the run queue and evaluates schedules and sensors.
`workspace.yaml` points the webserver and the daemon at a code server over gRPC, so the code
location runs (and is redeployed) as a process of its own. Only the code server and the run
workers it starts see the Databricks settings.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

DAGSTER_YAML = _HERE / "dagster.yaml"
WORKSPACE_YAML = _HERE / "workspace.yaml"

# What every Dagster process of the deployment reads from its environment.
INSTANCE_ENV_VARS = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
)
# What the webserver and the daemon need to reach the code server.
CODE_SERVER_ENV_VARS = ("DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT")
