"""The local API's key: made on first use, kept in the config folder, readable only by the user."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from workers.atomic import atomic_path
from workers.paths import config_dir

KEY_FILE = "api-key"
KEY_PREFIX = "hearth-"


def key_path() -> Path:
    return config_dir() / KEY_FILE


def api_key() -> str:
    """The key, created (mode 0600, written atomically) when there is none yet or it is unusable."""
    path = key_path()
    with contextlib.suppress(OSError, UnicodeDecodeError):
        key = path.read_text(encoding="utf-8").strip()
        if key.startswith(KEY_PREFIX) and len(key) >= len(KEY_PREFIX) + 32:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:  # someone widened it: narrow it again
                os.chmod(path, 0o600)
            return key
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)  # before the key is in it
        tmp.write_text(key + "\n", encoding="utf-8")
    return key


def key_matches(header: str | None, key: str) -> bool:
    """``Authorization: Bearer <key>``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())
