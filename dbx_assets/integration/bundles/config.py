"""A Databricks Asset Bundle read as `databricks bundle validate` reads it, at definitions load and
without calling Databricks: `include` globs, `variables` (defaults, per-target values, overrides
passed in Python, `BUNDLE_VAR_<name>` environment variables, complex values), `${...}` references,
`targets` (the default one, `mode: development|production`, target-level resource overrides merged
into the top-level ones) and relative paths resolved against the YAML file that declares them.

Pure: YAML and the file system only. Every problem raises `BundleError` naming the file, the key and
the fix.
"""

from __future__ import annotations

import copy
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbx_assets.integration.jobs.model import WorkflowDefinitionError


class BundleError(WorkflowDefinitionError):
    """A bundle that the Databricks CLI would refuse too (or that dbx_assets cannot run), at load."""


# Fields holding a local path, relative to the YAML file that declares them (the CLI's "path translation").
# Keyed by the path of the field below a task / job / pipeline; `*` is any list item.
_TASK_PATH_FIELDS = (
    ("notebook_task", "notebook_path"),
    ("spark_python_task", "python_file"),
    ("sql_task", "file", "path"),
    ("dbt_task", "project_directory"),
)
_REF = re.compile(r"\$\{([A-Za-z0-9_.\[\]-]+)\}")
_PRESERVED_REF_PREFIXES = ("resources.",)  # ids of resources the CLI creates at deploy


@dataclass(frozen=True)
class LocalPath:
    """A path the bundle declared relative to one of its YAML files, resolved on this machine."""

    path: Path
    declared: str  # as written
    file: Path  # the YAML file that declared it

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class BundleConfig:
    """The bundle after loading, for one target."""

    root: Path  # the folder of databricks.yml (the bundle's sync root)
    file: Path
    name: str
    target: str
    mode: str | None  # "development", "production" or None
    user_name: str  # workspace.current_user.userName used for references
    short_name: str
    variables: Mapping[str, Any]
    workspace: Mapping[str, Any]
    artifacts: Mapping[str, Any]
    jobs: Mapping[str, dict[str, Any]]  # job key -> resolved job settings (paths as LocalPath)
    pipelines: Mapping[str, dict[str, Any]]
    job_files: Mapping[str, Path] = field(default_factory=dict)  # job key -> the YAML file declaring it


def _short_name(user_name: str) -> str:
    """What the CLI derives from a userName: the part before '@', non-alphanumerics as '_'."""
    return re.sub(r"[^A-Za-z0-9]", "_", user_name.split("@", 1)[0]).lower()


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"{what}: {path} does not exist. Check the path (relative to the bundle root).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise BundleError(f"{path}{where} is not valid YAML: {getattr(err, 'problem', err)}. Fix the file.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BundleError(f"{path}: a bundle file must be a mapping at the top level, got {type(data).__name__}.")
    return data


def _translate_paths(resources: Any, yaml_file: Path) -> Any:
    """Relative paths of jobs (task files, dbt projects, wheel libraries, environment dependencies)
    become LocalPaths resolved against `yaml_file`'s folder, as the CLI does before merging targets."""
    if not isinstance(resources, dict):
        return resources
    base = yaml_file.parent
    for job in (resources.get("jobs") or {}).values():
        if not isinstance(job, dict):
            continue
        for task in job.get("tasks") or []:
            if not isinstance(task, dict):
                continue
            for path_fields in _TASK_PATH_FIELDS:
                parent: Any = task
                for name in path_fields[:-1]:
                    parent = parent.get(name) if isinstance(parent, dict) else None
                leaf = path_fields[-1]
                if isinstance(parent, dict) and isinstance(parent.get(leaf), str):
                    parent[leaf] = _local(parent[leaf], base, yaml_file)
            for library in task.get("libraries") or []:
                for kind in ("whl", "jar", "requirements"):
                    if isinstance(library, dict) and isinstance(library.get(kind), str):
                        library[kind] = _local(library[kind], base, yaml_file)
        for env in job.get("environments") or []:
            spec = env.get("spec") if isinstance(env, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("dependencies"), list):
                spec["dependencies"] = [
                    _local(d, base, yaml_file) if isinstance(d, str) and _is_local_dependency(d) else d
                    for d in spec["dependencies"]
                ]
    return resources


