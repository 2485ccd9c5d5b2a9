"""Assembles one local workspace: state, storage APIs, clusters, scheduler, jobs, HTTP server."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from pathlib import Path

from .api.clusters import ClustersApi
from .api.dbfs import Dbfs
from .api.files import VolumeFiles
from .api.host_metadata import HostMetadata
from .api.instance_pools import InstancePoolsApi
from .api.jobs import Jobs
from .api.secrets import Secrets
from .api.statements import StatementExecution
from .api.unity_catalog import UnityCatalog
from .api.warehouses import WarehousesApi
from .api.workspace import Workspace
from .engine.clusters import LOCAL_USER, ClusterFactory, Clusters, default_cluster_factory
from .engine.scheduler import Scheduler
from .engine.state import StateStore
from .engine.task_invocations import Resolvers, TaskInvocations
from .engine.warehouses import Warehouses
from .http.faults import FaultConfig, FaultInjector, load_config_file
from .http.server import Dispatcher, HttpServer
from .pages import login_link
from .runtime.contract import StoragePaths
from .runtime.secret_store import SecretStore

CONNECTION_FILE = "connection.json"


def read_connection(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / CONNECTION_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_connection(state_dir: Path, data: dict) -> None:
    """Atomically, mode 0600: the file holds the bearer token."""
    tmp = state_dir / f".{CONNECTION_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, state_dir / CONNECTION_FILE)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the server binds (allow_reuse_address): a restart after a crash keeps its address even
        # while the dead server's connections linger in TIME_WAIT; a live listener still refuses it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class LocalWorkspace:
    """One running workspace. `start()` serves in a background thread; `close()` stops clusters and the server."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        tls: bool = False,
        cluster_factory: ClusterFactory | None = None,
        max_active_runs: int = 8,
        faults: FaultConfig | None = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.paths = StoragePaths(self.state_dir).ensure()
        previous = read_connection(self.state_dir) or {}
        self.token: str = previous.get("token") or secrets.token_urlsafe(32)
        if port is None:
            old = previous.get("port")
            port = old if old and _port_free(old) else 0
        self.store = StateStore(self.state_dir / "state.db")
        self.dispatcher = Dispatcher(self.token)
        # Faults: explicit config, else DIR/faults.json, else none (counting requests still happens).
        self.faults = FaultInjector(faults or FaultConfig.from_dict(load_config_file(self.state_dir)))
        self.dispatcher.faults = self.faults
        ssl_context = None
        if tls:
            from .http.tls import server_context

            ssl_context = server_context(self.state_dir / "tls")
        self.http = HttpServer(self.dispatcher, port, ssl_context)
        self.host = f"{self.http.scheme}://127.0.0.1:{self.http.port}"

        self.workspace = Workspace(self.paths.workspace, self.store)
        self.dbfs = Dbfs(self.paths.dbfs)
        self.files = VolumeFiles(self.paths.volumes)
        self.clusters = Clusters(self.store, self.paths, cluster_factory or default_cluster_factory)
        self.clusters.start_failure = self.faults.cluster_start_failure
        self.clusters_api = ClustersApi(self.clusters)
        self.instance_pools_api = InstancePoolsApi(self.clusters.pools)
        # dbt tasks name a SQL warehouse; the scheduler starts it and hands its token to dbt.
        self.warehouses = Warehouses(self.store, self.token, host=lambda: self.host)
        self.warehouses_api = WarehousesApi(self.warehouses, lambda: self.host)
        resolvers = Resolvers(
            self.workspace.read_notebook, self.workspace.local, self.dbfs.local, self.workspace.notebook_language
        )
        invocations = TaskInvocations(self.paths, resolvers, self.warehouses)
        self.scheduler = Scheduler(self.store, self.clusters, invocations, lambda: self.host, max_active_runs)
        self.jobs = Jobs(self.store, self.scheduler, lambda: self.host, self.token)
        # Secret values live in their own 0600 file that a task's dbutils.secrets reads directly.
        self.secrets = Secrets(SecretStore(self.paths.secrets))
        # Unity Catalog: read-only view of the catalogs, schemas and tables tasks left in the warehouse dir.
        self.unity_catalog = UnityCatalog(self.paths.warehouse)
        # SQL statements on the local warehouse: row counts from the tables' parquet footers.
        self.statements = StatementExecution(self.warehouses, self.unity_catalog)
        for api in (
            self.workspace,
            self.dbfs,
            self.files,
            self.clusters_api,
            self.instance_pools_api,
            self.jobs,
            self.warehouses_api,
            self.secrets,
            self.faults,
            self.unity_catalog,
            self.statements,
        ):
            api.register(self.dispatcher)
        self.dispatcher.route(
            "GET",
            "/api/2.0/preview/scim/v2/Me",
            lambda req: {
                "id": "1",
                "userName": LOCAL_USER,
                "displayName": "Local User",
                "active": True,
                "emails": [{"value": LOCAL_USER, "primary": True, "type": "work"}],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            },
        )
        # The SDK reads account_id/workspace_id from /.well-known/databricks-config while building its Config.
        self.host_metadata = HostMetadata(self.store, lambda: self.host)
        self.host_metadata.register(self.dispatcher)
        self.dispatcher.org_id = self.host_metadata.workspace_id  # X-Databricks-Org-Id on API responses
        # The human pages (run_page_url lands there); a browser logs in with the token or a one-time link.
        self.pages = login_link.register(
            self.dispatcher,
            self.store,
            token=self.token,
            host=lambda: self.host,
            task_runs_dir=self.paths.task_runs,
            artifacts_link=self.jobs.artifacts_link,
            secure_cookie=tls,
        )

        self.clusters.recover_after_restart()
        self.clusters.pools.recover_after_restart()  # idle instances start again
        self.scheduler.recover_after_restart()

    @property
    def cert_path(self) -> Path | None:
        cert = self.state_dir / "tls" / "cert.pem"
        return cert if self.http.scheme == "https" else None

    def write_connection_file(self) -> None:
        write_connection(
            self.state_dir,
            {
                "host": self.host,
                "token": self.token,
                "pid": os.getpid(),
                "port": self.http.port,
                **({"ca_cert": str(self.cert_path)} if self.cert_path else {}),
            },
        )

    def start(self) -> LocalWorkspace:
        self.http.start_background()
        return self

    def close(self) -> None:
        try:
            self.scheduler.shutdown()
        finally:
            self.http.shutdown()
            self.store.close()


def configure_logging(state_dir: Path) -> None:
    handler = logging.FileHandler(state_dir / "server.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("dbx_local_workspace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
