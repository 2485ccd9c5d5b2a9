"""The ingestion patches of a task process, installed after the path and Unity Catalog patches:
Auto Loader (auto_loader.py), read_files / COPY INTO / streaming tables (read_files.py)."""

from __future__ import annotations

from typing import Any


def install_ingestion_patches(spark: Any, mapper: Any, paths: Any) -> None:
    from .auto_loader import install_auto_loader_patches

    install_auto_loader_patches(mapper)
    from .read_files import install_read_files_patches

    install_read_files_patches(spark, mapper, paths.warehouse)
