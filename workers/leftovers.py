"""What killed processes leave behind in Hearth's own folders, cleared when a worker starts.

A SIGKILL (or a power cut) mid-save leaves an atomic writer's temp file; a video worker killed
between denoising and encoding leaves its latent checkpoint. Neither is ever read again, and a
checkpoint is as large as the render's latents, so both are removed once they are old enough
that no running process can still own them.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from workers.atomic import sweep_folders

CHECKPOINT_MAX_AGE_DAYS = 3
"""Long enough to decode a render kept after an out-of-memory failure by hand; then it goes."""


def hearth_folders() -> list[Path]:
    """The folders Hearth writes into on its own (not the user's chosen output paths)."""
    from workers.paths import config_dir, data_dir, outputs_dir

    data = data_dir()
    return [
        data,
        data / "projects",
        data / "brush-renders",
        data / "checkpoints",
        outputs_dir(),
        config_dir(),
    ]


def sweep_at_worker_start() -> list[Path]:
    """Stale temp files in Hearth's folders and video checkpoints older than the limit; returns them."""
    removed = sweep_folders(folder for folder in hearth_folders() if folder.is_dir())
    return removed + remove_old_checkpoints()


def remove_old_checkpoints(max_age_days: float = CHECKPOINT_MAX_AGE_DAYS) -> list[Path]:
    from workers.paths import data_dir

    folder = data_dir() / "checkpoints"
    cutoff = time.time() - max_age_days * 86400
    removed = []
    for path in folder.glob("video-*.safetensors") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if not path.is_symlink() and path.stat().st_mtime < cutoff:
                os.unlink(path)
                removed.append(path)
    return removed
