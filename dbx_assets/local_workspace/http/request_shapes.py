"""Request bodies checked against the official SDK's own signatures and dataclasses.

The SDK's API methods (e.g. `JobsAPI.submit`) list every body field with its type, and
its dataclasses (`SubmitTask`, `compute.ClusterSpec`, ...) the nested ones, so a wrong type
anywhere answers 400 in Databricks' shape instead of crashing a handler or, later, a
scheduler thread. Unknown fields are ignored, as Databricks does; nulls were already
dropped by Request.json().
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

from ..engine.errors import ApiError, invalid


def malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request - {message}")


@functools.cache
def _hints(target: Callable | type) -> dict[str, Any]:
    hints = typing.get_type_hints(target)
    hints.pop("return", None)
    return hints


def check_body(body: dict, api_method: Callable, where: str = "") -> dict:
    """Check the fields of `body` that `api_method` (an SDK API method) declares; returns body."""
    _check_fields(body, _hints(api_method), where)
    return body


def check_object(value: Any, cls: type, where: str) -> dict:
    """Check a JSON object against an SDK dataclass; returns it."""
    _check(value, cls, where)
    return value


def _check_fields(obj: dict, hints: dict[str, Any], where: str) -> None:
    for name, hint in hints.items():
        if name in obj:
            _check(obj[name], hint, f"{where}.{name}" if where else name)


def _check(value: Any, hint: Any, where: str) -> None:
    if value is None or hint is Any:
        return
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _check(value, args[0], where)
        return  # no multi-type unions in the request shapes we serve
    if origin is list:
        if not isinstance(value, list):
            raise malformed(f"{where} must be an array, got {_kind(value)}")
        (item,) = typing.get_args(hint) or (Any,)
        for i, v in enumerate(value):
            if v is None:
                raise malformed(f"{where}[{i}] must not be null")
            _check(v, item, f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise malformed(f"{where} must be an object, got {_kind(value)}")
        _, item = typing.get_args(hint) or (str, Any)
        for k, v in value.items():
            if item is str and isinstance(v, (int, float, bool)):
                continue  # map values such as base_parameters: a number is taken as its text
            _check(v, item, f"{where}.{k}")
        return
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [m.value for m in hint]
        if value not in allowed:
            raise invalid(f"Invalid value {value!r} for {where}; expected one of {', '.join(map(str, allowed))}")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise malformed(f"{where} must be an object, got {_kind(value)}")
        _check_fields(value, _hints(hint), where)
        return
    if hint is bool:
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            raise malformed(f"{where} must be a boolean, got {_kind(value)}")
    elif hint is int:
        if isinstance(value, bool) or not _is_integer(value):
            raise malformed(f"{where} must be an integer, got {_kind(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise malformed(f"{where} must be a number, got {_kind(value)}")
    elif hint is str and not isinstance(value, str):
        raise malformed(f"{where} must be a string, got {_kind(value)}")


def _is_integer(value: Any) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):  # protobuf JSON accepts int64 as a decimal string
        return value.strip().lstrip("-").isdigit()
    return False


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def normalize(value: dict, cls: type[Any]) -> dict:
    """A checked JSON object re-serialised through the SDK dataclass: typed, unknown fields dropped."""
    return cls.from_dict(value).as_dict()
