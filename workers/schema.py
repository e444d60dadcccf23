"""Job parameters declared once: type, default, range and words for a person, in one field.

A request field written ``steps: int = param(20, low=1, high=500, help="...")`` carries its
:class:`Param` in the dataclass field's metadata. From it, and nothing else:
- ``check_params`` refuses a value out of range before any worker starts (and again in the worker);
- the CLI builds ``--steps`` with its default, type and ``--help`` text (``app/cli_schema.py``);
- the GUI forms take their limits, defaults and tooltips (``app/form_binding.py``);
- the HTTP API takes Hearth's extra body fields by these names and refuses them the same way.
So a default or a range lives in exactly one place per parameter.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from workers.errors import BadInput


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """What a person needs to know about one job parameter, and what the schema enforces."""

    low: float | None = None
    """Smallest allowed value (numbers), inclusive."""
    high: float | None = None
    """Largest allowed value (numbers), inclusive."""
    multiple_of: int | None = None
    """The value must be a multiple of this (image sides are multiples of 8)."""
    choices: tuple[str, ...] = ()
    """The only allowed values (strings); empty means any."""
    label: str = ""
    """How messages and forms name it; defaults to the field name with spaces."""
    help: str = ""
    """One sentence for tooltips and ``--help``."""
    step: float | None = None
    """How far one click of a GUI spin box moves it."""
    flag: str = ""
    """The CLI option, when not ``--`` plus the field name (``out_path`` is ``--out``)."""
    zero_means: str = ""
    """For numbers where 0 is special ("the model's own"): what 0 means; 0 is then allowed."""


@dataclass(frozen=True, slots=True)
class ParamInfo:
    """One declared field of a request: its name, Python type, default and :class:`Param`."""

    name: str
    type: type
    default: Any
    spec: Param

    @property
    def label(self) -> str:
        return self.spec.label or self.name.replace("_", " ")

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    def describe_range(self) -> str:
        s = self.spec
        parts = []
        if s.low is not None and s.high is not None:
            parts.append(f"{_number(s.low)} to {_number(s.high)}")
        if s.multiple_of:
            parts.append(f"a multiple of {s.multiple_of}")
        if s.choices:
            parts.append("one of " + ", ".join(c for c in s.choices if c))  # "" is said by the help
        if s.zero_means:
            parts.append(f"0: {s.zero_means}")
        return "; ".join(parts)


def param(default: Any, **spec: Any) -> Any:
    """A request field with a default and its :class:`Param` (range, label, help)."""
    return field(default=default, metadata={"param": Param(**spec)})


def params(cls: type) -> dict[str, ParamInfo]:
    """Every ``param()`` field of a request class, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("param")
        if spec is not None:
            found[f.name] = ParamInfo(name=f.name, type=hints[f.name], default=f.default, spec=spec)
    return found


def check_params(request: Any, where: str = "") -> None:
    """Raise ``BadInput`` naming the first declared parameter whose value is not allowed."""
    for info in params(type(request)).values():
        check_value(info, getattr(request, info.name), where)


def check_value(info: ParamInfo, value: Any, where: str = "") -> None:
    name = f"{where}: {info.label}" if where else info.label
    s = info.spec
    if info.type in (int, float):
        whole = info.type is int
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            kind = "a whole number" if whole else "a number"
            span = f" between {_number(s.low)} and {_number(s.high)}" if s.low is not None else ""
            raise BadInput(f"{name} must be {kind}{span}, got {value!r}", field=info.name)
        if not whole and math.isnan(value):
            raise BadInput(f"{name} must be a number, got {value!r}", field=info.name)
        if s.zero_means and value == 0:
            return
        if (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
            raise BadInput(
                f"{name} must be between {_number(s.low)} and {_number(s.high)}, got {value!r}",
                field=info.name,
            )
        if s.multiple_of and value % s.multiple_of:
            raise BadInput(f"{name} must be a multiple of {s.multiple_of}, got {value!r}", field=info.name)
    elif info.type is str and s.choices and value not in s.choices:
        offered = ", ".join(c for c in s.choices if c) + (" or empty" if "" in s.choices else "")
        raise BadInput(f"{name} must be one of {offered}, got {value!r}", field=info.name)


def _number(value: float | None) -> str:
    """2^63-1 prints as itself, 0.5 as 0.5, 20.0 as 20."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:g}"


def default_of(cls: type, name: str) -> Any:
    """The one default of a declared parameter (view-state and settings start from it)."""
    return params(cls)[name].default
