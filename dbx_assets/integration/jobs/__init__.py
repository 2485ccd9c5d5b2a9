"""The Jobs API layer: a Databricks job's spec as data, deploying it, running and watching one run of it,
and tailing its clusters' delivered logs. Knows nothing of Dagster or of task sources; sources, pipes
and the Dagster-facing workflow build on it."""
