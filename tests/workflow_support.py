"""A small test workflow over tests/notebooks, shared by the workflow tests.

Graph:  source ──► flaky ──► sink        slow (independent)
`source` writes ten rows to a file under /dbfs; `flaky` fails while its flag file exists in
DBFS; `slow` sleeps for its `seconds` param. None needs Spark, so they run on the fake runtime.

The resource reaches the workspace the way a real one is reached: DATABRICKS_HOST and
DATABRICKS_TOKEN (as dg.EnvVar, so the token is never in the resource's config). Names come
from arguments so that `reconstructable_test_job(name)` rebuilds the same job wherever Dagster
executes it (re-execution needs a reconstructable job).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import dagster as dg

from dbx_assets.demo.partitions import daily_partitions
from dbx_assets.integration.resource import DatabricksResource
from dbx_assets.integration.sources.notebook import NotebookAsset, NotebookTasks
from dbx_assets.integration.workflow.assets import build_workflow_assets
from dbx_assets.integration.workflow.definition import Workflow

TESTS_DIR = Path(__file__).parent
NOTEBOOKS = TESTS_DIR / "notebooks"
ENV_NAME = "DBX_TEST_WORKFLOW_NAME"
ENV_SLOW = "DBX_TEST_SLOW_SECONDS"
ALL_ASSETS = ("source", "flaky", "sink", "slow")


def new_name() -> str:
    return "t" + uuid.uuid4().hex[:10]


def flag_dbfs_path(name: str) -> str:
    return f"dbfs:/tmp/{name}/fail"


def source_rows_dbfs_path(name: str) -> str:
    return f"dbfs:/tmp/{name}/source_rows.txt"


def make_workflow(
    name: str,
    slow_seconds: int = 1,
    notebooks_dir: Path = NOTEBOOKS,
    compute: str = "job_cluster",
    timeout_seconds: int = 0,
) -> Workflow:
    return Workflow(
        name=name,
        compute=compute,  # type: ignore[arg-type]
        sources=[notebook_tasks(name, slow_seconds, notebooks_dir)],
        timeout_seconds=timeout_seconds,
    )


def notebook_tasks(name: str, slow_seconds: int = 1, notebooks_dir: Path = NOTEBOOKS) -> NotebookTasks:
    return NotebookTasks(
        [
            NotebookAsset(
                key=f"{name}/source", notebook="source.py", params={"out": f"/dbfs/tmp/{name}/source_rows.txt"}
            ),
            NotebookAsset(
                key=f"{name}/flaky",
                notebook="flaky.py",
                deps=[f"{name}/source"],
                params={"flag": "/dbfs/tmp/" + name + "/fail"},
            ),
            NotebookAsset(key=f"{name}/sink", notebook="sink.py", deps=[f"{name}/flaky"]),
            NotebookAsset(key=f"{name}/slow", notebook="slow.py", params={"seconds": str(slow_seconds)}),
        ],
        notebooks_dir=notebooks_dir,
    )


def make_resource(name: str, **kwargs) -> DatabricksResource:
    """The workspace named by DATABRICKS_HOST / DATABRICKS_TOKEN; kwargs override (e.g. a bad token)."""
    kwargs.setdefault("host", dg.EnvVar("DATABRICKS_HOST"))
    kwargs.setdefault("token", dg.EnvVar("DATABRICKS_TOKEN"))
    return DatabricksResource(workspace_root=f"/Shared/tests/{name}", **kwargs)


def make_assets(name: str, slow_seconds: int = 1, partitioned: bool = False, **workflow_kwargs) -> dg.AssetsDefinition:
    return build_workflow_assets(
        make_workflow(name, slow_seconds, **workflow_kwargs),
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
    )


def materialize(
    name: str,
    selection=None,
    *,
    assets: dg.AssetsDefinition | None = None,
    slow_seconds: int = 1,
    resource: DatabricksResource | None = None,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [assets or make_assets(name, slow_seconds)],
        selection=selection,
        resources={"databricks": resource or make_resource(name)},
        raise_on_error=False,
        **kwargs,
    )


def build_test_job(name: str | None = None) -> dg.JobDefinition:
    """Rebuilt by name in whichever process executes it (see module doc)."""
    name = name or os.environ[ENV_NAME]
    defs = dg.Definitions(
        assets=[make_assets(name, int(os.environ.get(ENV_SLOW, "1")))],
        resources={"databricks": make_resource(name)},
        jobs=[dg.define_asset_job("test_job", selection=dg.AssetSelection.all())],
    )
    return defs.resolve_job_def("test_job")


def reconstructable_test_job(name: str):
    """The test job as Dagster re-execution needs it. The name is part of the pointer: Dagster
    caches a reconstructed job per pointer, so `dg.reconstructable(build_test_job)` would hand
    every later test of this process the first test's job."""
    return dg.build_reconstructable_job(
        "workflow_support",
        "build_test_job",
        reconstructable_args=(name,),
        reconstructor_working_directory=str(TESTS_DIR),
    )


