"""dbt manifest -> Dagster asset specs and asset check specs, by dagster-dbt's public API.

Specs come from `build_dbt_asset_specs`, check specs from `@dbt_assets` (its AssetsDefinition's
`check_specs`): exactly what dagster-dbt itself declares for the same manifest, translator and
`DbtProject`, including tests on sources when the translator's settings enable them. Which dbt node
each spec and check stands for comes from the same translator (`get_asset_spec`, the override point
`@dbt_assets` calls) and the manifest, never from dagster-dbt's internal metadata keys.

dagster-dbt always runs dbt's selection engine, even to select everything: importing dbt.graph +
networkx and hydrating the manifest costs ~1 s per code-server load at 500 models. So the result
is cached on disk next to the manifest, keyed by the manifest's bytes, the Dagster/dagster-dbt/
dbt versions and the translator's identity (its class, the source of the module defining it and
its state) and the `DbtProject`'s settings. Any miss, unreadable or stale file just rebuilds; a cache
that cannot be written is skipped. The cache is a pickle: it is as trusted as the project directory it
lives in.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import io
import json
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject, build_dbt_asset_specs, dbt_assets

from dbx_assets.integration.dbt.manifest import LoadedManifest

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "dbx_assets_specs"  # under the manifest's directory (dbt's target/)
_FORMAT = "2"  # bump when the cached payload changes shape
# dbt resource types that become assets (sources are upstream keys, tests become checks)
_ASSET_RESOURCE_TYPES = frozenset({"model", "seed", "snapshot"})


class Specs(NamedTuple):
    """A dbt project's specs and check specs, sorted by key, and the dbt node each stands for."""

    specs: list[dg.AssetSpec]
    checks: list[dg.AssetCheckSpec]
    unique_id_by_key: dict[dg.AssetKey, str]
    unique_id_by_check: dict[dg.AssetCheckKey, str]


@dataclass(frozen=True)
class SpecsCache:
    """Where to cache the specs of one manifest: `manifest_sha256` must be the hash of the bytes
    the manifest JSON was parsed from (`LoadedManifest` guarantees it)."""

    directory: Path
    manifest_sha256: str

    @classmethod
    def next_to(cls, manifest: LoadedManifest) -> SpecsCache:
        return cls(manifest.path.parent / CACHE_DIR_NAME, manifest.sha256)


def build_all_specs(
    manifest: dict[str, Any],
    translator: DagsterDbtTranslator,
    *,
    project: DbtProject | None = None,
    cache: SpecsCache | None = None,
) -> Specs:
    """Every dbt asset spec and check spec of the manifest (dagster-dbt's default selection),
    sorted by key; from `cache` when it holds them for this manifest, translator and project."""
    slot = _cache_slot(cache, translator, project) if cache else None  # before any use of the translator
    live = _live_objects(manifest, translator, project)
    if slot:
        cached = _read(*slot, live)
        if cached is not None:
            return cached
    specs = _build(manifest, translator, project)
    if slot:
        _write(*slot, specs, live)
    return specs


def _build(manifest: dict[str, Any], translator: DagsterDbtTranslator, project: DbtProject | None = None) -> Specs:
    specs = build_dbt_asset_specs(manifest=manifest, dagster_dbt_translator=translator, project=project)

    @dbt_assets(
        manifest=manifest, dagster_dbt_translator=translator, project=project, name="dbx_assets_dbt_check_specs"
    )
    def check_source(context):  # never executed: only its check specs are read
        raise NotImplementedError

    specs = sorted(specs, key=lambda s: s.key.to_user_string())
    checks = sorted(check_source.check_specs, key=lambda c: (c.asset_key.to_user_string(), c.name))
    return Specs(specs, checks, *_unique_ids(manifest, translator, project, specs, checks))


def _unique_ids(
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    project: DbtProject | None,
    specs: list[dg.AssetSpec],
    checks: list[dg.AssetCheckSpec],
) -> tuple[dict[dg.AssetKey, str], dict[dg.AssetCheckKey, str]]:
    """The dbt node behind each spec and check, asked of the translator that made them (its
    `get_asset_spec` results are memoized by dagster-dbt during the build, so this is cheap).

    A check is the test of that name (dagster-dbt names a check after its test) whose parents include
    the checked asset's node, when several tests share the name (tests of installed packages)."""
    nodes: Mapping[str, Any] = manifest.get("nodes", {})
    wanted = {s.key for s in specs} | {c.asset_key for c in checks}
    node_ids_by_key: dict[dg.AssetKey, set[str]] = {}
    candidates = [uid for uid, n in nodes.items() if n.get("resource_type") in _ASSET_RESOURCE_TYPES]
    for uid in [*candidates, *manifest.get("sources", {})]:
        key = translator.get_asset_spec(manifest, uid, project).key
        if key in wanted:
            node_ids_by_key.setdefault(key, set()).add(uid)
    by_key: dict[dg.AssetKey, str] = {}
    for spec in specs:
        models = sorted(uid for uid in node_ids_by_key.get(spec.key, ()) if uid in nodes)
        if len(models) != 1:
            raise ValueError(f"dbt asset {spec.key.to_user_string()} maps to {len(models)} dbt nodes: {models}")
        by_key[spec.key] = models[0]
    tests_by_name: dict[str, list[str]] = {}
    for uid, node in nodes.items():
        if node.get("resource_type") == "test":
            tests_by_name.setdefault(node["name"], []).append(uid)
    parents: Mapping[str, Sequence[str]] = manifest.get("parent_map", {})
    by_check: dict[dg.AssetCheckKey, str] = {}
    for check in checks:
        tests = tests_by_name.get(check.name, [])
        if len(tests) > 1:
            checked = node_ids_by_key.get(check.asset_key, set())
            tests = [uid for uid in tests if checked & set(parents.get(uid, ()))]
        if len(tests) != 1:
            raise ValueError(f"dbt check {check.key.to_user_string()} maps to {len(tests)} dbt tests: {sorted(tests)}")
        by_check[check.key] = tests[0]
    return by_key, by_check


