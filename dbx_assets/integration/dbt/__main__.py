"""`python -m dbx_assets.integration.dbt prepare --project-dir DIR`: build a dbt project's manifest.

Imports only dbt (never Dagster), so `make setup` stays quick."""

import sys

from dbx_assets.integration.dbt.manifest import main

sys.exit(main())
