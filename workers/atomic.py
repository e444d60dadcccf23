"""Atomic file writes: a temp file in the same folder, fsync, rename. A crash never leaves half a file.

A process killed mid-write cannot remove its temp file, so temp files carry a name nobody else
uses (``.NAME.hearth-tmp-XXXXXXXX.SUFFIX``) and ``sweep_stale_temp_files`` removes the ones
left long enough ago that no live writer can still own them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from workers.errors import BadInput

TEMP_MARK = ".hearth-tmp-"
STALE_AFTER_S = 3600.0
"""No save takes an hour: a temp file this old belongs to a process that was killed."""


def check_writable(path: Path) -> Path:
    """Fail early, before any work, if ``path`` cannot be written."""
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BadInput(f"output path {path} is a directory; give a file name")
    if not parent.exists():
        raise BadInput(f"output folder {parent} does not exist")
    if not parent.is_dir():
        raise BadInput(f"output path {path} is inside {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"output folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path`` atomically, on error it vanishes."""
    path = Path(path)
    # The real suffix stays last: ffmpeg and PIL pick the container from it.
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def temp_prefix(name: str) -> str:
    return f".{name}{TEMP_MARK}"


def sweep_stale_temp_files(folder: Path, name: str = "", older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove this module's temp files in ``folder`` (only those for ``name`` when given) that are
    older than ``older_than_s``; a younger one may be a save still running in another process."""
    prefix = temp_prefix(name) if name else "."
    legacy = _legacy_temp_name(name) if name else None
    cutoff = time.time() - older_than_s
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            ours = entry.name.startswith(prefix) and TEMP_MARK in entry.name
            if not (ours or (legacy and legacy.fullmatch(entry.name))):
                continue
            with contextlib.suppress(OSError):
                if (
                    entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _legacy_temp_name(name: str) -> re.Pattern:
    """Temp files of Hearth before they were marked: ``.NAME.`` + mkstemp's 8 characters + suffix."""
    suffix = Path(name).suffix or ".tmp"
    return re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}" + re.escape(suffix))


def sweep_folders(folders: Iterable[Path], older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """``sweep_stale_temp_files`` over each folder that exists (Hearth's own, at worker start)."""
    removed = []
    for folder in folders:
        removed += sweep_stale_temp_files(folder, older_than_s=older_than_s)
    return removed


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
