"""How long loading the dbt assets takes for a big project, next to importing Dagster alone.

Generates a synthetic dbt project (N chained models reading one source, a not_null test on
each), parses it with dbt (`python -m dbx_assets.integration.dbt.project prepare`), then measures in fresh
subprocesses (median of --repeat runs):
  - import of `dagster` + `dagster_dbt` alone (the floor any code location pays), and
  - the definitions-load equivalent: those imports + `load_dbt_project` + a multi_asset over
    its specs/check specs + `Definitions(...)` with the asset graph resolved.

    python -m bench.dbt_load [--models 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

IMPORT_ONLY = """
import json, time
t0 = time.perf_counter()
import dagster, dagster_dbt
print(json.dumps({"import": time.perf_counter() - t0}))
"""

DEFINITIONS_LOAD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import dagster as dg, dagster_dbt
t1 = time.perf_counter()
from dbx_assets.integration.dbt.project import load_dbt_project
project = load_dbt_project(Path(sys.argv[1]))
t2 = time.perf_counter()

@dg.multi_asset(specs=project.specs, check_specs=project.check_specs, can_subset=True, name="dbt_models")
def dbt_models(context):
    yield from ()

defs = dg.Definitions(assets=[dbt_models])
graph = defs.resolve_asset_graph()
t3 = time.perf_counter()
print(json.dumps({
    "import": t1 - t0, "load_dbt_project": t2 - t1, "definitions": t3 - t2, "total": t3 - t0,
    "assets": len(project.specs), "checks": len(project.check_specs),
    "graph_assets": len(list(graph.get_all_asset_keys())),
}))
"""


def generate_project(root: Path, models: int) -> Path:
    """A dbt project of `models` chained models (model_i refs model_i-1; every 10th also refs model_i//2)."""
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
        if i == 0:
            sql = "select id, value from {{ source('raw', 'events') }}"
        else:
            refs = [f"{{{{ ref('model_{i - 1:04d}') }}}}"]
            if i % 10 == 0:
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
        subprocess.run([sys.executable, "-m", "dbx_assets.integration.dbt.project", "prepare", "--project-dir", str(project)], check=True, cwd=REPO, capture_output=True)
        parse_seconds = time.perf_counter() - started

        # "cold": no bytecode cache (this machine sets PYTHONDONTWRITEBYTECODE, so every import
        # compiles from source); "warm": .pyc files in a private cache, as on a normal install.
        cold = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        warm = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        warm["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        _run_json(DEFINITIONS_LOAD, str(project), env=warm)  # fills the private .pyc cache
        results = {
            mode: (
                [_run_json(IMPORT_ONLY, env=env) for _ in range(args.repeat)],
                [_run_json(DEFINITIONS_LOAD, str(project), env=env) for _ in range(args.repeat)],
            )
            for mode, env in (("cold", cold), ("warm", warm))
        }

    last = results["warm"][1][-1]
    print(f"dbt load benchmark: {args.models} models, {last['assets']} asset specs, {last['checks']} check specs "
          f"(median of {args.repeat} fresh processes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  dbt parse (python -m dbx_assets.integration.dbt.project prepare, once) : {parse_seconds:6.2f} s")
    print("                                                        cold .pyc   warm .pyc")
    rows = [
        ("import dagster + dagster_dbt alone", 0, "import"),
        ("definitions load, total", 1, "total"),
        ("  of which imports", 1, "import"),
        ("  of which load_dbt_project (manifest -> specs)", 1, "load_dbt_project"),
        ("  of which multi_asset + Definitions + graph", 1, "definitions"),
    ]
    for label, which, key in rows:
        cold_s, warm_s = (_median(results[m][which], key) for m in ("cold", "warm"))
        print(f"  {label:<50}: {cold_s:6.2f} s   {warm_s:6.2f} s")
    assert last["graph_assets"] >= last["assets"], "the asset graph lost dbt assets"
    return 0


if __name__ == "__main__":
    sys.exit(main())
