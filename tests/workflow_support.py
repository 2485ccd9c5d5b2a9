"""A small test workflow over tests/notebooks, shared by the workflow tests.

Graph:  source ──► flaky ──► sink        slow (independent)
`flaky` fails while its flag file exists in DBFS; `slow` sleeps for its `seconds` param.
Names come from env vars so that `dg.reconstructable(test_job)` rebuilds the same job in
another process (Dagster re-execution needs a reconstructable job).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

NOTEBOOKS = Path(__file__).parent / "notebooks"
ENV_NAME = "DBX_TEST_WORKFLOW_NAME"
ENV_SLOW = "DBX_TEST_SLOW_SECONDS"


def new_name() -> str:
    return "t" + uuid.uuid4().hex[:10]


def flag_dbfs_path(name: str) -> str:
    return f"dbfs:/tmp/{name}/fail"


def make_workflow(name: str, slow_seconds: int = 1, notebooks_dir: Path = NOTEBOOKS, compute: str = "job_cluster") -> Workflow:
    return Workflow(
        name=name,
        compute=compute,
        sources=[notebook_tasks(name, slow_seconds, notebooks_dir)],
    )


def notebook_tasks(name: str, slow_seconds: int = 1, notebooks_dir: Path = NOTEBOOKS) -> NotebookTasks:
    return NotebookTasks(
        [
            NotebookAsset(key=f"{name}/source", notebook="source.py", params={"table": f"default.{name}_source"}),
            NotebookAsset(key=f"{name}/flaky", notebook="flaky.py", deps=[f"{name}/source"],
                          params={"flag": "/dbfs/tmp/" + name + "/fail"}),
            NotebookAsset(key=f"{name}/sink", notebook="sink.py", deps=[f"{name}/flaky"]),
            NotebookAsset(key=f"{name}/slow", notebook="slow.py", params={"seconds": str(slow_seconds)}),
        ],
        notebooks_dir=notebooks_dir,
    )


def make_resource(state_dir: Path | str, name: str) -> DatabricksResource:
    return DatabricksResource(local_state_dir=str(state_dir), workspace_root=f"/Shared/tests/{name}")


def make_assets(name: str, slow_seconds: int = 1, partitioned: bool = False) -> dg.AssetsDefinition:
    return build_workflow_assets(
        make_workflow(name, slow_seconds),
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
    )


def build_test_job() -> dg.JobDefinition:
    """Rebuilt from env vars in whichever process executes it (see module doc)."""
    name = os.environ[ENV_NAME]
    assets = make_assets(name, int(os.environ.get(ENV_SLOW, "1")))
    defs = dg.Definitions(
        assets=[assets],
        resources={"databricks": make_resource(os.environ["DBX_LOCAL_STATE_DIR"], name)},
        jobs=[dg.define_asset_job("test_job", selection=dg.AssetSelection.all())],
    )
    return defs.resolve_job_def("test_job")


def key(name: str, asset: str) -> dg.AssetKey:
    return dg.AssetKey([name, asset])


def materialization_metadata(result, asset_key: dg.AssetKey) -> dict:
    """The plain metadata values of an asset's last materialization in a run result."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == asset_key]
    assert events, f"{asset_key.to_user_string()} was not materialized"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def step_failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.step_failure_data.error.message
