"""Deployments: one name that keeps what each deployment of a code location creates in a
workspace apart from every other deployment's (a laptop, CI, staging, production, Dagster+
branch deployments), so that two of them sharing a workspace never collide.

The name is part of the job name, the workspace folder, and (through `{deployment}` in the
resource's catalog or schema) the tables the tasks write. Production is a deployment like any
other: nothing here treats a name specially. Pure functions; no Dagster, no workspace calls.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import string

# Dagster+ sets it in every deployment, branch deployments included (e.g. "prod").
DEPLOYMENT_ENV = "DAGSTER_CLOUD_DEPLOYMENT_NAME"
DEFAULT_DEPLOYMENT = "dev"
PLACEHOLDER_FIELD = "deployment"
MAX_LENGTH = 40

# Safe unquoted in a Unity Catalog name, a job name and a workspace folder alike. No `__` and no
# trailing `_`: `<catalog>__<schema>` is how a local Spark metastore stores a catalog's schema.
_SAFE_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_RULE = "lowercase letters, digits and single underscores, starting with a letter"


class DeploymentNameError(ValueError):
    """A deployment name or a `{deployment}` template that cannot be used (raised at definitions load)."""


def validate_deployment(name: str, *, setting: str = "DatabricksResource(deployment=...)") -> str:
    """`name` when it is safe everywhere the deployment is used, else one error naming the fix."""
    if len(name) <= MAX_LENGTH and _SAFE_NAME.match(name):
        return name
    suggestion = normalize_deployment(name)
    raise DeploymentNameError(
        f"Deployment name {name!r} (from {setting}) cannot name a Databricks job, workspace folder and "
        f"catalog: use {_RULE}, at most {MAX_LENGTH} characters, e.g. {suggestion!r}."
    )


def normalize_deployment(raw: str) -> str:
    """A safe name for a deployment named elsewhere (a Dagster+ branch deployment may be called
    `feature/New-Report`): lowercase, other characters as `_`, long names shortened with a hash."""
    name = re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"d_{name}".rstrip("_")
    if len(name) > MAX_LENGTH:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_LENGTH - len(digest) - 1].rstrip('_')}_{digest}"
    return name


def default_deployment() -> str:
    """The deployment Dagster runs in ($DAGSTER_CLOUD_DEPLOYMENT_NAME, made safe), else `dev`."""
    from_dagster = os.environ.get(DEPLOYMENT_ENV, "").strip()
    return normalize_deployment(from_dagster) if from_dagster else DEFAULT_DEPLOYMENT


def validate_template(template: str, *, setting: str) -> str:
    """Accept text with `{deployment}` as its only placeholder, e.g. `dbx_{deployment}`."""
    try:
        placeholders = [
            "{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            for _, field, spec, conv in string.Formatter().parse(template)
            if field is not None
        ]
    except ValueError as err:
        raise DeploymentNameError(
            f"{setting}={template!r} is not a valid template ({err}); the only placeholder is {{deployment}}."
        ) from None
    unknown = sorted({p for p in placeholders if p != "{" + PLACEHOLDER_FIELD + "}"})
    if unknown:
        raise DeploymentNameError(
            f"{setting}={template!r} uses placeholder(s) {', '.join(unknown)}; "
            "the only placeholder is {deployment} (write {{ and }} for literal braces)."
        )
    return template


def expand(template: str | None, deployment: str) -> str | None:
    """The template with `{deployment}` filled in; None stays None."""
    return None if template is None else template.format(deployment=deployment)


def job_name(workflow_name: str, deployment: str) -> str:
    """The Databricks job of `workflow_name` in `deployment`, e.g. `dbx_assets_demo [prod]`."""
    return f"{workflow_name} [{deployment}]"


def deployment_folder(workspace_root: str, deployment: str) -> str:
    """The workspace folder a deployment's files live in, e.g. /Shared/dbx_assets/prod."""
    return posixpath.join(workspace_root.rstrip("/") or "/", deployment)
