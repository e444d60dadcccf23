"""What the person chose for the arbiter: how much GPU memory to keep free for other programs.

A gamer or someone on a video call wants Hearth to leave more than the default headroom alone.
The window writes ``arbiter.json`` in the config folder (atomically); the running arbiter checks
the file's modification time at every tick and applies a change at once, so memory Hearth no
longer may use is taken back from background work at its next step. A file that cannot be read
changes nothing (the arbiter logs why and keeps its current headroom).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from workers.atomic import write_text
from workers.paths import config_dir

log = logging.getLogger("workers.arbiter")

FILE_NAME = "arbiter.json"
MAX_HEADROOM = 1 << 50
"""A sanity bound (1 PiB): anything larger is a typo, not a wish."""


class ConfigError(ValueError):
    """``arbiter.json`` exists but does not say anything the arbiter can use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ArbiterUserConfig:
    headroom: int | None = None
    """Bytes never leased, on top of what other programs already use; None: the default."""


def config_path() -> Path:
    return config_dir() / FILE_NAME


def load(path: Path | None = None) -> ArbiterUserConfig:
    """The saved choice; the defaults when there is no file. Raises ``ConfigError`` if unreadable."""
    path = Path(path) if path else config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ArbiterUserConfig()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    headroom = raw.get("headroom_bytes") if isinstance(raw, dict) else "missing"
    if headroom is not None and (
        isinstance(headroom, bool) or not isinstance(headroom, int) or not 0 <= headroom <= MAX_HEADROOM
    ):
        raise ConfigError(f"{path}: headroom_bytes must be a whole number of bytes >= 0, got {headroom!r}")
    return ArbiterUserConfig(headroom=headroom)


def save(config: ArbiterUserConfig, path: Path | None = None) -> None:
    path = Path(path) if path else config_path()
    write_text(path, json.dumps({"headroom_bytes": config.headroom}, indent=2) + "\n")


class ConfigWatcher:
    """Reloads ``arbiter.json`` when its modification time changes (one ``stat`` per call)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else config_path()
        self._seen: int | None = -1

    def changed(self) -> ArbiterUserConfig | None:
        """The new config if the file changed since the last call (also: appeared or vanished)."""
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self._seen:
            return None
        self._seen = stamp
        try:
            return load(self.path)
        except ConfigError as exc:
            log.warning("%s; keeping the current settings", exc)
            return None
