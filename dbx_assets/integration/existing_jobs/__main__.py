"""`python -m dbx_assets.integration.existing_jobs snapshot ...`: see cli.py."""

import sys

from dbx_assets.integration.existing_jobs.cli import main

sys.exit(main())
