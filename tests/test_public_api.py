"""The public API: `from dbx_assets import ...`.

The demo, the benchmarks and the README's examples use library names only through it (read from
the source with ast, like test_architecture); every exported name resolves to what its module
defines; and `import dbx_assets` stays free (the local workspace's processes live under the package)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_INIT = REPO / "dbx_assets" / "__init__.py"
LIBRARY = "dbx_assets.integration"


def _init_tree() -> ast.Module:
    return ast.parse(PACKAGE_INIT.read_text(), filename=str(PACKAGE_INIT))


def _exported() -> list[str]:
    for node in _init_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    raise AssertionError("dbx_assets/__init__.py defines no __all__")


EXPORTED = _exported()


def _type_checking_imports() -> dict[str, str]:
    """name -> module, from the `if TYPE_CHECKING:` block (what type checkers see)."""
    found: dict[str, str] = {}
    for node in _init_tree().body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.unparse(stmt)
                found.update({alias.asname or alias.name: stmt.module for alias in stmt.names})
    return found


def _lazy_exports() -> dict[str, str]:
    """name -> module, from the `_EXPORTS` table `__getattr__` loads names by (what runs)."""
    for node in ast.walk(_init_tree()):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("dbx_assets/__init__.py has no _EXPORTS table")


def _library_imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) of every import of dbx_assets in a file (lazy ones included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dbx_assets":
            found.append((node.lineno, node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] == "dbx_assets"]
    return found


def test_the_exports_are_declared_once_for_type_checkers_and_at_run_time():
    assert sorted(EXPORTED) == sorted(set(EXPORTED)), "__all__ names a name twice"
    assert _type_checking_imports() == _lazy_exports()
    assert set(_lazy_exports()) == set(EXPORTED)
    # only library names are exported, from where they are defined
    assert all(module.startswith(LIBRARY + ".") for module in _lazy_exports().values())


def test_every_exported_name_resolves_to_its_definition():
    import dbx_assets

    for name, module in _lazy_exports().items():
        assert getattr(dbx_assets, name) is getattr(importlib.import_module(module), name), name
    assert set(EXPORTED) <= set(dir(dbx_assets))
    with pytest.raises(AttributeError, match=r"module 'dbx_assets' has no attribute 'NotExported'"):
        dbx_assets.NotExported  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize(
    "path", sorted((REPO / "dbx_assets" / "demo").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_the_demo_uses_only_the_public_api(path: Path):
    """The demo is what a user copies: a library name it needs and cannot import from `dbx_assets` is
    a name missing from the public API."""
    for line, module, names in _library_imports(path):
        where = f"{path.relative_to(REPO)}:{line}"
        assert not module.startswith(LIBRARY), (
            f"{where} imports {', '.join(names) or module} from {module}; import it from dbx_assets "
            "(export it in dbx_assets/__init__.py if it is missing)"
        )
        if module == "dbx_assets":
            missing = sorted(set(names) - set(EXPORTED))
            assert not missing, f"{where} imports {missing} from dbx_assets, which does not export them"


@pytest.mark.parametrize("path", sorted((REPO / "bench").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_benchmarks_import_public_names_from_the_package(path: Path):
    """Benchmarks measure internals too (the deployer, the limits check, the sensor's cursor), but a
    name the public API exports comes from it, as a user would write it."""
    for line, module, names in _library_imports(path):
        public = sorted(set(names) & set(EXPORTED)) if module.startswith(LIBRARY) else []
        assert not public, (
            f"{path.relative_to(REPO)}:{line} imports {public} from {module}; use `from dbx_assets import`"
        )


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_examples_use_only_the_public_api():
    blocks = _readme_python_blocks()
    first_example = blocks[0]
    imports = [
        (node.module, [a.name for a in node.names])
        for block in blocks
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dbx_assets")
    ]
    assert imports, "the README shows no code using dbx_assets"
    assert "from dbx_assets import" in first_example, "the README's first Python example should show the public API"
    for module, names in imports:
        assert module == "dbx_assets", f"the README imports {names} from {module}"
        assert set(names) <= set(EXPORTED), f"the README imports {sorted(set(names) - set(EXPORTED))}, not exported"


def test_importing_the_package_loads_nothing_else():
    """`import dbx_assets` is what every local workspace process (server, cluster driver, task) pays
    first: no Dagster, SDK, Spark, HTTP server or module of ours until a name is used; the standard
    library's `typing` (for `TYPE_CHECKING`) at most."""
    code = (
        "import sys; before = set(sys.modules); import dbx_assets; print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "dbx_assets" in loaded
    others = [m for m in loaded if m != "dbx_assets" and m.split(".")[0].lstrip("_") not in sys.stdlib_module_names]
    assert not others, f"import dbx_assets loads {others}"


def test_the_readmes_first_example_loads_in_the_repository(monkeypatch: pytest.MonkeyPatch):
    """The example a newcomer copies first really defines assets (on this repo's notebooks and dbt project)."""
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(_readme_python_blocks()[0], "README.md", "exec"), namespace)
    keys = {k.to_user_string() for k in namespace["defs"].resolve_all_asset_keys()}
    assert {"bronze_orders", "revenue_report", "fct_daily_revenue"} <= keys
    assert namespace["workflow"].job_clusters["shared"]["cluster_log_conf"]


def test_the_readmes_translator_example_does_what_it_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "notebooks" / "sales").mkdir(parents=True)
    (tmp_path / "notebooks" / "sales" / "bronze_orders.py").write_text("# Databricks notebook source\nprint(1)\n")
    (tmp_path / "dbt_project").symlink_to(REPO / "dbt_project")
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in _readme_python_blocks() if "NotebookTranslator" in b]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    [spec] = namespace["notebooks"].asset_specs()
    assert (spec.key.to_user_string(), spec.group_name) == ("sales/orders", "bronze")
    dbt = namespace["dbt"]
    assert {k.path[0] for k in dbt.model_keys()} == {"analytics"}
    assert {k.to_user_string() for k in dbt.upstream_keys()} == {"silver_orders", "bronze_customers"}
