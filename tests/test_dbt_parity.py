"""Our dbt specs and check specs are dagster-dbt's own, on a manifest WITH SOURCE TESTS, and the
on-disk cache gives back exactly what a fresh build gives.

A small dbt project is written to a tmp dir and parsed once per module with dbt's programmatic
runner (dbt-spark session profile: offline, no JVM; ~5-10 s). Reference: what a dagster-dbt user
gets from `@dbt_assets` (its AssetsDefinition's specs and check specs) and `build_dbt_asset_specs`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtProject,
    build_dbt_asset_specs,
    dbt_assets,
)

from dbx_assets.integration.dbt import manifest as dbt_manifest
from dbx_assets.integration.dbt import specs as dbt_specs
from dbx_assets.integration.dbt.source import DbtProjectTasks, _Translator
from dbx_assets.integration.dbt.specs import SpecsCache, build_all_specs

K = dg.AssetKey
RAW, STG, DAILY = K("raw_events"), K("stg_events"), K("events_daily")
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01")

FILES = {
    "dbt_project.yml": """
name: tiny
version: "1.0.0"
config-version: 2
profile: tiny
models:
  tiny:
    +materialized: table
    +file_format: parquet
flags:
  send_anonymous_usage_stats: false
""",
    "profiles.yml": """
tiny:
  target: local
  outputs:
    local: {type: spark, method: session, host: NA, schema: tiny}
""",
    "models/_sources.yml": """
version: 2
sources:
  - name: raw
    tables:
      - name: events
        config:
          meta: {dagster: {asset_key: ["raw_events"]}}
        columns:
          - name: id
            data_tests: [not_null]
""",
    "models/stg_events.sql": "select id, amount from {{ source('raw', 'events') }}\n",
    "models/events_daily.sql": "select id, sum(amount) as amount from {{ ref('stg_events') }} group by id\n",
    "models/_models.yml": """
version: 2
models:
  - name: stg_events
    columns:
      - name: id
        data_tests: [unique, not_null]
  - name: events_daily
    columns:
      - name: id
        data_tests:
          - relationships: {arguments: {to: "ref('stg_events')", field: id}}
          - relationships: {arguments: {to: "source('raw', 'events')", field: id}}
      - name: amount
        data_tests:
          - accepted_values: {arguments: {values: [1, 2]}, config: {severity: warn}}
