"""Databricks-shaped API errors: one exception type the dispatcher turns into
`{"error_code": ..., "message": ...}` with the matching HTTP status.

The SDK maps error_code first (databricks/sdk/errors/platform.py), then the status,
so both must agree with what real Databricks sends for the SDK to raise the same class.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def already_exists(message: str, status: int = 400) -> ApiError:
    # Workspace and DBFS answer 400 RESOURCE_ALREADY_EXISTS; the SDK maps by error_code.
    return ApiError(status, "RESOURCE_ALREADY_EXISTS", message)


def invalid_state(message: str) -> ApiError:
    return ApiError(400, "INVALID_STATE", message)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message)


def permission_denied(message: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", message)


def endpoint_not_found(method: str, path: str) -> ApiError:
    return ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


def require(body: dict, field: str):
    """Read a required request field or fail the way Databricks does (400, naming the field)."""
    value = body.get(field)
    if value is None or value == "":
        raise invalid(f"Missing required field: {field}")
    return value
