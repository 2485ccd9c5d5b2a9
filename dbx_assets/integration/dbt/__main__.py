"""`python -m dbx_assets.integration.dbt prepare --project-dir DIR [--target T] [--if-stale]`:
build a dbt project's manifest (see `manifest.py`).

Imports only dbt, and only when it has to parse (never Dagster), so `make setup` stays quick."""

import sys

from dbx_assets.integration.dbt.manifest import main

sys.exit(main())
