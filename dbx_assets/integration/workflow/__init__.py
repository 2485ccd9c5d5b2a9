"""The Dagster-facing workflow: task sources declared as one job (`definition`), checked against
Databricks' limits (`limits`), built as one subsettable multi-asset (`assets`) whose step deploys,
runs and reports it (`execution`) with a DBU estimate per task (`cost`). The Jobs API side is in
`integration.jobs`."""
