"""The demo graph's partitioning: one partition per landed day of orders."""

import dagster as dg

daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)
