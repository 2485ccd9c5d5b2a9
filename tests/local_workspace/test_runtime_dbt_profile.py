"""The profile the runtime generates for a dbt task with `warehouse_id` (what Databricks does
for a warehouse dbt task): pure file generation, no JVM. The real-Spark build through it is
in test_runtime_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dbx_assets.local_workspace.runtime.contract import DbtInvocation
from dbx_assets.local_workspace.runtime.dbt_task import ProfileError, generated_profile


def _project(tmp_path: Path, profile: str | None = "shop") -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    lines = ["name: shop_project", "version: '1.0'", "config-version: 2"] + ([f"profile: {profile}"] if profile else [])
    (project / "dbt_project.yml").write_text("\n".join(lines) + "\n")
    (project / "profiles.yml").write_text("shop:\n  target: x\n  outputs:\n    x: {type: databricks}\n")
    return project


def _invocation(project: Path, **kw) -> DbtInvocation:
    return DbtInvocation(
        commands=("dbt build",), project_dir=project, profiles_dir=None, warehouse_id="4c0a1d5e7b9f2a63", **kw
    )


def test_the_profile_is_dbt_databricks_on_this_cluster_with_the_tasks_catalog_and_schema(tmp_path):
    project = _project(tmp_path)
    invocation = _invocation(project, schema="analytics", catalog="Main", workspace_host="127.0.0.1:8123")
    out = generated_profile(invocation, project, tmp_path / "out", cluster_id="0123-456789-abcdefgh")
    assert out == tmp_path / "out" / "dbt_profile"
    text = (out / "profiles.yml").read_text()
    assert yaml.safe_load(text) == {
        "shop": {
            "target": "default",
            "outputs": {
                "default": {
                    "type": "databricks",
                    "host": "127.0.0.1:8123",
                    # a cluster's path: dbt-databricks asks this cluster which runtime it is
                    "http_path": "sql/protocolv1/o/0/0123-456789-abcdefgh",
                    "token": "{{ env_var('DBT_ACCESS_TOKEN') }}",  # never the token itself on disk
                    "catalog": "main",
                    "schema": "analytics",
                    "threads": 4,
                }
            },
        }
    }
    assert "SQL warehouse 4c0a1d5e7b9f2a63 (catalog: Main)" in text  # recorded for whoever reads the run's files


@pytest.mark.parametrize("catalog", [None, "hive_metastore", "main"])
def test_schema_defaults_to_default_and_catalog_to_main(tmp_path, catalog):
    project = _project(tmp_path)
    out = generated_profile(_invocation(project, catalog=catalog), project, tmp_path / "out")
    target = yaml.safe_load((out / "profiles.yml").read_text())["shop"]["outputs"]["default"]
    assert target["schema"] == "default"
    assert target["catalog"] == (catalog or "main")


def test_a_project_without_a_profile_name_is_refused(tmp_path):
    project = _project(tmp_path, profile=None)
    with pytest.raises(ProfileError, match="names no `profile:`"):
        generated_profile(_invocation(project), project, tmp_path / "out")
