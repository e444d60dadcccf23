"""Wire codec for Hearth's typed messages: frozen dataclasses <-> JSON bytes.

No pickle crosses a process boundary: a message is a registered dataclass, encoded as
``{"type": ClassName, "v": version, ...fields}``. Tuples travel as lists, bytes as base64,
enums as their values; decoding rebuilds each from the field's type hint.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import types
import typing
from typing import Any

WIRE_VERSION = 1
_REGISTRY: dict[str, type] = {}
_HINTS: dict[type, dict[str, Any]] = {}


class MalformedMessage(ValueError):
    """Bytes that are not a valid Hearth message (bad JSON, unknown type, bad fields)."""


def message(cls):
    """Class decorator: register a frozen dataclass so it can travel over the wire."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    _REGISTRY[cls.__name__] = cls
    return cls


def encode(msg: Any) -> bytes:
    if type(msg).__name__ not in _REGISTRY:
        raise TypeError(f"{type(msg).__name__} is not a registered message")
    payload = _to_plain(msg)
    payload["v"] = WIRE_VERSION
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(data: bytes | str) -> Any:
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("a message must be a JSON object")
    if payload.get("v") != WIRE_VERSION:
        raise MalformedMessage(f"unsupported wire version {payload.get('v')!r} (expected {WIRE_VERSION})")
    return _from_plain(payload)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _to_plain(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_plain(payload: dict) -> Any:
    name = payload.get("type")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise MalformedMessage(f"unknown message type {name!r}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in payload:
            kwargs[f.name] = _coerce(payload[f.name], hints[f.name], f"{name}.{f.name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad fields for {name}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        errors = []
        for option in typing.get_args(hint):
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except MalformedMessage as exc:
                errors.append(str(exc))
        raise MalformedMessage(f"{where}: {value!r} matches none of {hint}")
    if origin is tuple:
        if not isinstance(value, list):
            raise MalformedMessage(f"{where}: expected a list")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise MalformedMessage(f"{where}: expected an object")
        _, val_hint = typing.get_args(hint) or (str, Any)
        return {k: _coerce(v, val_hint, where) for k, v in value.items()}
    if hint is Any:
        return value
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError:
                raise MalformedMessage(f"{where}: {value!r} is not a valid {hint.__name__}") from None
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise MalformedMessage(f"{where}: expected a {hint.__name__} object")
            return _from_plain(value)
        if hint is bytes:
            if not (isinstance(value, dict) and "__bytes__" in value):
                raise MalformedMessage(f"{where}: expected bytes")
            return base64.b64decode(value["__bytes__"])
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint in (int, float, str, bool) and not (
            isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        ):
            raise MalformedMessage(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value
