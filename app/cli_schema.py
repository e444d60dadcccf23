"""Command-line options built from the job schema (``workers/schema.py``).

Each ``--option`` takes its type, choices, help text, range and default from the request field's
``param()`` declaration. A value stays ``None`` when the option is not given, so the request is
built with the field's own default: defaults are never copied into the CLI.
"""

from __future__ import annotations

import argparse

from workers.schema import ParamInfo, params


def add_option(group, cls: type, name: str, flag: str = "", help: str = "", note: str = "") -> None:
    """``--name`` (or ``flag``) for one declared field of ``cls``."""
    info = params(cls)[name]
    flag = flag or info.flag
    dest = name if flag == info.flag else flag.removeprefix("--").replace("-", "_")
    text = f"{help or info.spec.help} ({describe(info, note)})"
    if info.type is bool:
        group.add_argument(flag, dest=dest, action="store_true", default=None, help=text)
        return
    group.add_argument(
        flag,
        dest=dest,
        type=info.type,
        choices=[c for c in info.spec.choices if c] or None,
        metavar=name.upper() if info.spec.choices else None,
        help=text,
    )


def add_options(group, cls: type, names: list[str] | None = None, skip: tuple[str, ...] = ()) -> None:
    """Every declared field of ``cls`` (or just ``names``) as an option."""
    for name in names or list(params(cls)):
        if name not in skip:
            add_option(group, cls, name)


def given(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict:
    """The declared fields of ``cls`` the user gave on the command line, as request keywords."""
    return {
        name: getattr(args, name)
        for name in params(cls)
        if name not in skip and getattr(args, name, None) is not None
    }


def describe(info: ParamInfo, note: str = "") -> str:
    default = f"default {info.default!r}" if info.type is str else f"default {info.default}"
    if info.type is bool:
        default = "off by default"
    elif info.default == "":
        default = ""  # the help says what empty means
    parts = [p for p in (info.describe_range(), default, note) if p]
    return "; ".join(parts)
