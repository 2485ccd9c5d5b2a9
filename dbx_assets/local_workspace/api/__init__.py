"""The Databricks REST APIs, one module per API: HTTP handlers over the engine."""