# Re-executing a reconstructable job in this process: env vars set by the test reach the step.
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}


def key(name: str, asset: str) -> dg.AssetKey:
    return dg.AssetKey([name, asset])


def materialized(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def materialization_metadata(result, asset_key: dg.AssetKey) -> dict:
    """The plain metadata values of an asset's last materialization in a run result."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == asset_key]
    assert events, f"{asset_key.to_user_string()} was not materialized"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def step_failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a step failure"
    return failures[0].step_failure_data.error.message


# -- a step in a process of its own (to SIGKILL or SIGINT it) ---------------------------------------------

_STEP_SCRIPT = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from workflow_support import key, make_assets, make_resource
    name, run_id, seconds, only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    defs = dg.Definitions(assets=[make_assets(name, seconds)], resources={"databricks": make_resource(name)})
    job = defs.resolve_implicit_global_asset_job_def()
    selection = None if only == "all" else [key(name, a) for a in only.split(",")]
    result = job.execute_in_process(run_id=run_id, asset_selection=selection, raise_on_error=False)
    for event in result.all_events:
        print("EVENT", repr(event), flush=True)
    print("MATERIALIZED", sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events()))
    print("SUCCESS" if result.success else "FAILURE", flush=True)
    """
)


def start_step(name: str, run_id: str, seconds: int, only: str, env: dict[str, str]) -> subprocess.Popen:
    """Materialize `only` ("all" or comma-separated asset names) as Dagster run `run_id` in a new
    process group; `env` names the workspace (DATABRICKS_HOST / DATABRICKS_TOKEN). Stop it with
    os.killpg in a finally."""
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _STEP_SCRIPT, name, run_id, str(seconds), only],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


PIPES_LABELS = ("alpha", "beta", "gamma")


def pipes_workflow(name: str) -> Workflow:
    """alpha -> beta, gamma independent: three pipes notebooks (tests/notebooks/pipes_report.py), one job."""
    assets = [
        NotebookAsset(
            key=f"{name}/{label}",
            notebook="pipes_report.py",
            deps=[f"{name}/alpha"] if label == "beta" else [],
            params={"label": label},
            pipes=True,
            checks=["label_is_set"],
        )
        for label in PIPES_LABELS
    ]
    tasks = NotebookTasks(assets, notebooks_dir=NOTEBOOKS, pipes_root=f"dbfs:/tmp/{name}/pipes")
    return Workflow(name=name, sources=[tasks])


def captured_compute_logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """The stdout and stderr the run's steps wrote, as the instance's compute log manager kept them."""
    manager = instance.compute_log_manager
    stdout, stderr = "", ""
    for event in result.all_events:
        file_key = getattr(event.event_specific_data, "file_key", None)  # LOGS_CAPTURED events carry one
        if event.event_type_value == "LOGS_CAPTURED" and isinstance(file_key, str):
            data = manager.get_log_data(manager.build_log_key_for_run(result.run_id, file_key))
            stdout += (data.stdout or b"").decode()
            stderr += (data.stderr or b"").decode()
    return stdout, stderr
