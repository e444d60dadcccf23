"""Names and paths built from data Hearth did not write itself: opened projects, job requests,
API clients. Every file name that carries such a value goes through here first.

A session id from a ``.hearth`` file someone sent you ends up in a file name
(``brush-renders/<session id>.png``); without these checks ``../../somewhere/else`` in that field
writes wherever its author likes. Ids are therefore held to a strict pattern (what Hearth itself
generates: hex uuids, short slugs), and every joined path is resolved and must stay in its folder.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from workers.errors import BadInput

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""1 to 64 characters: a letter or digit first, then letters, digits, ``_``, ``.`` or ``-``."""


def safe_name(field: str, value: object) -> str:
    """``value`` if it is a valid id for ``field`` (e.g. "session id"), else ``BadInput`` naming the field."""
    if not isinstance(value, str):
        raise BadInput(f"{field} must be text, got {type(value).__name__}")
    if not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise BadInput(
            f"{field} {value[:80]!r} is not allowed: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return value


def path_inside(base: Path | str, *parts: str) -> Path:
    """``base`` joined with ``parts``, resolved (symlinks followed); ``BadInput`` if it leaves ``base``.

    Each part is refused on sight when it is absolute (POSIX or Windows, a drive letter
    included), holds a backslash, or has a ``..`` component; the resolved result must still lie
    inside the resolved ``base``, which also catches a symlink in the folder that points out.
    """
    root = Path(base).resolve()
    for part in parts:
        _check_part(str(part), root)
    target = root.joinpath(*parts).resolve()
    if target != root and not target.is_relative_to(root):
        raise BadInput(f"{'/'.join(map(str, parts))!r} leads outside {root} (through a link); refused")
    return target


def _check_part(part: str, root: Path) -> None:
    posix, windows = PurePosixPath(part), PureWindowsPath(part)
    escapes = (
        not part
        or "\\" in part
        or "\x00" in part
        or posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or ".." in posix.parts
    )
    if escapes:
        raise BadInput(f"{part[:80]!r} would lead outside {root}; refused")
