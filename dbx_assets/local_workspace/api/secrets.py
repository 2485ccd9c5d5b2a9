"""Secrets API (/api/2.0/secrets/...): scopes, secrets and scope ACLs, as Databricks documents them.

Shapes, error codes and limits follow the REST reference and the SDK's SecretsAPI docstrings
(databricks/sdk/service/workspace.py): a scope or key name is alphanumerics, '-', '_', '.'
(scopes also '@'), at most 128 characters, case-insensitive; a value is at most 128 KB;
1000 scopes per workspace and 1000 secrets per scope. Messages quoted from Databricks where
known ("Scope x already exists!", "Scope x does not exist!").

Local differences, on purpose: only Databricks-backed scopes (no Azure Key Vault); ACLs are
stored and listed but not enforced (the one local user holds MANAGE on every scope); and
`secrets/get`, which Databricks reserves for dbutils, answers the local user too so that
`w.secrets.get_secret` can check a value. Nothing here logs a request body or a value.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..engine.clock import real_now_ms
from ..engine.clusters import LOCAL_USER
from ..engine.errors import ApiError, already_exists, invalid, not_found, require
from ..http.server import Dispatcher, Request
from ..runtime.secret_store import SecretStore, encode_value

MAX_VALUE_BYTES = 128 * 1024
MAX_SCOPES = 1000
MAX_SECRETS_PER_SCOPE = 1000
PERMISSIONS = ("READ", "WRITE", "MANAGE")
_SCOPE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_REQUEST", message)


def _limit(message: str) -> ApiError:
    return ApiError(400, "RESOURCE_LIMIT_EXCEEDED", message)


def _scope_missing(scope: str) -> ApiError:
    return not_found(f"Scope {scope} does not exist!")


def _secret_missing(scope: str, key: str) -> ApiError:
    return not_found(f"Secret does not exist with scope: {scope} and key: {key}")


def _text(body: dict, field: str) -> str:
    value = require(body, field)
    if not isinstance(value, str):
        raise invalid(f"Parameter {field} must be a string")
    return value


class Secrets:
    def __init__(self, store: SecretStore):
        self.store = store

    def register(self, d: Dispatcher) -> None:
        base = "/api/2.0/secrets"
        for method, path, handler in (
            ("POST", "/scopes/create", self.create_scope),
            ("GET", "/scopes/list", self.list_scopes),
            ("POST", "/scopes/delete", self.delete_scope),
            ("POST", "/put", self.put_secret),
            ("GET", "/list", self.list_secrets),
            ("POST", "/delete", self.delete_secret),
            ("GET", "/get", self.get_secret),
            ("GET", "/acls/list", self.list_acls),
            ("GET", "/acls/get", self.get_acl),
            ("POST", "/acls/put", self.put_acl),
            ("POST", "/acls/delete", self.delete_acl),
        ):
            d.route(method, base + path, handler)

    # -- scopes ----------------------------------------------------------------------------------
    def create_scope(self, req: Request) -> dict:
        body = req.json()
        scope = _text(body, "scope")
        if not _SCOPE_NAME.fullmatch(scope):
            raise invalid(
                f"Scope name {scope!r} is invalid: it must consist of alphanumeric characters, dashes, "
                "underscores, '@' and periods, and may not exceed 128 characters."
            )
        backend = str(body.get("scope_backend_type") or "DATABRICKS").upper()
        if backend != "DATABRICKS" or body.get("backend_azure_keyvault"):
            raise invalid(
                "Only Databricks-backed secret scopes (scope_backend_type DATABRICKS) exist on the local workspace."
            )
        principal = body.get("initial_manage_principal")
        if principal is not None and principal != "users":
            raise invalid("The only supported principal for initial_manage_principal is the group 'users'.")
        with self.store.lock:
            doc = self.store.load()
            if scope.lower() in doc["scopes"]:
                raise already_exists(f"Scope {scope} already exists!")
            if len(doc["scopes"]) >= MAX_SCOPES:
                raise _limit(f"Maximum number of scopes ({MAX_SCOPES}) in the workspace exceeded.")
            doc["scopes"][scope.lower()] = {
                "name": scope,
                "backend_type": "DATABRICKS",
                "secrets": {},
                # Without initial_manage_principal the creator gets MANAGE, as on Databricks.
                "acls": {principal or LOCAL_USER: "MANAGE"},
            }
            self.store.save(doc)
        return {}

    def list_scopes(self, req: Request) -> dict:
        scopes = [{"name": s["name"], "backend_type": s["backend_type"]} for s in self.store.load()["scopes"].values()]
        # Databricks leaves an empty list out of the response.
        return {"scopes": sorted(scopes, key=lambda s: s["name"].lower())} if scopes else {}

    def delete_scope(self, req: Request) -> dict:
        scope = _text(req.json(), "scope")
        with self.store.lock:
            doc = self.store.load()
            if doc["scopes"].pop(scope.lower(), None) is None:
                raise _scope_missing(scope)
            self.store.save(doc)
        return {}

    # -- secrets ---------------------------------------------------------------------------------
    def put_secret(self, req: Request) -> dict:
        body = req.json()
        scope, key = _text(body, "scope"), _text(body, "key")
        if not _KEY_NAME.fullmatch(key):
            raise invalid(
                f"Secret key {key!r} is invalid: it must consist of alphanumeric characters, dashes, "
                "underscores and periods, and may not exceed 128 characters."
            )
        value, is_bytes = self._value(body)
        if len(value) > MAX_VALUE_BYTES:
            raise invalid(
                f"Secret value is {len(value)} bytes; the maximum allowed size is 128 KB ({MAX_VALUE_BYTES} bytes)."
            )
        with self.store.lock:
            doc = self.store.load()
            entry = doc["scopes"].get(scope.lower())
            if entry is None:
                raise _scope_missing(scope)
            secrets = entry["secrets"]
            existing = secrets.get(key.lower())
            if existing is None and len(secrets) >= MAX_SECRETS_PER_SCOPE:
                raise _limit(f"Maximum number of secrets ({MAX_SECRETS_PER_SCOPE}) in scope {scope} exceeded.")
            secrets[key.lower()] = {
                "key": existing["key"] if existing else key,  # an overwrite keeps the first spelling
                "value": encode_value(value),
                "is_bytes": is_bytes,
                "last_updated_timestamp": real_now_ms(),
            }
            self.store.save(doc)
        return {}

    @staticmethod
    def _value(body: dict) -> tuple[bytes, bool]:
        has_string, has_bytes = "string_value" in body, "bytes_value" in body
        if has_string and has_bytes:
            raise _malformed("Exactly one of string_value and bytes_value must be specified, not both.")
        if has_string:
            if not isinstance(body["string_value"], str):
                raise invalid("Parameter string_value must be a string")
            return body["string_value"].encode("utf-8"), False
        if has_bytes:
            try:
                return base64.b64decode(str(body["bytes_value"]), validate=True), True
            except (binascii.Error, ValueError):
                raise _malformed("bytes_value must be base64-encoded.") from None
        raise invalid("Exactly one of string_value and bytes_value must be specified.")

    def list_secrets(self, req: Request) -> dict:
        scope = _text(req.params(), "scope")
        entry = self.store.scope(scope)
        if entry is None:
            raise _scope_missing(scope)
        secrets = [
            {"key": s["key"], "last_updated_timestamp": s["last_updated_timestamp"]} for s in entry["secrets"].values()
        ]
        return {"secrets": sorted(secrets, key=lambda s: s["key"].lower())} if secrets else {}

    def delete_secret(self, req: Request) -> dict:
        body = req.json()
        scope, key = _text(body, "scope"), _text(body, "key")
        with self.store.lock:
            doc = self.store.load()
            entry = doc["scopes"].get(scope.lower())
            if entry is None:
                raise _scope_missing(scope)
            if entry["secrets"].pop(key.lower(), None) is None:
                raise _secret_missing(scope, key)
            self.store.save(doc)
        return {}

    def get_secret(self, req: Request) -> dict:
        params = req.params()
        scope, key = _text(params, "scope"), _text(params, "key")
        if self.store.scope(scope) is None:
            raise _scope_missing(scope)
        secret = self.store.secret(scope, key)
        if secret is None:
            raise _secret_missing(scope, key)
        # The value goes out base64-encoded whatever way it was put (GetSecretResponse.value).
        return {"key": secret.key, "value": encode_value(secret.value)}

    # -- ACLs (stored and listed; not enforced locally) ----------------------------------------------
    def _acls(self, doc: dict, scope: str) -> dict:
        entry = doc["scopes"].get(scope.lower())
        if entry is None:
            raise _scope_missing(scope)
        return entry["acls"]

    def list_acls(self, req: Request) -> dict:
        scope = _text(req.params(), "scope")
        acls = self._acls(self.store.load(), scope)
        return {"items": [{"principal": p, "permission": perm} for p, perm in sorted(acls.items())]} if acls else {}

    def get_acl(self, req: Request) -> dict:
        params = req.params()
        scope, principal = _text(params, "scope"), _text(params, "principal")
        acls = self._acls(self.store.load(), scope)
        if principal not in acls:
            raise not_found(f"No ACL for principal {principal} on scope {scope}.")
        return {"principal": principal, "permission": acls[principal]}

    def put_acl(self, req: Request) -> dict:
        body = req.json()
        scope, principal, permission = _text(body, "scope"), _text(body, "principal"), _text(body, "permission")
        if permission not in PERMISSIONS:
            raise invalid(f"Invalid permission {permission}: must be one of {', '.join(PERMISSIONS)}.")
        with self.store.lock:
            doc = self.store.load()
            self._acls(doc, scope)[principal] = permission
            self.store.save(doc)
        return {}

    def delete_acl(self, req: Request) -> dict:
        body = req.json()
        scope, principal = _text(body, "scope"), _text(body, "principal")
        with self.store.lock:
            doc = self.store.load()
            if self._acls(doc, scope).pop(principal, None) is None:
                raise not_found(f"No ACL for principal {principal} on scope {scope}.")
            self.store.save(doc)
        return {}
