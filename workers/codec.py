"""Wire codec for Hearth's typed messages: frozen dataclasses <-> JSON bytes.

No pickle crosses a process boundary: a message is a registered dataclass, encoded as
``{"type": ClassName, "v": PROTOCOL_VERSION, ...fields}``. Tuples travel as lists, bytes as
base64, enums as their values; decoding rebuilds each from the field's type hint and refuses
anything that does not fit it: a nested message of a type the field does not name, a field the
class does not have, a message of a type the receiver does not expect (``decode(expected=...)``),
or a message from a build that speaks another protocol version.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import types
import typing
from typing import Any, dataclass_transform

PROTOCOL_VERSION = 1
"""Version of every message schema in this build (the job protocol and the arbiter's).

Carried in each encoded envelope and checked on decode. Bump it whenever a message gains,
loses or changes a field: processes of two builds (a packaged bundle and a source checkout share
one arbiter socket) then refuse each other clearly instead of misreading each other."""

_REGISTRY: dict[str, type] = {}
_HINTS: dict[type, dict[str, Any]] = {}
_ENVELOPE_KEYS = ("type", "v")


class MalformedMessage(ValueError):
    """Bytes that are not a valid Hearth message (bad JSON, unknown type, bad fields)."""


class VersionMismatch(MalformedMessage):
    """A well-formed envelope from a build speaking another protocol version.

    ``payload`` is the raw JSON object, so a receiver can still show a peer's ``ProtocolError``
    text (its ``message`` field is the one thing every version agrees on).
    """

    def __init__(self, theirs: object, payload: dict) -> None:
        self.theirs = theirs
        self.ours = PROTOCOL_VERSION
        self.payload = payload
        super().__init__(
            f"{payload.get('type', 'a message')!s} from a Hearth build speaking protocol version "
            f"{theirs!r}; this build speaks version {PROTOCOL_VERSION}"
        )


@dataclass_transform(frozen_default=True, kw_only_default=True)
def frozen(cls):
    """A frozen, slotted, keyword-only dataclass: the shape of every message (a decorator, not a
    ``dataclass(...)`` alias, so type checkers see each message's fields)."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


def message(cls):
    """Class decorator: register a frozen dataclass so it can travel over the wire."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    clash = [f.name for f in dataclasses.fields(cls) if f.name in _ENVELOPE_KEYS]
    if clash:
        raise TypeError(f"{cls.__name__}: a field cannot be called {clash[0]!r} (the envelope uses it)")
    known = _REGISTRY.get(cls.__name__)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"two messages are called {cls.__name__}: {known.__module__} and {cls.__module__}")
    _REGISTRY[cls.__name__] = cls
    _HINTS.pop(cls, None)
    return cls


def encode(msg: Any) -> bytes:
    if type(msg).__name__ not in _REGISTRY:
        raise TypeError(f"{type(msg).__name__} is not a registered message")
    payload = _to_plain(msg)
    payload["v"] = PROTOCOL_VERSION
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(data: bytes | str, expected: Any = None) -> Any:
    """Rebuild a message; raises ``MalformedMessage`` naming the field path and what was wrong.

    ``expected``: a message class, a union of them (``Submit | Cancel``) or a tuple of them; a
    message of any other registered type is refused. ``None`` accepts any registered message.
    Raises ``VersionMismatch`` (a ``MalformedMessage``) for a message from another protocol version.
    """
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("a message must be a JSON object")
    if "v" not in payload:  # every Hearth build has written one
        raise MalformedMessage("not a Hearth message: it has no protocol version")
    version = payload["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise VersionMismatch(version, payload)
    allowed = _classes(expected) if expected is not None else None
    return _from_plain(payload, allowed, where="", top=True)


def _classes(expected: Any) -> tuple[type, ...]:
    if isinstance(expected, tuple):
        return tuple(c for item in expected for c in _classes(item))
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return _classes(typing.get_args(expected))
    if isinstance(expected, type) and dataclasses.is_dataclass(expected):
        return (expected,)
    raise TypeError(f"expected must be message classes or a union of them, not {expected!r}")


def _names(classes: tuple[type, ...]) -> str:
    return " | ".join(c.__name__ for c in classes)


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


def _from_plain(payload: dict, allowed: tuple[type, ...] | None, where: str, top: bool = False) -> Any:
    name = payload.get("type")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    prefix = f"{where}: " if where else ""
    if cls is None:
        raise MalformedMessage(f"{prefix}unknown message type {name!r}")
    if allowed is not None and cls not in allowed:
        raise MalformedMessage(f"{prefix}expected {_names(allowed)}, got {name}")
    where = where or str(name)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    envelope = _ENVELOPE_KEYS if top else ("type",)
    unknown = [key for key in payload if key not in fields and key not in envelope]
    if unknown:
        raise MalformedMessage(f"{where}: {name} has no field {unknown[0]!r}")
    hints = _hints(cls)
    kwargs = {}
    for f in fields.values():
        if f.name in payload:
            kwargs[f.name] = _coerce(payload[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MalformedMessage(f"{where}: {name} is missing the field {f.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"{where}: bad fields for {name}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(hint), where)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), where)
    if origin is list:
        if not isinstance(value, list):
            raise MalformedMessage(f"{where}: expected a list, got {_json_type(value)}")
        item = (typing.get_args(hint) or (Any,))[0]
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MalformedMessage(f"{where}: expected an object, got {_json_type(value)}")
        _, val_hint = typing.get_args(hint) or (str, Any)
        return {k: _coerce(v, val_hint, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is Any:
        return value
    if isinstance(hint, type):
        return _coerce_class(value, hint, where)
    return value


def _coerce_union(value: Any, options: tuple, where: str) -> Any:
    optional = type(None) in options
    if value is None and optional:
        return None
    options = tuple(o for o in options if o is not type(None))
    messages = tuple(o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o))
    if messages and len(messages) == len(options):
        # A union of messages: the "type" tag picks the class, and it must be one of them.
        if not isinstance(value, dict):
            raise MalformedMessage(f"{where}: expected {_names(messages)}, got {_json_type(value)}")
        return _from_plain(value, messages, where)
    for option in options:
        try:
            return _coerce(value, option, where)
        except MalformedMessage:
            continue
    wanted = " | ".join([getattr(o, "__name__", repr(o)) for o in options] + ["None"] * optional)
    raise MalformedMessage(f"{where}: expected {wanted}, got {_json_type(value)}")


def _coerce_tuple(value: Any, args: tuple, where: str) -> tuple:
    if not isinstance(value, list):
        raise MalformedMessage(f"{where}: expected a list, got {_json_type(value)}")
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise MalformedMessage(f"{where}: expected {len(args)} items, got {len(value)}")
    return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _coerce_class(value: Any, hint: type, where: str) -> Any:
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise MalformedMessage(f"{where}: {value!r} is not a valid {hint.__name__}") from None
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise MalformedMessage(f"{where}: expected {hint.__name__}, got {_json_type(value)}")
        return _from_plain(value, (hint,), where)
    if hint is bytes:
        if not (
            isinstance(value, dict) and set(value) == {"__bytes__"} and isinstance(value["__bytes__"], str)
        ):
            raise MalformedMessage(f"{where}: expected bytes, got {_json_type(value)}")
        try:
            return base64.b64decode(value["__bytes__"], validate=True)
        except ValueError:
            raise MalformedMessage(f"{where}: bytes are not valid base64") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise MalformedMessage(f"{where}: expected {hint.__name__}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value["type"]
    return type(value).__name__