def _is_local_dependency(dep: str) -> bool:
    return dep.startswith(("./", "../")) or (dep.endswith(".whl") and "://" not in dep and not dep.startswith("/"))


def _local(value: str, base: Path, yaml_file: Path) -> str | LocalPath:
    """Workspace paths (/Workspace/..., dbfs:/, ${...}) stay as written; a relative path is local."""
    if value.startswith(("/", "dbfs:", "s3:", "abfss:", "gs:", "${", "{{")) or "://" in value:
        return value
    return LocalPath((base / value).resolve(), value, yaml_file)


def _merge(base: Any, override: Any) -> Any:
    """The CLI's target merge: mappings merge key by key; job `tasks`, `job_clusters`,
    `environments` and `parameters` merge item by item on their key; any other value is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        item_key = _list_item_key(base + override)
        if item_key is not None:
            merged_items = {item[item_key]: item for item in base}
            for item in override:
                k = item[item_key]
                merged_items[k] = _merge(merged_items[k], item) if k in merged_items else copy.deepcopy(item)
            return list(merged_items.values())
    return copy.deepcopy(override)


def _list_item_key(items: list[Any]) -> str | None:
    for key in ("task_key", "job_cluster_key", "environment_key", "name"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


@dataclass
class _Resolver:
    """`${...}` references, resolved until nothing changes (a variable may reference another)."""

    values: dict[str, Any]  # dotted path -> value (bundle.name, var.x, workspace.file_path, ...)
    resources: Mapping[str, Mapping[str, Any]]  # "jobs" -> {key: settings}, "pipelines" -> ...
    file: Path

    def lookup(self, ref: str, where: str) -> Any:
        if ref in self.values:
            return self.values[ref]
        head, _, rest = ref.partition(".")
        if head == "var" and "." in rest:  # a field of a complex variable: ${var.cluster.node_type_id}
            name, _, path = rest.partition(".")
            if f"var.{name}" in self.values:
                value = self.values[f"var.{name}"]
                for part in path.split("."):
                    if not isinstance(value, dict) or part not in value:
                        raise BundleError(
                            f"{self.file}: {where} references ${{{ref}}}: variable '{name}' has no field '{path}'."
                        )
                    value = value[part]
                return value
        if head == "var":
            declared = ", ".join(sorted(k[4:] for k in self.values if k.startswith("var."))) or "none"
            raise BundleError(
                f"{self.file}: {where} references ${{{ref}}}, but variable '{rest}' is not declared "
                f"(declared: {declared}). Declare it under `variables:` in databricks.yml."
            )
        if head == "resources":
            kind, _, tail = rest.partition(".")
            name, _, attr = tail.partition(".")
            if name not in self.resources.get(kind, {}):
                raise BundleError(
                    f"{self.file}: {where} references ${{{ref}}}, but the bundle declares no {kind} '{name}' "
                    f"(declared {kind}: {', '.join(sorted(self.resources.get(kind, {}))) or 'none'})."
                )
            return None  # an id the CLI only knows after deploying it: kept as written
        raise BundleError(
            f"{self.file}: {where} references ${{{ref}}}, which dbx_assets does not know. Supported: ${{var.*}}, "
            "${bundle.name}, ${bundle.target}, ${workspace.current_user.userName|short_name}, "
            "${workspace.root_path|file_path|artifact_path|state_path|host}, ${resources.<kind>.<name>.*}."
        )

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, LocalPath):
            return value
        if not isinstance(value, str) or "${" not in value:
            return value
        for _ in range(20):
            whole = _REF.fullmatch(value)
            if whole:
                found = self.lookup(whole.group(1), where)
                if found is None:
                    return value
                if not isinstance(found, str):  # a complex variable keeps its type
                    return self.resolve(found, where)
                new = found
            else:

                def sub(m: re.Match[str]) -> str:
                    found = self.lookup(m.group(1), where)
                    if found is None:
                        return m.group(0)
                    if isinstance(found, (dict, list)):
                        raise BundleError(
                            f"{self.file}: {where} uses complex variable ${{{m.group(1)}}} inside a string; "
                            "a complex variable must be the whole value."
                        )
                    return str(found)

                new = _REF.sub(sub, value)
            if new == value:
                return value
            value = new
            if "${" not in value:
                return value
        raise BundleError(f"{self.file}: {where}: references never finish resolving (a cycle?): {value!r}.")


def load_bundle(
    path: Path | str,
    *,
    target: str | None = None,
    variables: Mapping[str, Any] | None = None,
    user_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> BundleConfig:
    """Read `databricks.yml` (a file, or the folder holding it) for `target` (default: the target
    marked `default: true`). `variables` are the CLI's `--var name=value`; `user_name` stands for
    `workspace.current_user.userName` (default: this machine's login; definitions load never asks
    Databricks)."""
    file = Path(path)
    if file.is_dir():
        file = file / "databricks.yml"
    file = file.resolve()
    root_doc = _read_yaml(file, "Databricks bundle")
    root = file.parent
    env = os.environ if environ is None else environ
    bundle = root_doc.get("bundle") or {}
    if not isinstance(bundle, dict) or not bundle.get("name"):
        raise BundleError(f"{file}: `bundle.name` is missing. Add `bundle:\\n  name: <your bundle>`.")

    # include globs, relative to databricks.yml (each file's own paths relative to itself)
    documents: list[tuple[Path, dict[str, Any]]] = [(file, root_doc)]
    for pattern in root_doc.get("include") or []:
        matches = sorted(p for p in root.glob(pattern) if p.is_file() and p.resolve() != file)
        if not matches and not any(ch in pattern for ch in "*?["):
            raise BundleError(f"{file}: include '{pattern}' names no file under {root}. Fix or remove the entry.")
        documents += [(p.resolve(), _read_yaml(p, f"include '{pattern}' of {file.name}")) for p in matches]

    resources: dict[str, dict[str, Any]] = {}
    declared_in: dict[tuple[str, str], Path] = {}
    top_variables: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for doc_file, doc in documents:
        for kind, items in (_translate_paths(copy.deepcopy(doc.get("resources") or {}), doc_file)).items():
            for name, settings in (items or {}).items():
                if (kind, name) in declared_in:
                    raise BundleError(
                        f"{doc_file}: resources.{kind}.{name} is also declared in {declared_in[kind, name]}. "
                        "A resource is declared once; rename one of them."
                    )
                declared_in[kind, name] = doc_file
                resources.setdefault(kind, {})[name] = settings
        for name, decl in (doc.get("variables") or {}).items():
            top_variables[name] = decl if isinstance(decl, dict) else {"default": decl}
        for name, tgt in (doc.get("targets") or {}).items():
            tgt = copy.deepcopy(tgt or {})
            tgt["resources"] = _translate_paths(tgt.get("resources") or {}, doc_file)
            targets[name] = _merge(targets.get(name, {}), tgt)

    # the target
    if target is None:
        defaults = [n for n, t in targets.items() if t.get("default")]
        if len(defaults) > 1:
            raise BundleError(f"{file}: targets {', '.join(defaults)} are all marked `default: true`; mark one.")
        if defaults:
            target = defaults[0]
        elif len(targets) == 1:
            target = next(iter(targets))
        elif not targets:
            target = "default"
        else:
            raise BundleError(
                f"{file}: no target is marked `default: true`; pass target= one of {', '.join(sorted(targets))}."
            )
    elif targets and target not in targets:
        raise BundleError(f"{file}: unknown target '{target}'. Targets: {', '.join(sorted(targets))}.")
    tgt = targets.get(target, {})
    mode = tgt.get("mode")
    if mode not in (None, "development", "production"):
        raise BundleError(f"{file}: targets.{target}.mode is {mode!r}; use development or production.")

    # merge the target's resources, workspace, artifacts and bundle settings over the top level
    for kind, items in (tgt.get("resources") or {}).items():
        for name, settings in (items or {}).items():
            resources.setdefault(kind, {})
            resources[kind][name] = _merge(resources[kind].get(name, {}), settings)
    workspace = _merge(root_doc.get("workspace") or {}, tgt.get("workspace") or {})
    artifacts = _merge(root_doc.get("artifacts") or {}, tgt.get("artifacts") or {})
    bundle = _merge(bundle, tgt.get("bundle") or {})

    # variables: --var > BUNDLE_VAR_<name> > the target's value > the default
    user = user_name or workspace.get("current_user", {}).get("userName") or getpass.getuser()
    short = _short_name(user)
    overrides = dict(variables or {})
    for name in overrides:
        if name not in top_variables:
            raise BundleError(
                f"{file}: variables={{'{name}': ...}} overrides a variable the bundle does not declare "
                f"(declared: {', '.join(sorted(top_variables)) or 'none'})."
            )
    values: dict[str, Any] = {}
    for name, decl in top_variables.items():
        target_value = (tgt.get("variables") or {}).get(name)
        if isinstance(target_value, dict) and decl.get("type") != "complex":
            target_value = target_value.get("default")
        if "lookup" in decl and name not in overrides and target_value is None:
            raise BundleError(
                f"{file}: variable '{name}' is a `lookup`, which the CLI resolves by asking the workspace; "
                "definitions load never does. Pass its value: DatabricksBundle(..., variables={'%s': ...})." % name
            )
        for candidate in (overrides.get(name), env.get(f"BUNDLE_VAR_{name}"), target_value, decl.get("default")):
            if candidate is not None:
                values[f"var.{name}"] = candidate
                break
        else:
            raise BundleError(
                f"{file}: no value assigned to required variable '{name}' for target '{target}'. Give it a "
                f"default, set it under targets.{target}.variables, pass DatabricksBundle(..., variables="
                f"{{'{name}': ...}}) or set BUNDLE_VAR_{name}."
            )
    for name in tgt.get("variables") or {}:
        if name not in top_variables:
            raise BundleError(
                f"{file}: targets.{target}.variables.{name} assigns a variable that is not declared. "
                f"Declare it under the top-level `variables:`."
            )
    root_path = workspace.get("root_path") or f"/Workspace/Users/{user}/.bundle/${{bundle.name}}/${{bundle.target}}"
    values.update(
        {
            "bundle.name": bundle["name"],
            "bundle.target": target,
            "workspace.current_user.userName": user,
            "workspace.current_user.short_name": short,
            "workspace.host": workspace.get("host", ""),
            "workspace.root_path": root_path,
            "workspace.file_path": workspace.get("file_path") or "${workspace.root_path}/files",
            "workspace.artifact_path": workspace.get("artifact_path") or "${workspace.root_path}/artifacts",
            "workspace.state_path": workspace.get("state_path") or "${workspace.root_path}/state",
        }
    )
    resolver = _Resolver(values, resources, file)
    for key in list(values):  # variables may reference each other and the workspace
        values[key] = resolver.resolve(values[key], key)
    for kind, items in resources.items():
        for name, settings in items.items():
            where_file = declared_in.get((kind, name), file)
            resolver.file = where_file
            items[name] = resolver.resolve(settings, f"resources.{kind}.{name}")
    resolver.file = file
    artifacts = resolver.resolve(artifacts, "artifacts")
    workspace = {
        **resolver.resolve(workspace, "workspace"),
        "root_path": values["workspace.root_path"],
        "file_path": values["workspace.file_path"],
    }

    jobs = {
        name: _apply_mode(dict(job), name, mode, short, tgt.get("presets") or {})
        for name, job in (resources.get("jobs") or {}).items()
    }
    return BundleConfig(
        root=root,
        file=file,
        name=bundle["name"],
        target=target,
        mode=mode,
        user_name=user,
        short_name=short,
        variables={k[4:]: v for k, v in values.items() if k.startswith("var.")},
        workspace=workspace,
        artifacts=artifacts,
        jobs=jobs,
        pipelines=resources.get("pipelines") or {},
        job_files={name: declared_in.get(("jobs", name), file) for name in jobs},
    )


def _apply_mode(
    job: dict[str, Any], key: str, mode: str | None, short_name: str, presets: Mapping[str, Any]
) -> dict[str, Any]:
    """`mode: development`: name prefix `[dev <short_name>] `, schedules and triggers paused, a `dev`
    tag (presets `name_prefix`, `trigger_pause_status`, `tags` win, as in the CLI)."""
    job.setdefault("name", key)
    prefix = presets.get("name_prefix")
    pause = presets.get("trigger_pause_status")
    tags = dict(presets.get("tags") or {})
    if mode == "development":
        prefix = f"[dev {short_name}] " if prefix is None else prefix
        pause = pause or "PAUSED"
        tags.setdefault("dev", short_name)
    if prefix:
        job["name"] = f"{prefix}{job['name']}"
    if pause:
        for trigger in ("schedule", "trigger", "continuous"):
            if isinstance(job.get(trigger), dict):
                job[trigger] = {**job[trigger], "pause_status": pause}
    if tags:
        job["tags"] = {**tags, **(job.get("tags") or {})}
    return job
