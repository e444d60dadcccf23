"""Which compute device a worker uses: the CPU path and the CUDA path are the same code."""

from __future__ import annotations

import os


def compute_device() -> str:
    """``cuda`` when a GPU is visible (and not disabled with HEARTH_DEVICE=cpu), else ``cpu``."""
    import torch

    wanted = os.environ.get("HEARTH_DEVICE", "")
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"
