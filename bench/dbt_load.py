"""How long loading the dbt assets takes for a big project, next to the bare imports.

Generates a synthetic dbt project (N chained models reading one source, a not_null test on
each), parses it with dbt (`python -m dbx_assets.integration.dbt prepare --project-dir DIR`),
then measures in fresh subprocesses (median of --repeat runs):
  - the bare imports: `dagster` + `dagster_dbt` + our dbt task source module (the floor any
    code location with dbt assets pays),
  - the definitions-load equivalent: those imports + `DbtProjectTasks(project)` (manifest ->
    specs, by dagster-dbt's public API) + a multi_asset over its specs/check specs +
    `Definitions(...)` with the asset graph resolved, once with the specs cache warm (the normal
    code-server start) and once with it removed before every run (first load after a re-parse).

    python -m bench.dbt_load [--models 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# dbx_assets.integration.dbt.specs.CACHE_DIR_NAME, not imported: this process stays light
CACHE_DIR = "dbx_assets_specs"

IMPORT_ONLY = """
import json, time
t0 = time.perf_counter()
import dagster, dagster_dbt
from dbx_assets import DbtProjectTasks
print(json.dumps({"import": time.perf_counter() - t0}))
"""

DEFINITIONS_LOAD = """
import json, sys, time
t0 = time.perf_counter()
import dagster as dg, dagster_dbt
from dbx_assets import DbtProjectTasks
t1 = time.perf_counter()
project = DbtProjectTasks(sys.argv[1])
t2 = time.perf_counter()

@dg.multi_asset(specs=project.asset_specs(), check_specs=project.check_specs(), can_subset=True, name="dbt_models")
def dbt_models(context):
    yield from ()

defs = dg.Definitions(assets=[dbt_models])
graph = defs.resolve_asset_graph()
t3 = time.perf_counter()
print(json.dumps({
    "import": t1 - t0, "load_project": t2 - t1, "definitions": t3 - t2, "total": t3 - t0,
    "assets": len(project.asset_specs()), "checks": len(project.check_specs()),
    "graph_assets": len(list(graph.get_all_asset_keys())),
    "dbt_graph_imported": "dbt.graph" in sys.modules,
}))
"""


def generate_project(root: Path, models: int, chain: int | None = None) -> Path:
    """A dbt project of `models` chained models (model_i refs model_i-1; every 10th also refs model_i//2);
    with `chain`, a new chain from the source starts every `chain` models (dagster-dbt builds specs
    recursively through upstream models: a 2,000-deep chain exceeds Python's recursion limit)."""
    project = root / "bench_project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: bench_project\nversion: '1.0.0'\nconfig-version: 2\nprofile: bench\n"
        "flags:\n  send_anonymous_usage_stats: false\n"
        "models:\n  bench_project:\n    +materialized: table\n    +file_format: parquet\n"
    )
    (project / "profiles.yml").write_text(
        "bench:\n  target: local\n  outputs:\n    local:\n      type: spark\n      method: session\n"
        "      host: NA\n      schema: bench\n"
    )
    schema = [
        "version: 2",
        "sources:",
        "  - name: raw",
        "    tables:",
        "      - name: events",
        "        config:",
        "          meta:",
        "            dagster:",
        "              asset_key: ['raw_events']",
        "models:",
    ]
    for i in range(models):
        if i == 0 or (chain and i % chain == 0):
            sql = "select id, value from {{ source('raw', 'events') }}"
        else:
            refs = [f"{{{{ ref('model_{i - 1:04d}') }}}}"]
            if i % 10 == 0 and not (chain and i // 2 < i - i % chain):
                refs.append(f"{{{{ ref('model_{i // 2:04d}') }}}}")
            sql = " union all ".join(f"select id, value + {i} as value from {r}" for r in refs)
        (project / "models" / f"model_{i:04d}.sql").write_text(sql + "\n")
        schema += [
            f"  - name: model_{i:04d}",
            f"    description: Synthetic model {i}.",
            "    columns:",
            "      - name: id",
            "        description: Row id.",
            "        data_tests: [not_null]",
        ]
    (project / "models" / "schema.yml").write_text("\n".join(schema) + "\n")
    return project


def _run_json(code: str, *args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dbt_load_bench_") as tmp:
        project = generate_project(Path(tmp), args.models)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dbx_assets.integration.dbt", "prepare", "--project-dir", str(project)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
        parse_seconds = time.perf_counter() - started
        cache = project / "target" / CACHE_DIR

        def uncached(env: dict[str, str]) -> dict:
            shutil.rmtree(cache, ignore_errors=True)
            return _run_json(DEFINITIONS_LOAD, str(project), env=env)

        # "cold": no bytecode cache (this machine sets PYTHONDONTWRITEBYTECODE, so every import
        # compiles from source); "warm": .pyc files in a private cache, as on a normal install.
        cold = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        warm = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        warm["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        uncached(warm)  # fills the private .pyc cache (and imports dbt.graph's modules once)
        results: dict[str, dict[str, list[dict]]] = {}
        for mode, env in (("cold", cold), ("warm", warm)):
            results[mode] = {
                "imports": [_run_json(IMPORT_ONLY, env=env) for _ in range(args.repeat)],
                "uncached": [uncached(env) for _ in range(args.repeat)],
            }
            _run_json(DEFINITIONS_LOAD, str(project), env=env)  # writes the cache
            results[mode]["cached"] = [_run_json(DEFINITIONS_LOAD, str(project), env=env) for _ in range(args.repeat)]

    last = results["warm"]["cached"][-1]
    assert not last["dbt_graph_imported"], "a cached load still ran dbt's selection engine"
    assert all(r["dbt_graph_imported"] for m in results.values() for r in m["uncached"]), (
        "an uncached load skipped dagster-dbt"
    )
    assert last["graph_assets"] >= last["assets"], "the asset graph lost dbt assets"
    print(
        f"dbt load benchmark: {args.models} models, {last['assets']} asset specs, {last['checks']} check specs "
        f"(median of {args.repeat} fresh processes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  dbt parse (python -m dbx_assets.integration.dbt prepare, once)   : {parse_seconds:6.2f} s")
    print("                                                          cold .pyc   warm .pyc")
    rows = [
        ("bare imports (dagster, dagster_dbt, dbt source module)", "imports", "import"),
        ("definitions load, specs cache warm: total", "cached", "total"),
        ("  of which imports", "cached", "import"),
        ("  of which DbtProjectTasks (manifest -> specs)", "cached", "load_project"),
        ("  of which multi_asset + Definitions + graph", "cached", "definitions"),
        ("definitions load, no specs cache: total", "uncached", "total"),
        ("  of which DbtProjectTasks (manifest -> specs)", "uncached", "load_project"),
    ]
    for label, which, key in rows:
        cold_s, warm_s = (_median(results[m][which], key) for m in ("cold", "warm"))
        print(f"  {label:<56}: {cold_s:6.2f} s   {warm_s:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
