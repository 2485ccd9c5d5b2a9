"""A big workflow: 200 notebooks + a dbt project of 2,000 models, as one Databricks job.

Generates 200 SOURCE-format notebooks (20 chains of ten, each chain reading `raw_events`, which
is itself a notebook) and a dbt project of 2,000 chained models whose source is `raw_events`
(bench.dbt_load's generator), parses the project with dbt (`python -m dbx_assets.integration.dbt
prepare`), then prints:

  A. definitions load time in fresh subprocesses (median of --repeat; warm .pyc files), split into
     imports, the two task sources, the Workflow (its load-time validation, Databricks' limits
     included; the limits check is also timed alone) and multi_asset + Definitions + asset graph;
     next to the bare `import dagster` and `import dagster_dbt`, each in a fresh subprocess too, and
     next to a plain dagster-dbt load of the same assets: `@dbt_assets` on the same manifest plus one
     `AssetSpec` per notebook (the models come in chains of 100: dagster-dbt builds specs recursively
     through a chain's upstream models, and a 2,000-deep chain exceeds Python's recursion limit).
  B. one run on the no-JVM local workspace (tests/fake_runtime.py's FakeCluster: each notebook is a
     plain Python process) selecting the 200 notebooks: the first deploy (files + jobs/create), then
     one materialization: run-now -> first and last asset reported, API calls by endpoint. The dbt
     task is not in the run: it needs Spark (dbt-spark in the cluster's JVM), which the fake runtime
     does not have; the job still holds it, so deploy uploads the 2,000-model project.

No assertion on time; figures only.

    python -m bench.scale [--notebooks 200] [--models 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dbt_load import CACHE_DIR, generate_project

REPO = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO / "tests"
SOURCE_ASSET = "raw_events"  # the generated dbt project's source maps to this asset key
CHAIN = 10
MODEL_CHAIN = 100  # dbt models per chain (dagster-dbt recurses through a chain: 2,000 deep is too deep)

BARE_IMPORT = (
    "import json, time\nt0 = time.perf_counter()\nimport {}\nprint(json.dumps({{'import': time.perf_counter() - t0}}))"
)

DEFINITIONS_LOAD = """
import json, sys, time
t0 = time.perf_counter()
import dagster as dg, dagster_dbt
t1 = time.perf_counter()
from dbx_assets import DatabricksResource, DbtProjectTasks, NotebookAsset, NotebookTasks, Workflow, build_workflow_assets
from dbx_assets.integration.sources.base import DeployTarget
from dbx_assets.integration.workflow.limits import check_workflow_limits
t2 = time.perf_counter()
notebooks_dir, project_dir = sys.argv[1], sys.argv[2]
declarations = json.loads(open(sys.argv[3]).read())
notebooks = NotebookTasks([NotebookAsset(**d) for d in declarations], notebooks_dir=notebooks_dir)
t3 = time.perf_counter()
dbt = DbtProjectTasks(project_dir)
t4 = time.perf_counter()
workflow = Workflow(name="scale", sources=[notebooks, dbt])
t5 = time.perf_counter()
target = DeployTarget(workspace_root="/Shared/scale", sql_warehouse_id="w")
check_workflow_limits(workflow.name, workflow.spec(target).job_settings(), workflow.sources, target)
t6 = time.perf_counter()
assets = build_workflow_assets(workflow)
defs = dg.Definitions(assets=[assets], resources={"databricks": DatabricksResource()})
graph = defs.resolve_asset_graph()
t7 = time.perf_counter()
print(json.dumps({
    "import_libs": t1 - t0, "import_ours": t2 - t1, "notebooks": t3 - t2, "dbt": t4 - t3,
    "workflow": t5 - t4, "limits": t6 - t5, "definitions": t7 - t6, "total": t7 - t0 - (t6 - t5),
    "assets": len(list(graph.get_all_asset_keys())), "checks": len(workflow.check_specs()),
    "tasks": len(workflow.spec(target).tasks),
}))
"""

# The same assets the way a plain dagster-dbt code location declares them: `@dbt_assets` on the same
# manifest and one AssetSpec per notebook; what our load is compared with.
PLAIN_DAGSTER_DBT = """
import json, sys, time
t0 = time.perf_counter()
import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
manifest, project_dir, notebooks = sys.argv[1], sys.argv[2], int(sys.argv[3])
@dbt_assets(manifest=manifest)
def models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()
specs = [dg.AssetSpec(f"nb_{i:03d}") for i in range(notebooks)]
defs = dg.Definitions(assets=[models, *specs], resources={"dbt": DbtCliResource(project_dir=project_dir)})
graph = defs.resolve_asset_graph()
t1 = time.perf_counter()
print(json.dumps({"total": t1 - t0, "assets": len(list(graph.get_all_asset_keys()))}))
"""


# -- generating the workflow ---------------------------------------------------------------------
def notebook_declarations(count: int) -> list[dict[str, Any]]:
    """`raw_events` plus count-1 notebooks in chains of ten, each chain starting from `raw_events`."""
    declarations: list[dict[str, Any]] = [{"key": SOURCE_ASSET, "notebook": f"{SOURCE_ASSET}.py"}]
    for i in range(1, count):
        upstream = SOURCE_ASSET if i % CHAIN == 1 else f"nb_{i - 1:03d}"
        declarations.append({"key": f"nb_{i:03d}", "notebook": f"nb_{i:03d}.py", "deps": [upstream]})
    return declarations


def write_notebooks(folder: Path, declarations: list[dict]) -> None:
    folder.mkdir(parents=True)
    for d in declarations:
        (folder / d["notebook"]).write_text(
            "# Databricks notebook source\n"
            f"# MAGIC %md Generated notebook for asset `{d['key']}`.\n\n"
            "# COMMAND ----------\n\n"
            "import json\n"
            f"dbutils.notebook.exit(json.dumps({{'asset': {d['key']!r}, 'rows': {len(d['key'])}}}))\n"
        )


# -- A. definitions load --------------------------------------------------------------------------
def _run_json(code: str, *args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_load(
    notebooks_dir: Path, project: Path, declarations_file: Path, notebooks: int, repeat: int, pycache: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)  # warm .pyc files, as on a normal install
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # DbtCliResource finds dbt
    args = (str(notebooks_dir), str(project), str(declarations_file))
    cache = project / "target" / CACHE_DIR
    _run_json(DEFINITIONS_LOAD, *args, env=env)  # fills the private .pyc cache
    shutil.rmtree(cache, ignore_errors=True)
    first = _run_json(DEFINITIONS_LOAD, *args, env=env)  # as after a re-parse; writes the specs cache
    samples = [_run_json(DEFINITIONS_LOAD, *args, env=env) for _ in range(repeat)]
    bare_dagster = [_run_json(BARE_IMPORT.format("dagster"), env=env)["import"] for _ in range(repeat)]
    bare_dbt = [_run_json(BARE_IMPORT.format("dagster_dbt"), env=env)["import"] for _ in range(repeat)]
    plain_args = (str(project / "target" / "manifest.json"), str(project), str(notebooks))
    _run_json(PLAIN_DAGSTER_DBT, *plain_args, env=env)  # its .pyc files too
    plain = [_run_json(PLAIN_DAGSTER_DBT, *plain_args, env=env) for _ in range(repeat)]

    def med(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    last = samples[-1]
    print(
        f"A. definitions load: {last['tasks']} tasks, {last['assets']} assets, {last['checks']} checks "
        f"(median of {repeat} fresh processes, warm .pyc; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs)"
    )
    rows = [
        ("bare `import dagster`", statistics.median(bare_dagster)),
        ("bare `import dagster_dbt` (imports dagster)", statistics.median(bare_dbt)),
        ("definitions load, total", med("total")),
        ("  imports: dagster + dagster_dbt", med("import_libs")),
        ("  imports: dbx_assets modules", med("import_ours")),
        (f"  NotebookTasks ({notebooks} notebooks read)", med("notebooks")),
        ("  DbtProjectTasks (manifest -> specs, specs cache warm)", med("dbt")),
        ("  Workflow(...) incl. validation and limits", med("workflow")),
        ("  multi_asset + Definitions + asset graph", med("definitions")),
        ("the limits check alone (also inside Workflow(...))", med("limits")),
        ("first load after a re-parse (no specs cache), total", first["total"]),
        ("  of which DbtProjectTasks", first["dbt"]),
    ]
    plain_total = statistics.median(p["total"] for p in plain)
    rows.insert(2, (f"plain dagster-dbt: @dbt_assets + {notebooks} AssetSpecs", plain_total))
    for label, seconds in rows:
        print(f"  {label:<56}: {seconds:6.2f} s")
    print(
        f"  ours / plain dagster-dbt: {med('total') / plain_total:.2f}x (goal <= 1.1x; {plain[-1]['assets']} vs "
        f"{last['assets']} assets)"
    )


# -- B. one run on the no-JVM local workspace ------------------------------------------------------
def _fake_workspace(state_dir: Path):
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from fake_runtime import FakeWorkspace  # the no-JVM cluster runtime the test suite uses

    return FakeWorkspace(state_dir)


def _api_calls(snapshot: dict) -> tuple[int, list[tuple[str, int]]]:
    requests: dict[str, int] = snapshot["requests"]
    top = sorted(requests.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    return sum(requests.values()), top


def _run_now_time(server_log: Path) -> float:
    """When the workspace answered run-now (this machine's clock, from the server's own log)."""
    stamps = [
        line.split(" INFO ", 1)[0] for line in server_log.read_text().splitlines() if "/jobs/run-now -> 200" in line
    ]
    return dt.datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def measure_run(notebooks_dir: Path, project: Path, declarations: list[dict], state_dir: Path) -> None:
    import dagster as dg

    from dbx_assets import (
        DatabricksResource,
        DbtProjectTasks,
        NotebookAsset,
        NotebookTasks,
        Workflow,
        build_workflow_assets,
    )
    from dbx_assets.integration.jobs.deploy import WorkflowDeployer

    notebooks = NotebookTasks([NotebookAsset(**d) for d in declarations], notebooks_dir=notebooks_dir)
    workflow = Workflow(name="bench_scale", sources=[notebooks, DbtProjectTasks(project)])
    ws = _fake_workspace(state_dir)
    try:
        resource = DatabricksResource(host=ws.host, token=ws.token, workspace_root="/Shared/bench_scale")
        target = resource.deploy_target(needs_sql_warehouse=True)
        files = workflow.files()
        ws.set_faults()  # no faults; resets the request counts
        started = time.perf_counter()
        deployed = WorkflowDeployer(resource.get_client(), target.workspace_root).deploy(workflow.spec(target), files)
        deploy_seconds = time.perf_counter() - started
        deploy_calls, deploy_top = _api_calls(ws.counts())

        ws.set_faults()
        selection = [spec.key for spec in notebooks.asset_specs()]
        with dg.DagsterInstance.ephemeral() as instance:
            started = time.perf_counter()
            result = dg.materialize(
                [build_workflow_assets(workflow)],
                selection=selection,
                resources={"databricks": resource},
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # 400 events: quiet
                raise_on_error=False,
            )
            wall = time.perf_counter() - started
            reported = sorted(
                entry.timestamp
                for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            )
        run_calls, run_top = _api_calls(ws.counts())
        run_now = _run_now_time(ws.state_dir / "server.log")
    finally:
        ws.close()

    print(
        f"\nB. one run of the {len(selection)} notebooks on the no-JVM local workspace (FakeCluster; the dbt "
        "task needs Spark, so it is deployed but not run)"
    )
    print(
        f"  first deploy: {len(files)} files ({len(declarations)} notebooks + the dbt project) and jobs/create "
        f"of {len(workflow.spec(target).tasks)} tasks (job {deployed.job_id}): {deploy_seconds:6.1f} s, "
        f"{deploy_calls} API calls"
    )
    for endpoint, n in deploy_top:
        print(f"      {n:5d}  {endpoint}")
    status = "succeeded" if result.success else "FAILED"
    print(f"  materialization ({status}): {wall:6.1f} s wall, {len(reported)} assets reported, {run_calls} API calls")
    if reported:
        print(f"    run-now -> first asset reported : {reported[0] - run_now:6.1f} s")
        print(f"    run-now -> last asset reported  : {reported[-1] - run_now:6.1f} s")
    for endpoint, n in run_top:
        print(f"      {n:5d}  {endpoint}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", type=int, default=200)
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-run", action="store_true", help="only part A (definitions load)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        root = Path(tmp)
        declarations = notebook_declarations(args.notebooks)
        notebooks_dir = root / "notebooks"
        write_notebooks(notebooks_dir, declarations)
        declarations_file = root / "notebooks.json"
        declarations_file.write_text(json.dumps(declarations))
        project = generate_project(root, args.models, chain=MODEL_CHAIN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dbx_assets.integration.dbt", "prepare", "--project-dir", str(project)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
        print(f"dbt parse of {args.models} models (once): {time.perf_counter() - started:.1f} s\n")
        measure_load(notebooks_dir, project, declarations_file, args.notebooks, args.repeat, root / "pycache")
        if not args.skip_run:
            measure_run(notebooks_dir, project, declarations, root / "workspace")
    return 0


if __name__ == "__main__":
    sys.exit(main())
