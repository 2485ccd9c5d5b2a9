"""Dagster Pipes inside a workflow's one shared Databricks run: each pipes-enabled task gets its own
context file and message channel (DBFS or a Unity Catalog volume), read by the step per task."""

from dbx_assets.integration.pipes.session import PipesChannels
from dbx_assets.integration.sources.pipes_layout import CHANNEL_PARAMETER, DEFAULT_PIPES_ROOT, PipesLocation

__all__ = ["CHANNEL_PARAMETER", "DEFAULT_PIPES_ROOT", "PipesChannels", "PipesLocation"]
