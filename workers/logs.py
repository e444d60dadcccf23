"""Log files in the platform log folder, rotated, one per process kind. No prompts are logged:
jobs appear by id and kind only, so a problem report is safe to send unless the user adds more."""

from __future__ import annotations

import logging
import logging.handlers

from workers.paths import log_dir

MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class _HearthLogFile(logging.handlers.RotatingFileHandler):
    """Hearth's own log file handler, so a second setup_logging call in a process adds no twin."""


def setup_logging(process_name: str, level: int = logging.INFO) -> None:
    """Send this process's log records to ``<log dir>/<process_name>.log`` (rotated at 2 MB)."""
    root = logging.getLogger()
    if any(isinstance(h, _HearthLogFile) for h in root.handlers):
        return
    handler = _HearthLogFile(
        log_dir() / f"{process_name}.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # bitsandbytes logs a warning on every int8 matmul (docs/FIELD-NOTES.md §2): keep it out of the log.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
