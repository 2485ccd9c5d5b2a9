"""The three parts stay three parts: no import cycles, the local workspace imports nothing from
Dagster or the rest of dbx_assets (and its packages lean one way: the engine knows nothing of
HTTP), the library knows nothing of the demo, and nothing reaches into Dagster's private modules.
Inside the library, folders are layers (no two import each other) and the Jobs API layer knows
nothing of Dagster. Read from the source (ast), so it costs no imports."""

from __future__ import annotations

import ast
import functools
import graphlib
import itertools
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "dbx_assets"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(imported module, imported names) for every import in the file: lazy ones and those under
    `if TYPE_CHECKING:` included (a cycle of types is still a cycle in the design)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, tuple[str, ...]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, tuple(alias.name for alias in node.names)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _internal_target(imported: str, names: tuple[str, ...]) -> list[str]:
    """The dbx_assets modules an import statement loads (`from pkg import mod` loads pkg.mod)."""
    targets = []
    if imported in MODULES:
        targets.append(imported)
    targets += [f"{imported}.{n}" for n in names if f"{imported}.{n}" in MODULES]
    return targets


@functools.cache  # parsing every module takes a moment; several rules walk the same graph
def _graph() -> dict[str, set[str]]:
    return {
        module: {t for imported, names in _imports(path) for t in _internal_target(imported, names) if t != module}
        for module, path in MODULES.items()
    }


def test_there_are_no_import_cycles():
    try:
        list(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "root"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) == "local_workspace"))
def test_the_local_workspace_imports_nothing_from_dagster_or_the_rest(module):
    for imported, _ in _imports(MODULES[module]):
        top = imported.split(".")[0]
        assert not top.startswith("dagster"), f"{module} imports {imported}"
        if top == "dbx_assets":
            assert imported.startswith("dbx_assets.local_workspace"), f"{module} imports {imported}"


# The local workspace's packages and those each may import. Its top-level modules (app, launcher,
# __main__) assemble them all. The APIs and the pages are served through the HTTP front door, which
# knows no API; the engine (runs, clusters, state) knows nothing of HTTP or the APIs; the runtime
# (the code in a cluster's driver process) knows only itself.
WORKSPACE_PACKAGES: dict[str, set[str]] = {
    "api": {"http", "engine", "runtime"},
    "pages": {"http", "engine"},
    "http": {"engine"},
    "engine": {"runtime"},
    "runtime": set(),
}


def _workspace_package(module: str) -> str | None:
    """The local workspace's package a module belongs to; None outside them (its top-level modules)."""
    parts = module.split(".")
    if parts[:2] != ["dbx_assets", "local_workspace"] or len(parts) < 3:
        return None
    return parts[2] if (PACKAGE_ROOT / "local_workspace" / parts[2] / "__init__.py").exists() else None


def test_every_local_workspace_package_has_its_rule():
    packages = {p.parent.name for p in (PACKAGE_ROOT / "local_workspace").glob("*/__init__.py")}
    assert packages == set(WORKSPACE_PACKAGES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _workspace_package(m)))
def test_local_workspace_packages_import_only_those_below_them(module):
    """In particular engine/ and runtime/ never import http/ or api/."""
    own = _workspace_package(module)
    assert own is not None
    allowed = WORKSPACE_PACKAGES[own] | {own}
    for imported, names in _imports(MODULES[module]):
        for target in _internal_target(imported, names):
            if _part(target) == "local_workspace":
                assert _workspace_package(target) in allowed, f"{module} ({own}/) imports {target}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) == "integration"))
def test_the_library_knows_nothing_of_the_demo(module):
    for imported, _ in _imports(MODULES[module]):
        assert not imported.startswith("dbx_assets.demo"), f"{module} imports {imported}"
        if imported.startswith("dbx_assets.local_workspace"):
            # Only the resource may start the embedded workspace; tasks never know it is local.
            assert module == "dbx_assets.integration.resource", f"{module} imports {imported}"


def test_no_private_dagster_api():
    offenders = []
    for module, path in MODULES.items():
        for imported, names in _imports(path):
            if not imported.split(".")[0].startswith("dagster"):
                continue
            private_module = any(part.startswith("_") for part in imported.split(".")[1:])
            private_names = [n for n in names if n.startswith("_")]
            if private_module or private_names:
                offenders.append(f"{module}: from {imported} import {', '.join(names)}")
    assert not offenders, "private Dagster API used:\n" + "\n".join(offenders)


