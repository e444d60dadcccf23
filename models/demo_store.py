"""Demo models are built from configs once and saved into the models folder, then always loaded
back through the same ``from_pretrained`` path a real local model takes."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from workers.paths import models_dir

# The text-encoder size every tiny T5/UMT5 slot uses (video's Wan, music's MusicGen): docs/FIELD-NOTES.md §4-5.
TINY_T5 = dict(
    vocab_size=320,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)


def ensure_saved(model_id: str, save: Callable[[Path], None], marker: str = "model_index.json") -> Path:
    """Return ``models_dir()/model_id``, first running ``save(staging_folder)`` if it is not there.

    Atomic and one process at a time: the folder appears complete (renamed from a staging
    folder) or not at all, even when two workers start together or one is killed mid-save.
    """
    target = models_dir() / model_id
    if (target / marker).exists():
        return target
    with open(models_dir() / f".{model_id}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / marker).exists():
            staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=models_dir()))
            try:
                save(staging)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target
