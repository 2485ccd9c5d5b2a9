"""Host metadata: `/.well-known/databricks-config` (unauthenticated) and the workspace's identity.

databricks-sdk (0.156, `Config._resolve_host_metadata` -> `oauth.get_host_metadata`) fetches it
while building every Config and fills in `account_id`, `workspace_id` and `discovery_url` (from
`oidc_endpoint`) when they are not set; `cloud` and `token_federation_default_oidc_audiences` too
when present. A workspace host answers `{"oidc_endpoint": "<host>/oidc", "account_id": <uuid>,
"workspace_id": <numeric string>}` (the SDK's own tests, test_oauth.py
"workspace-static-oidc-endpoint"). `cloud` is left out: the local workspace runs on no cloud,
and the SDK then infers AWS from the host as it always did. The SDK sends the resolved id back as
`X-Databricks-Workspace-Id`; Databricks sends it on responses as `X-Databricks-Org-Id`, which
`WorkspaceClient.get_workspace_id()` reads from `scim/v2/Me`.

The ids are generated once per state dir and kept in its store, so they survive restarts.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable

from ..engine.state import StateStore
from ..http.http_types import Router


class HostMetadata:
    def __init__(self, store: StateStore, host: Callable[[], str]):
        self._host = host
        identity = store.get("meta", "workspace_identity")
        if not identity:
            identity = {
                # Databricks workspace ids are 15-16 digit numbers (the o= of a workspace URL).
                "workspace_id": str(10**15 + secrets.randbelow(9 * 10**15)),
                "account_id": str(uuid.uuid4()),
            }
            store.put("meta", "workspace_identity", identity)
        self.workspace_id: str = identity["workspace_id"]
        self.account_id: str = identity["account_id"]

    def document(self) -> dict:
        return {
            "oidc_endpoint": f"{self._host()}/oidc",
            "account_id": self.account_id,
            "workspace_id": self.workspace_id,
        }

    def register(self, d: Router) -> None:
        d.public_route("GET", "/.well-known/databricks-config", lambda req: self.document())