def _runtime_imports(path: Path) -> list[str]:
    """Modules a file imports when it runs: all of them but those under `if TYPE_CHECKING:`."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def test_package_roots_stay_empty():
    """Task processes import dbx_assets.local_workspace.runtime.*: the parents must import nothing when
    they run. The package root's public API names its modules for type checkers only and loads them on
    first use (PEP 562 `__getattr__`, through importlib). The local workspace's packages that only group
    modules import nothing either."""
    workspace = PACKAGE_ROOT / "local_workspace"
    grouping = [workspace / package / "__init__.py" for package in ("api", "engine", "http")]
    for init in (workspace / "__init__.py", *grouping):
        assert not _imports(init), f"{init} imports something"
    runtime = _runtime_imports(PACKAGE_ROOT / "__init__.py")
    assert set(runtime) <= {"__future__", "typing", "importlib"}, (
        f"dbx_assets/__init__.py imports {runtime} when it runs"
    )


# -- the library's folders ---------------------------------------------------------------------------
INTEGRATION = "dbx_assets.integration"
JOBS = f"{INTEGRATION}.jobs"


def _folder(module: str) -> str | None:
    """A module's node in the library's folder graph: its sub-package (`integration.jobs`), or for a
    top-level module of the library the module itself (`integration.tables`); None outside the library."""
    if module != INTEGRATION and not module.startswith(INTEGRATION + "."):
        return None
    return ".".join(module.split(".")[1:3])


def _folder_imports() -> dict[tuple[str, str], str]:
    """(importing folder, imported folder) -> one import that makes the arrow, e.g. 'a.b imports c.d'."""
    arrows: dict[tuple[str, str], str] = {}
    for module, targets in _graph().items():
        source = _folder(module)
        for target in sorted(targets):
            imported = _folder(target)
            if source is not None and imported is not None and imported != source:
                arrows.setdefault((source, imported), f"{module} imports {target}")
    return arrows


def test_no_folder_of_the_library_imports_a_folder_that_imports_it_back():
    """Folders are layers: jobs/ (the Jobs API) under sources/, dbt/ and pipes/, the Dagster-facing
    workflow/ on top. A file-level cycle check misses two folders leaning on each other through
    different files."""
    arrows = _folder_imports()
    both_ways = [
        f"{a} <-> {b}: {arrows[a, b]}; {arrows[b, a]}" for a, b in sorted(arrows) if a < b and (b, a) in arrows
    ]
    assert not both_ways, "folders of the library import each other:\n" + "\n".join(both_ways)
    graph: dict[str, set[str]] = {}
    for a, b in arrows:
        graph.setdefault(a, set()).add(b)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        cycle = err.args[1]  # each node is imported by the next one
        steps = [arrows[importer, imported] for imported, importer in itertools.pairwise(cycle)]
        pytest.fail(f"folder cycle {' <- '.join(cycle)}:\n" + "\n".join(steps))


def test_the_jobs_layer_imports_nothing_from_dagster():
    """integration/jobs/ is the Jobs API side: nothing it imports, directly or through other modules of
    dbx_assets, is Dagster (dagster, dagster_dbt, dagster_pipes). Every folder that knows task sources or
    Dagster assets imports dagster, so this also keeps them out of jobs/."""
    jobs_modules = sorted(m for m in MODULES if m == JOBS or m.startswith(JOBS + "."))
    assert jobs_modules, "dbx_assets/integration/jobs/ (the Jobs API layer) is missing"
    graph = _graph()
    offenders = []
    for start in jobs_modules:
        path_to = {start: [start]}
        pending = [start]
        while pending:
            module = pending.pop()
            for imported, _ in _imports(MODULES[module]):
                if imported.split(".")[0].startswith("dagster"):
                    offenders.append(f"{' -> '.join(path_to[module])} imports {imported}")
            for target in sorted(graph[module] - set(path_to)):
                path_to[target] = [*path_to[module], target]
                pending.append(target)
    assert not offenders, "the jobs layer reaches Dagster:\n" + "\n".join(sorted(set(offenders)))
