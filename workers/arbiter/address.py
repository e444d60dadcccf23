"""Where the arbiter listens, and the files that sit beside its socket."""

from __future__ import annotations

import os
from pathlib import Path

from workers.paths import runtime_dir

SOCKET_ENV = "HEARTH_ARBITER_SOCKET"
MAX_SOCKET_PATH = 107
"""Linux's sun_path holds 108 bytes including the terminating NUL."""


def socket_path() -> Path:
    """``$HEARTH_ARBITER_SOCKET``, else ``arbiter.sock`` in the private per-user runtime dir."""
    override = os.environ.get(SOCKET_ENV)
    if override:
        path = Path(override).expanduser().absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return runtime_dir() / "arbiter.sock"


def lock_path(sock: Path) -> Path:
    """Held (fcntl) by the running arbiter for its whole life; it also holds that arbiter's pid."""
    return sock.with_name(sock.name + ".lock")


def start_lock_path(sock: Path) -> Path:
    """Held by a client while it starts an arbiter, so two clients never start two."""
    return sock.with_name(sock.name + ".start.lock")


def log_path(sock: Path) -> Path:
    """Where an arbiter started on demand writes its log."""
    return sock.with_name(sock.name + ".log")


def running_pid(sock: Path) -> int | None:
    """The pid written by the arbiter that holds the lock (None if none ever started)."""
    try:
        text = lock_path(sock).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def arbiter_running(sock: Path) -> bool:
    """True while some arbiter holds the instance lock for ``sock`` (it may still be starting)."""
    import fcntl

    try:
        fd = os.open(lock_path(sock), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock, if we got it
    return False