# -- the cache ------------------------------------------------------------------------------------


def translator_identity(translator: DagsterDbtTranslator) -> str | None:
    """A hash of what decides the translator's output, or None when it cannot be pinned down
    (then nothing is cached): the source of every module defining a class of its own (dagster-dbt's
    are covered by its version) and its pickled state. Take it from a fresh translator: dagster-dbt
    memoizes resolved specs on the translator, so a used one has another state (a miss, never a
    wrong hit)."""
    digest = hashlib.sha256()
    for klass in type(translator).__mro__:
        if klass.__module__.split(".")[0] in {"dagster", "dagster_dbt", "builtins"}:
            continue
        try:
            source = inspect.getsourcefile(klass)
        except TypeError:
            source = None
        if not source or not os.path.exists(source):
            return None  # e.g. defined in `python -c`: no file to tell edits apart
        digest.update(f"{klass.__module__}:{klass.__qualname__}\0".encode())
        digest.update(hashlib.sha256(Path(source).read_bytes()).digest())
    try:
        digest.update(pickle.dumps(vars(translator), protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # unpicklable state (a lambda, a lock): don't guess
        return None
    return digest.hexdigest()


def project_identity(project: DbtProject | None) -> str:
    """What of a DbtProject reaches the specs (dagster-dbt puts the project in their metadata and
    reads its paths for code references): its settings, not the object."""
    if project is None:
        return "-"
    fields = ("name", "project_dir", "target_path", "profiles_dir", "profile", "target", "state_path")
    return json.dumps([str(getattr(project, f, None)) for f in fields])


def _cache_slot(
    cache: SpecsCache, translator: DagsterDbtTranslator, project: DbtProject | None = None
) -> tuple[Path, str] | None:
    """(file, key): one file per translator identity and project, holding the specs of the latest manifest."""
    identity = translator_identity(translator)
    if identity is None:
        return None
    identity = hashlib.sha256(f"{identity}\0{project_identity(project)}".encode()).hexdigest()
    return cache.directory / f"{identity[:24]}.pickle", _cache_key(cache.manifest_sha256, identity)


def _cache_key(manifest_sha256: str, identity: str) -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    parts = [_FORMAT, manifest_sha256, identity, f"py{sys.version_info[:2]}"]
    parts += [version(d) for d in ("dagster", "dagster-dbt", "dbt-core")]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _asset_dep(asset_key: dg.AssetKey, partition_mapping: Any, metadata: Any) -> dg.AssetDep:
    return dg.AssetDep(asset_key, partition_mapping=partition_mapping, metadata=metadata)


def _live_objects(
    manifest: dict[str, Any], translator: DagsterDbtTranslator, project: DbtProject | None
) -> dict[str, Any]:
    live: dict[str, Any] = {"manifest": manifest, "translator": translator}
    if project is not None:
        live["project"] = project
    return live


class _Pickler(pickle.Pickler):
    """Pickles specs; the live manifest, translator and project (which dagster-dbt puts in each
    spec's metadata) are stored as references and re-attached on load, not copied."""

    def __init__(self, file: io.BytesIO, live: Mapping[int, str]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._live = live

    def persistent_id(self, obj: Any) -> str | None:
        return self._live.get(id(obj))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, dg.AssetDep):  # its __new__ is keyword-only: pickle's default cannot call it
            return _asset_dep, (obj.asset_key, obj.partition_mapping, obj.metadata)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, live: Mapping[str, Any]):
        super().__init__(file)
        self._live = live

    def persistent_load(self, pid: str) -> Any:
        return self._live[pid]


def _read(path: Path, key: str, live: Mapping[str, Any]) -> Specs | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header, _, payload = raw.partition(b"\n")
    if header.decode(errors="replace") != key:
        return None
    try:
        specs, checks, by_key, by_check = _Unpickler(io.BytesIO(payload), live).load()
    except Exception as err:  # a torn or foreign file: rebuild
        logger.warning("Ignoring unreadable dbt specs cache %s (%s: %s).", path, type(err).__name__, err)
        return None
    return Specs(specs, checks, by_key, by_check)


def _write(path: Path, key: str, specs: Specs, live: Mapping[str, Any]) -> None:
    buffer = io.BytesIO()
    payload = tuple(specs)
    try:
        _Pickler(buffer, {id(obj): name for name, obj in live.items()}).dump(payload)
    except Exception as err:  # a translator put something unpicklable in a spec: just don't cache
        logger.info("Not caching dbt specs: %s: %s", type(err).__name__, err)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a concurrent reader sees the old file or the new one, never half of one
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as tmp:
            tmp.write(key.encode() + b"\n" + buffer.getvalue())
        os.chmod(tmp.name, 0o644)  # like the manifest beside it (mkstemp makes it private)
        os.replace(tmp.name, path)
    except OSError as err:  # read-only deployment: loads still work, just uncached
        logger.info("Not caching dbt specs in %s: %s", path.parent, err)
