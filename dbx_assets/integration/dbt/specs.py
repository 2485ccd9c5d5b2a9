"""dbt manifest -> Dagster asset specs and asset check specs, by dagster-dbt's public API.

Specs come from `build_dbt_asset_specs`, check specs from `@dbt_assets` (its AssetsDefinition's
`check_specs`): exactly what dagster-dbt itself declares for the same manifest and translator,
including tests on sources when the translator's settings enable them.

dagster-dbt always runs dbt's selection engine, even to select everything: importing dbt.graph +
networkx and hydrating the manifest costs ~1 s per code-server load at 500 models. So the result
is cached on disk next to the manifest, keyed by the manifest's bytes, the Dagster/dagster-dbt/
dbt versions and the translator's identity (its class, the source of the module defining it and
its state). Any miss, unreadable or stale file just rebuilds; a cache that cannot be written is
skipped. The cache is a pickle: it is as trusted as the project directory it lives in.
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, build_dbt_asset_specs, dbt_assets

from dbx_assets.integration.dbt.manifest import LoadedManifest

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "dbx_assets_specs"  # under the manifest's directory (dbt's target/)
_FORMAT = "1"  # bump when the cached payload changes shape

Specs = tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]


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
    manifest: dict[str, Any], translator: DagsterDbtTranslator, *, cache: SpecsCache | None = None
) -> Specs:
    """Every dbt asset spec and check spec of the manifest (dagster-dbt's default selection),
    sorted by key; from `cache` when it holds them for this manifest and translator."""
    slot = _cache_slot(cache, translator) if cache else None  # before any use of the translator
    if slot:
        cached = _read(*slot, manifest, translator)
        if cached is not None:
            return cached
    specs = _build(manifest, translator)
    if slot:
        _write(*slot, specs, manifest, translator)
    return specs


def _build(manifest: dict[str, Any], translator: DagsterDbtTranslator) -> Specs:
    specs = build_dbt_asset_specs(manifest=manifest, dagster_dbt_translator=translator)

    @dbt_assets(manifest=manifest, dagster_dbt_translator=translator, name="dbx_assets_dbt_check_specs")
    def check_source(context):  # never executed: only its check specs are read
        raise NotImplementedError

    return (
        sorted(specs, key=lambda s: s.key.to_user_string()),
        sorted(check_source.check_specs, key=lambda c: (c.asset_key.to_user_string(), c.name)),
    )


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


def _cache_slot(cache: SpecsCache, translator: DagsterDbtTranslator) -> tuple[Path, str] | None:
    """(file, key): one file per translator identity, holding the specs of the latest manifest."""
    identity = translator_identity(translator)
    if identity is None:
        return None
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


class _Pickler(pickle.Pickler):
    """Pickles specs; the live manifest and translator (which dagster-dbt puts in each spec's
    metadata) are stored as references and re-attached on load, not copied."""

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


def _read(path: Path, key: str, manifest: dict[str, Any], translator: DagsterDbtTranslator) -> Specs | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header, _, payload = raw.partition(b"\n")
    if header.decode(errors="replace") != key:
        return None
    try:
        specs, checks = _Unpickler(io.BytesIO(payload), {"manifest": manifest, "translator": translator}).load()
    except Exception as err:  # a torn or foreign file: rebuild
        logger.warning("Ignoring unreadable dbt specs cache %s (%s: %s).", path, type(err).__name__, err)
        return None
    return specs, checks


def _write(path: Path, key: str, specs: Specs, manifest: dict[str, Any], translator: DagsterDbtTranslator) -> None:
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, {id(manifest): "manifest", id(translator): "translator"}).dump(specs)
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
