"""dbx_assets: Databricks notebooks and dbt models as Dagster assets, any selection of them one
Databricks run on shared job clusters.

The public API is what this package exports (`__all__`); everything under `dbx_assets.integration`
that is not exported here is internal and may change::

    from dbx_assets import DatabricksResource, NotebookAsset, NotebookTasks, Workflow, build_workflow_assets

Names load on first use (PEP 562): `import dbx_assets` itself imports nothing, so the local
workspace's server and cluster processes, which live under this package, never pay for Dagster, the
Databricks SDK or dbt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "CHANNEL_PARAMETER",
    "DEFAULT_CLUSTER_SPEC",
    "DEFAULT_PIPES_ROOT",
    "TRIGGER_COUNT_TAG",
    "TRIGGER_FILE_TAG",
    "BundleError",
    "DatabricksBundle",
    "DatabricksBundleComponent",
    "DatabricksJobs",
    "DatabricksJobsComponent",
    "DatabricksResource",
    "DatabricksResourceComponent",
    "DatabricksWorkflowComponent",
    "DbtManifestError",
    "DbtProjectTasks",
    "DeploymentNameError",
    "JobSnapshotError",
    "NotebookAsset",
    "NotebookFileError",
    "NotebookProps",
    "NotebookTasks",
    "NotebookTranslator",
    "PipesLocation",
    "PythonFileAsset",
    "PythonFileTasks",
    "PythonWheelAsset",
    "PythonWheelTasks",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkspaceConnectionError",
    "build_file_sensor",
    "build_workflow_assets",
    "serverless_environment",
]

if TYPE_CHECKING:
    from dbx_assets.integration.bundles.bundle import DatabricksBundle
    from dbx_assets.integration.bundles.config import BundleError
    from dbx_assets.integration.components.databricks import (
        DatabricksBundleComponent,
        DatabricksJobsComponent,
        DatabricksResourceComponent,
        DatabricksWorkflowComponent,
    )
    from dbx_assets.integration.dbt.manifest import DbtManifestError
    from dbx_assets.integration.dbt.source import DbtProjectTasks
    from dbx_assets.integration.deployment import DeploymentNameError
    from dbx_assets.integration.existing_jobs.jobs import DatabricksJobs
    from dbx_assets.integration.existing_jobs.snapshot import JobSnapshotError
    from dbx_assets.integration.file_sensor import TRIGGER_COUNT_TAG, TRIGGER_FILE_TAG, build_file_sensor
    from dbx_assets.integration.jobs.model import DEFAULT_CLUSTER_SPEC, WorkflowDefinitionError, serverless_environment
    from dbx_assets.integration.resource import DatabricksResource, WorkspaceConnectionError
    from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookProps, NotebookTasks, NotebookTranslator
    from dbx_assets.integration.sources.notebook_file import NotebookFileError
    from dbx_assets.integration.sources.pipes_layout import CHANNEL_PARAMETER, DEFAULT_PIPES_ROOT, PipesLocation
    from dbx_assets.integration.sources.python_file import PythonFileAsset, PythonFileTasks
    from dbx_assets.integration.sources.python_wheel import PythonWheelAsset, PythonWheelTasks
    from dbx_assets.integration.workflow.assets import build_workflow_assets
    from dbx_assets.integration.workflow.definition import Workflow
else:
    import importlib

    # name -> the module defining it (the same as the imports above: tests/test_public_api.py checks)
    _EXPORTS = {
        "DatabricksBundle": "dbx_assets.integration.bundles.bundle",
        "BundleError": "dbx_assets.integration.bundles.config",
        "DatabricksBundleComponent": "dbx_assets.integration.components.databricks",
        "DatabricksJobsComponent": "dbx_assets.integration.components.databricks",
        "DatabricksResourceComponent": "dbx_assets.integration.components.databricks",
        "DatabricksWorkflowComponent": "dbx_assets.integration.components.databricks",
        "DbtManifestError": "dbx_assets.integration.dbt.manifest",
        "DbtProjectTasks": "dbx_assets.integration.dbt.source",
        "DeploymentNameError": "dbx_assets.integration.deployment",
        "DatabricksJobs": "dbx_assets.integration.existing_jobs.jobs",
        "JobSnapshotError": "dbx_assets.integration.existing_jobs.snapshot",
        "TRIGGER_COUNT_TAG": "dbx_assets.integration.file_sensor",
        "TRIGGER_FILE_TAG": "dbx_assets.integration.file_sensor",
        "build_file_sensor": "dbx_assets.integration.file_sensor",
        "DEFAULT_CLUSTER_SPEC": "dbx_assets.integration.jobs.model",
        "WorkflowDefinitionError": "dbx_assets.integration.jobs.model",
        "serverless_environment": "dbx_assets.integration.jobs.model",
        "DatabricksResource": "dbx_assets.integration.resource",
        "WorkspaceConnectionError": "dbx_assets.integration.resource",
        "NotebookAsset": "dbx_assets.integration.sources.notebook",
        "NotebookProps": "dbx_assets.integration.sources.notebook",
        "NotebookTasks": "dbx_assets.integration.sources.notebook",
        "NotebookTranslator": "dbx_assets.integration.sources.notebook",
        "NotebookFileError": "dbx_assets.integration.sources.notebook_file",
        "CHANNEL_PARAMETER": "dbx_assets.integration.sources.pipes_layout",
        "DEFAULT_PIPES_ROOT": "dbx_assets.integration.sources.pipes_layout",
        "PipesLocation": "dbx_assets.integration.sources.pipes_layout",
        "PythonFileAsset": "dbx_assets.integration.sources.python_file",
        "PythonFileTasks": "dbx_assets.integration.sources.python_file",
        "PythonWheelAsset": "dbx_assets.integration.sources.python_wheel",
        "PythonWheelTasks": "dbx_assets.integration.sources.python_wheel",
        "build_workflow_assets": "dbx_assets.integration.workflow.assets",
        "Workflow": "dbx_assets.integration.workflow.definition",
    }

    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'dbx_assets' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
