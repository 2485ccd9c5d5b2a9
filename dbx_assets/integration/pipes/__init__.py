"""Dagster Pipes inside a workflow's one shared Databricks run: each pipes-enabled task gets its own
context file and message channel (DBFS or a Unity Catalog volume), read by the step per task."""

from dbx_assets.integration.pipes.layout import CHANNEL_PARAMETER, DEFAULT_PIPES_ROOT, PipesLocation
from dbx_assets.integration.pipes.session import PipesChannels

__all__ = ["CHANNEL_PARAMETER", "DEFAULT_PIPES_ROOT", "PipesChannels", "PipesLocation"]