""",
    "tests/assert_amount_positive.sql": "select * from {{ ref('events_daily') }} where amount < 0\n",
}


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_dbt") / "tiny"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.lstrip())
    dbt_manifest.prepare(root)  # dbt parse, in-process
    return root


@pytest.fixture(scope="module")
def manifest(tiny_project: Path) -> dict[str, Any]:
    return dbt_manifest.read_manifest(dbt_manifest.manifest_path(tiny_project)).data


TRANSLATORS = {
    "default": lambda: DagsterDbtTranslator(),
    "source_tests_as_checks": lambda: DagsterDbtTranslator(
        DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    ),
    "partitioned": lambda: _Translator(DAILY_PARTITIONS),  # the code location's own translator
}


def _dagster_dbt_reference(manifest: dict[str, Any], translator: DagsterDbtTranslator):
    @dbt_assets(manifest=manifest, dagster_dbt_translator=translator)
    def tiny_dbt(context):
        raise NotImplementedError

    return tiny_dbt


def _by_key(specs):
    return {s.key: s for s in specs}


@pytest.mark.parametrize("translator_name", sorted(TRANSLATORS))
def test_specs_and_checks_equal_dagster_dbts_own(manifest: dict[str, Any], translator_name: str):
    translator = TRANSLATORS[translator_name]()
    specs, checks, unique_id_by_key, unique_id_by_check = build_all_specs(manifest, translator)
    # the dbt node behind each spec and check (ours come from the translator and the manifest; dagster-dbt
    # writes the same into the specs' metadata under a key of its internal asset_utils module)
    assert unique_id_by_key == {s.key: s.metadata["dagster_dbt/unique_id"] for s in specs}
    assert unique_id_by_check == {c.key: (c.metadata or {})["dagster_dbt/unique_id"] for c in checks}
    # as specs: every AssetSpec field (deps with their metadata) is build_dbt_asset_specs'
    assert _by_key(specs) == _by_key(build_dbt_asset_specs(manifest=manifest, dagster_dbt_translator=translator))
    # as a definition (the workflow puts them in its own multi_asset; that fills in e.g. the
    # default group): the same assets and checks as @dbt_assets
    reference = _dagster_dbt_reference(manifest, translator)

    @dg.multi_asset(specs=specs, check_specs=checks, can_subset=True, allow_arbitrary_check_specs=True)
    def ours(context):
        raise NotImplementedError

    assert _by_key(ours.specs) == _by_key(reference.specs)
    assert _by_key(checks) == _by_key(reference.check_specs) == _by_key(ours.check_specs)
    assert len(checks) == len(reference.check_specs)  # no duplicates hidden by the dict


def test_the_test_project_exercises_source_tests_singular_tests_and_multi_parent_tests(manifest: dict[str, Any]):
    """What the parity above covers, stated without dagster-dbt: if the fixture stopped producing
    these, the parity test would prove less."""
    default = _by_key(build_all_specs(manifest, TRANSLATORS["default"]()).checks)
    with_sources = _by_key(build_all_specs(manifest, TRANSLATORS["source_tests_as_checks"]()).checks)
    source_check = dg.AssetCheckKey(RAW, "source_not_null_raw_events_id")
    # dagster-dbt (0.29) turns source tests into checks on the source's asset only when enabled
    assert source_check in with_sources and source_check not in default
    assert set(with_sources) - set(default) == {source_check}
    assert {k.asset_key for k in default} == {STG, DAILY}
    assert dg.AssetCheckKey(DAILY, "assert_amount_positive") in default  # singular test
    assert not default[dg.AssetCheckKey(DAILY, "accepted_values_events_daily_amount__1__2")].blocking  # severity: warn
    assert default[dg.AssetCheckKey(STG, "unique_stg_events_id")].blocking
    to_model = next(
        c for k, c in default.items() if k.name.startswith("relationships_events_daily_id__id__ref_stg_events")
    )
    assert to_model.asset_key == DAILY and {d.asset_key for d in to_model.additional_deps} == {STG}
    to_source = next(
        c for k, c in default.items() if k.name.startswith("relationships_events_daily_id__id__source_raw_events")
    )
    assert {d.asset_key for d in to_source.additional_deps} == {RAW}
    specs = _by_key(build_all_specs(manifest, TRANSLATORS["partitioned"]()).specs)
    assert set(specs) == {STG, DAILY} and all(s.partitions_def == DAILY_PARTITIONS for s in specs.values())
    assert {d.asset_key for d in specs[STG].deps} == {RAW}


def test_a_dbt_project_reaches_the_specs_as_in_dbt_assets(manifest: dict[str, Any], tiny_project: Path):
    """With a DbtProject, the specs carry it as @dbt_assets(project=...) does (and its code references
    when the translator enables them)."""
    project = DbtProject(tiny_project)
    translator = DagsterDbtTranslator(DagsterDbtTranslatorSettings(enable_code_references=True))
    specs, checks, *_ = build_all_specs(manifest, translator, project=project)

    @dbt_assets(manifest=manifest, dagster_dbt_translator=translator, project=project)
    def reference(context):
        raise NotImplementedError

    assert _by_key(specs) == _by_key(
        build_dbt_asset_specs(manifest=manifest, dagster_dbt_translator=translator, project=project)
    )
    assert _by_key(checks) == _by_key(reference.check_specs)
    assert all("dagster/code_references" in s.metadata for s in specs)


def test_source_test_checks_load_in_a_multi_asset_like_dbt_assets_does(manifest: dict[str, Any]):
    """A check on the source's (foreign) asset needs allow_arbitrary_check_specs, as in @dbt_assets."""
    specs, checks, *_ = build_all_specs(manifest, TRANSLATORS["source_tests_as_checks"]())

    @dg.multi_asset(specs=specs, check_specs=checks, can_subset=True, allow_arbitrary_check_specs=True)
    def tiny(context):
        raise NotImplementedError

    graph = dg.Definitions(assets=[tiny, dg.AssetSpec(RAW)]).resolve_asset_graph()
    assert dg.AssetCheckKey(RAW, "source_not_null_raw_events_id") in graph.asset_check_keys
    assert graph.get(STG).parent_keys == {RAW}


# ---------------------------------------------------------------------------------------------
# the specs cache


def _loaded(project_dir: Path) -> dbt_manifest.LoadedManifest:
    return dbt_manifest.read_manifest(dbt_manifest.manifest_path(project_dir))


def _forbid_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(*args: Any) -> Any:
        raise AssertionError("dagster-dbt was called although the cache holds these specs")

    monkeypatch.setattr(dbt_specs, "_build", build)


@pytest.mark.parametrize("translator_name", sorted(TRANSLATORS))
def test_cached_specs_equal_fresh_ones(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, translator_name: str
):
    loaded = _loaded(tiny_project)
    cache = SpecsCache(tmp_path / "cache", loaded.sha256)
    fresh = build_all_specs(loaded.data, TRANSLATORS[translator_name](), cache=cache)
    assert len(list(cache.directory.glob("*.pickle"))) == 1
    _forbid_build(monkeypatch)
    # a new, equal translator, as in a restarted code server (a used one carries dagster-dbt's
    # memo of resolved specs: another state, so a rebuild, never a wrong hit)
    translator = TRANSLATORS[translator_name]()
    cached = build_all_specs(loaded.data, translator, cache=cache)
    assert _without_translator(cached[0]) == _without_translator(fresh[0])  # same order, every other field
    assert cached[1] == fresh[1]
    assert all(isinstance(d, dg.AssetDep) for s in cached[0] for d in s.deps)
    # the live translator and manifest are re-attached, not copies from the file
    live = [
        v
        for s in cached[0]
        for v in s.metadata.values()
        if v is translator or getattr(v, "manifest", None) is loaded.data
    ]
    assert len(live) == 2 * len(cached[0])


