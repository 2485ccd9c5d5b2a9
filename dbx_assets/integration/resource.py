"""The Databricks resource: one place that owns every connection to a workspace.

It wraps the official `databricks-sdk` WorkspaceClient. Host and credentials follow the
SDK's unified auth (arguments, `DATABRICKS_*` env vars, a `~/.databrickscfg` profile,
PAT or OAuth M2M). With no host configured anywhere it points at the embedded local
workspace, starting it if needed, so `dagster dev` works on a laptop with no settings.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster import ConfigurableResource, Failure
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from dbx_assets.integration.deployment import (
    DEPLOYMENT_ENV,
    default_deployment,
    deployment_folder,
    expand,
    validate_deployment,
    validate_template,
)
from dbx_assets.integration.jobs.outage import (
    DEFAULT_TOLERANCE_SECONDS,
    WATCH_HTTP_TIMEOUT_SECONDS,
    WATCH_RETRY_SECONDS,
)
from dbx_assets.integration.redaction import redact
from dbx_assets.integration.sources.base import DeployTarget

if TYPE_CHECKING:  # at run time imported where used: loading definitions must not import the whole SDK
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config
    from databricks.sdk.errors import DatabricksError

LOCAL_STATE_DIR_ENV = "DBX_LOCAL_STATE_DIR"
SQL_WAREHOUSE_ENV = "DATABRICKS_SQL_WAREHOUSE"
EMBEDDED_WATCH_RETRY_SECONDS = 5
# Lets a Dagster+ deployment run on the embedded local workspace (off: it must name a real one).
ALLOW_EMBEDDED_ENV = "DBX_ALLOW_LOCAL_WORKSPACE"


def default_local_state_dir() -> Path:
    return Path(os.environ.get(LOCAL_STATE_DIR_ENV) or Path.cwd() / ".local_workspace").resolve()


class WorkspaceConnectionError(Failure):
    """A workspace could not be reached or rejected the credentials (message names host and fix)."""


class DatabricksResource(ConfigurableResource):
    """A Databricks workspace. Leave everything unset to use the embedded local workspace."""

    host: str | None = Field(
        default=None,
        description="Workspace URL, e.g. https://adb-123.azuredatabricks.net. Unset (and no "
        "DATABRICKS_HOST/DATABRICKS_CONFIG_PROFILE): use the embedded local workspace.",
    )
    token: str | None = Field(
        default=None, description="Personal access token; pass EnvVar('DATABRICKS_TOKEN'), never a literal."
    )
    client_id: str | None = Field(default=None, description="OAuth M2M service principal client id.")
    client_secret: str | None = Field(
        default=None, description="OAuth M2M secret; pass EnvVar('DATABRICKS_CLIENT_SECRET')."
    )
    profile: str | None = Field(default=None, description="A ~/.databrickscfg profile name.")
    local_state_dir: str | None = Field(
        default=None,
        description=f"State dir of the embedded local workspace (default ${LOCAL_STATE_DIR_ENV} or ./.local_workspace).",
    )
    deployment: str | None = Field(
        default=None,
        description="Names everything this code location creates in the workspace: the job "
        "('<workflow> [<deployment>]'), the folder (<workspace_root>/<deployment>) and, through {deployment} in "
        f"catalog/schema_name, the tables. Lowercase letters, digits, single underscores. Unset: ${DEPLOYMENT_ENV} "
        "(set by Dagster+, branch deployments included; made safe), else 'dev'.",
    )
    workspace_root: str = Field(
        default="/Shared/dbx_assets",
        description="Workspace folder whose <deployment> subfolder the notebooks and the dbt project deploy to.",
    )
    sql_warehouse: str | None = Field(
        default=None,
        description=f"SQL warehouse (id or name) that dbt tasks run on. Unset: ${SQL_WAREHOUSE_ENV}, else the "
        "workspace's only warehouse.",
    )
    catalog: str | None = Field(
        default=None,
        description="Unity Catalog catalog that notebooks (their `catalog` parameter) and dbt write to; may contain "
        "{deployment}, e.g. 'analytics_{deployment}' (unset: the workspace's default, shared by deployments).",
    )
    schema_name: str | None = Field(
        default=None,
        description="Schema that dbt writes to (notebooks get it as `schema`); may contain {deployment} "
        "(unset: the dbt source's default schema).",
    )
    retry_timeout_seconds: int = Field(
        default=300, description="How long the SDK retries transient failures (429, 5xx, dropped connections)."
    )
    outage_tolerance_seconds: int = Field(
        default=DEFAULT_TOLERANCE_SECONDS,
        description="How long a step keeps waiting for a workspace that stopped answering while its run goes on "
        "there (the run does not stop because Dagster lost contact). The step logs the outage within a minute, "
        "keeps polling with backoff and continues when contact returns; past this, it fails naming the run.",
    )

    _client: WorkspaceClient | None = PrivateAttr(default=None)
    _http_timeout_seconds: float | None = PrivateAttr(default=None)

    # "before": an EnvVar is still itself here (later it is its variable's name); it is checked once
    # Dagster resolves it, when the resource is built for a run.
    @field_validator("deployment", mode="before")
    @classmethod
    def _safe_deployment(cls, value: object) -> object:
        if isinstance(value, str) and not isinstance(value, dg.EnvVar):
            validate_deployment(value)
        return value

    @field_validator("catalog", "schema_name", mode="before")
    @classmethod
    def _deployment_templates(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not isinstance(value, dg.EnvVar):
            validate_template(value, setting=f"DatabricksResource({info.field_name}=...)")
        return value

    def deployment_name(self) -> str:
        """This code location's deployment: the setting, else Dagster+'s deployment, else `dev`."""
        return validate_deployment(self.deployment) if self.deployment else default_deployment()

    @property
    def _uses_embedded_workspace(self) -> bool:
        """True when no workspace is configured anywhere, so the embedded one is used."""
        configured = (
            self.host
            or self.profile
            or os.environ.get("DATABRICKS_HOST")
            or os.environ.get("DATABRICKS_CONFIG_PROFILE")
        )
        return not configured

    def get_client(self) -> WorkspaceClient:
        if self._client is None:
            from databricks.sdk import WorkspaceClient  # here, not at load: the SDK imports every service

            self._client = WorkspaceClient(config=self._config())
        return self._client

    def get_client_with_retry_timeout(
        self, retry_timeout_seconds: int, *, http_timeout_seconds: float | None = None
    ) -> WorkspaceClient:
        """A separate client with a shorter retry budget (and optionally a shorter HTTP timeout per
        request), e.g. for one sensor tick. Both must be set before the client is built: building it
        already calls the workspace."""
        quick = self.model_copy(update={"retry_timeout_seconds": retry_timeout_seconds})
        quick._client = None  # model_copy carries private attributes over; build a fresh client
        quick._http_timeout_seconds = http_timeout_seconds
        return quick.get_client()

    def get_watch_client(self) -> WorkspaceClient:
        """The client a step watches its run through: the SDK gives up on an unreachable workspace
        within WATCH_RETRY_SECONDS (or this resource's shorter retry budget), so the step can say so
        and ride the outage out itself (dbx_assets.integration.jobs.outage). The embedded workspace is
        on this machine, where a refused connection means its server is gone: 5 s, then a restart."""
        budget = EMBEDDED_WATCH_RETRY_SECONDS if self._uses_embedded_workspace else WATCH_RETRY_SECONDS
        return self.get_client_with_retry_timeout(
            min(self.retry_timeout_seconds, budget), http_timeout_seconds=WATCH_HTTP_TIMEOUT_SECONDS
        )

    def revive_embedded_workspace(self, *clients: WorkspaceClient) -> str | None:
        """The embedded local workspace only: if its server is gone (killed, crashed), start it again on
        the same state dir, as a Databricks control plane comes back, and point `clients` at it should its
        address have changed. Returns the address when it restarted the server; None otherwise (a real
        workspace, or a server that is alive)."""
        if not self._uses_embedded_workspace:
            return None
        from dbx_assets.local_workspace.launcher import ensure_running, server_running

        if server_running(self._local_state_dir):
            return None  # alive, maybe slow: a restart would not help
        connection = ensure_running(self._local_state_dir, timeout=30)
        for client in clients:
            if client.config.host != connection.host:
                client.config.host = connection.host  # the SDK reads it per request; the token is unchanged
        return connection.host

    @cached_property
    def _local_state_dir(self) -> Path:
        return Path(self.local_state_dir).resolve() if self.local_state_dir else default_local_state_dir()

    def _config(self) -> Config:
        from databricks.sdk.config import Config

        if self._uses_embedded_workspace:
            dagster_plus = os.environ.get(DEPLOYMENT_ENV)
            if dagster_plus and not os.environ.get(ALLOW_EMBEDDED_ENV):
                # A Dagster+ code location missing its workspace settings must not quietly run on a
                # throwaway local workspace (its "production" tables would live on that container's disk).
                raise WorkspaceConnectionError(
                    f"No Databricks workspace is configured for Dagster+ deployment '{dagster_plus}': set "
                    "DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID/_SECRET, or a profile) in the code "
                    f"location's environment. To use the embedded local workspace there on purpose, set "
                    f"{ALLOW_EMBEDDED_ENV}=1."
                )
            from dbx_assets.local_workspace.launcher import ensure_running

            connection = ensure_running(self._local_state_dir)
            return Config(
                host=connection.host,
                token=connection.token,
                auth_type="pat",
                retry_timeout_seconds=self.retry_timeout_seconds,
                http_timeout_seconds=self._http_timeout_seconds,  # None: the SDK's default (60 s)
            )
        try:
            return Config(
                host=self.host,
                token=self.token,
                client_id=self.client_id,
                client_secret=self.client_secret,
                profile=self.profile,
                retry_timeout_seconds=self.retry_timeout_seconds,
                http_timeout_seconds=self._http_timeout_seconds,  # None: the SDK's default (60 s)
            )
        except ValueError as err:  # the SDK's "cannot configure default credentials" and friends
            raise WorkspaceConnectionError(
                description=f"Databricks auth is not configured for {self.host or 'the default profile'}: "
                f"{redact(str(err), self._secrets())}. Set DATABRICKS_HOST with DATABRICKS_TOKEN "
                "(or client_id/client_secret, or a profile)."
            ) from None

    def _secrets(self) -> list[str]:
        return [s for s in (self.token, self.client_secret) if s]

    def deploy_target(self, *, needs_sql_warehouse: bool, instance_pools: Collection[str] = ()) -> DeployTarget:
        """Where workflows deploy on this workspace for this deployment; resolves the SQL warehouse
        only when needed, and the instance pools job clusters name by name."""
        deployment = self.deployment_name()
        return DeployTarget(
            workspace_root=deployment_folder(self.workspace_root, deployment),
            sql_warehouse_id=self.sql_warehouse_id() if needs_sql_warehouse else None,
            catalog=expand(self.catalog, deployment),
            schema=expand(self.schema_name, deployment),
            deployment=deployment,
            instance_pool_ids=self.instance_pool_ids(instance_pools),
        )

    def instance_pool_ids(self, names: Collection[str]) -> tuple[tuple[str, str], ...]:
        """(name, id) of each named instance pool; one clear error naming a pool that does not exist."""
        if not names:
            return ()
        pools = {p.instance_pool_name: p.instance_pool_id for p in self.get_client().instance_pools.list()}
        for name in sorted(names):
            if not pools.get(name):
                known = ", ".join(f"{n} ({i})" for n, i in sorted(pools.items(), key=lambda p: str(p[0]))) or "none"
                raise WorkspaceConnectionError(
                    description=f"Instance pool '{name}' does not exist in {self.workspace_host()} (pools: {known}). "
                    "Create it (Compute > Pools, or `databricks instance-pools create`) or name an existing pool "
                    "in the job cluster's instance_pool_name."
                )
        return tuple((name, str(pools[name])) for name in sorted(names))

    def sql_warehouse_id(self) -> str:
        """The configured warehouse's id (an id or a name is accepted), else the only one there is."""
        wanted = self.sql_warehouse or os.environ.get(SQL_WAREHOUSE_ENV)
        warehouses = list(self.get_client().warehouses.list())
        if wanted:
            for w in warehouses:
                if wanted in (w.id, w.name) and w.id:
                    return w.id
            names = ", ".join(f"{w.name} ({w.id})" for w in warehouses) or "none"
            raise WorkspaceConnectionError(
                description=f"SQL warehouse '{wanted}' does not exist in {self.workspace_host()} (warehouses: {names}). "
                f"Set the resource's sql_warehouse or ${SQL_WAREHOUSE_ENV} to one of them."
            )
        if len(warehouses) == 1 and warehouses[0].id:
            return warehouses[0].id
        names = ", ".join(f"{w.name} ({w.id})" for w in warehouses) or "none"
        raise WorkspaceConnectionError(
            description=f"dbt tasks need a SQL warehouse and {self.workspace_host()} has {len(warehouses)} "
            f"(warehouses: {names}). Set the resource's sql_warehouse or ${SQL_WAREHOUSE_ENV} to a warehouse id or name."
        )

    @contextmanager
    def explained_connection_errors(self) -> Iterator[None]:
        """Re-raise auth and network failures inside the block as one clear WorkspaceConnectionError."""
        try:
            yield
        except Exception as err:
            raise (self.connection_failure(err) or err) from None

    def workspace_host(self) -> str:
        return (self.get_client().config.host or "").rstrip("/")

    def check_connection(self) -> str:
        """Make one authenticated call; return the identity, or raise one clear error naming host and fix."""
        with self.explained_connection_errors():
            me = self.get_client().current_user.me()
        return me.user_name or me.display_name or "unknown identity"

    def connection_failure(self, err: BaseException) -> WorkspaceConnectionError | None:
        """Turn an auth or network failure into one clear message (host, cause, fix); None for other errors."""
        if isinstance(err, WorkspaceConnectionError):
            return err
        host = (
            (self._client.config.host if self._client else None)
            or self.host
            or os.environ.get("DATABRICKS_HOST")
            or "the configured workspace"
        )
        secrets = self._secrets()
        from databricks.sdk.errors import DatabricksError, PermissionDenied, Unauthenticated

        if isinstance(err, (Unauthenticated, PermissionDenied)) and _is_auth_rejection(err):
            return WorkspaceConnectionError(
                description=f"Databricks workspace {host} rejected the credentials ({redact(str(err), secrets)}). "
                "Check DATABRICKS_TOKEN (or the OAuth client id/secret) for this host."
            )
        if isinstance(err, (OSError, TimeoutError)) and not isinstance(err, DatabricksError):
            return WorkspaceConnectionError(
                description=f"Cannot reach Databricks workspace {host}: {redact(_root_cause(err), secrets)}. "
                "Check DATABRICKS_HOST and your network."
            )
        return None


def _is_auth_rejection(err: DatabricksError) -> bool:
    """401s always; 403s only when they are about the credential, not a missing permission on one object."""
    from databricks.sdk.errors import Unauthenticated

    if isinstance(err, Unauthenticated):
        return True
    text = str(err).lower()
    return "token" in text or "credential" in text or "authenticat" in text


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"
