"""Request bodies: JSON checked field by field, Hearth's own parameters taken from the job schema.

OpenAI's fields are mapped by each endpoint. Hearth's extra parameters (steps, guidance,
negative_prompt, seed, top_k, ...) arrive as extra body fields under their request field's own
name (``extra_body={"steps": 30}`` in the ``openai`` client) and are refused by the same
``check_params`` as in the window and the CLI. A field nobody declared is refused by name, as
OpenAI refuses an unrecognised argument, so a typo never silently does nothing.
"""

from __future__ import annotations

import json
from typing import Any

from app.api.errors import ApiError
from workers.schema import params


async def json_body(request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def take_extras(body: dict, cls: type, *, used: set[str], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Hearth's own parameters of ``cls`` present in ``body`` (type and range checked later by
    the request's ``validate()``); raises naming any field that is neither OpenAI's nor Hearth's."""
    declared = {name for name in params(cls) if name not in exclude}
    extras = {name: body[name] for name in declared if name in body and name not in used}
    unknown = sorted(set(body) - used - set(extras))
    if unknown:
        raise ApiError(
            400,
            f"Unrecognized request argument supplied: {', '.join(unknown)}",
            param=unknown[0],
            code="unknown_parameter",
        )
    return extras


def text_field(body: dict, name: str, *, required: bool = False, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string", param=name)
    if required and not value.strip():
        raise ApiError(400, f"{name} is required", param=name)
    return value


def int_field(
    body: dict, name: str, default: int | None = None, *, low: int = 1, high: int = 2**31
) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a whole number between {low} and {high}", param=name)
    return value


def bool_field(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false", param=name)
    return value


def form_values(form: dict, cls: type) -> dict:
    """A multipart form's strings as the types ``cls`` declares (``"30"`` for steps is 30);
    a value that does not convert is left as it is, for ``validate()`` to name."""
    declared = params(cls)
    values = {}
    for name, value in form.items():
        info = declared.get(name)
        if info is not None and isinstance(value, str) and info.type in (int, float, bool):
            values[name] = _convert(value, info.type)
        else:
            values[name] = value
    return values


def _convert(value: str, kind: type):
    text = value.strip()
    if kind is bool:
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), value)
    try:
        return kind(text) if len(text) <= 40 else value  # int() of thousands of digits is slow
    except ValueError:
        return value