def _without_translator(specs: list[dg.AssetSpec]) -> list[dg.AssetSpec]:
    """Specs minus the translator object dagster-dbt puts in their metadata (compared by identity)."""
    return [
        s.replace_attributes(metadata={k: v for k, v in s.metadata.items() if not isinstance(v, DagsterDbtTranslator)})
        for s in specs
    ]


def test_cache_misses_on_another_manifest_or_translator(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    loaded = _loaded(tiny_project)
    calls: list[str] = []
    build = dbt_specs._build

    def counting_build(manifest: dict[str, Any], translator: DagsterDbtTranslator, project: Any) -> Any:
        calls.append(type(translator).__name__)
        return build(manifest, translator, project)

    monkeypatch.setattr(dbt_specs, "_build", counting_build)
    cache = SpecsCache(tmp_path, loaded.sha256)
    build_all_specs(loaded.data, _Translator(None), cache=cache)
    build_all_specs(loaded.data, _Translator(DAILY_PARTITIONS), cache=cache)  # other state: its own entry
    build_all_specs(loaded.data, _Translator(None), cache=cache)
    build_all_specs(loaded.data, _Translator(DAILY_PARTITIONS), cache=cache)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.pickle"))) == 2
    # an edited manifest (another hash) rebuilds and replaces the entry
    edited = SpecsCache(tmp_path, "0" * 64)
    assert build_all_specs(loaded.data, _Translator(None), cache=edited).specs[0].partitions_def is None
    assert len(calls) == 3 and len(list(tmp_path.glob("*.pickle"))) == 2
    build_all_specs(loaded.data, _Translator(None), cache=cache)
    assert len(calls) == 4  # the old manifest's entry was replaced


def test_unreadable_or_unwritable_cache_only_costs_a_rebuild(
    tiny_project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    loaded = _loaded(tiny_project)
    cache = SpecsCache(tmp_path, loaded.sha256)
    fresh_specs, fresh_checks, *_ = build_all_specs(loaded.data, DagsterDbtTranslator(), cache=cache)
    [entry] = tmp_path.glob("*.pickle")
    header = entry.read_bytes().split(b"\n", 1)[0]
    entry.write_bytes(header + b"\nnot a pickle")  # right key, torn payload
    specs, checks, *_ = build_all_specs(loaded.data, DagsterDbtTranslator(), cache=cache)
    assert (_without_translator(specs), checks) == (_without_translator(fresh_specs), fresh_checks)
    assert "Ignoring unreadable dbt specs cache" in caplog.text
    assert entry.read_bytes().startswith(header + b"\n\x80")  # rewritten with a real pickle
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    specs, checks, *_ = build_all_specs(loaded.data, DagsterDbtTranslator(), cache=SpecsCache(not_a_dir, loaded.sha256))
    assert (_without_translator(specs), checks) == (_without_translator(fresh_specs), fresh_checks)


def test_translator_identity_is_the_same_in_a_new_process():
    """The cache only helps if a restarted code server computes the same identity."""
    ours = dbt_specs.translator_identity(_Translator(DAILY_PARTITIONS))
    code = (
        "import dagster as dg; from dbx_assets.integration.dbt.source import _Translator; "
        "from dbx_assets.integration.dbt.specs import translator_identity; "
        "print(translator_identity(_Translator(dg.DailyPartitionsDefinition(start_date='2024-01-01'))))"
    )
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert ours is not None and theirs == ours
    assert dbt_specs.translator_identity(_Translator(None)) != ours


def test_project_tasks_cache_next_to_the_manifest(tiny_project: Path, monkeypatch: pytest.MonkeyPatch):
    first = DbtProjectTasks(tiny_project, partitions_def=DAILY_PARTITIONS)
    assert list((tiny_project / "target" / dbt_specs.CACHE_DIR_NAME).glob("*.pickle"))
    _forbid_build(monkeypatch)
    second = DbtProjectTasks(tiny_project, partitions_def=DAILY_PARTITIONS)
    assert _without_translator(list(second.asset_specs())) == _without_translator(list(first.asset_specs()))
    assert second.check_specs() == first.check_specs()
    assert json.loads(dbt_manifest.manifest_path(tiny_project).read_bytes()) == second.manifest
