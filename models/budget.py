"""What this machine can give one model, read without torch and without asking the arbiter.

The device side is what the arbiter would share: the simulated device of HEARTH_ARBITER_DEVICE
(``sim:8GiB``, as the tests and benches run it), else the NVIDIA GPU's memory, less the
arbiter's headroom (HEARTH_ARBITER_HEADROOM); 0 without a GPU (``host``: every model is then
CPU-only). The host side is the system memory. Memory other programs hold right now is not
subtracted: that is the live budget, which only the running arbiter knows.
"""

from __future__ import annotations

import os

from models.fit import Budget


def machine_budget(device_bytes: int | None = None, host_bytes: int | None = None) -> Budget:
    """This machine's budget; either side can be given instead (``hearth models --budget``)."""
    if device_bytes is None:
        total = _device_total()
        device_bytes = max(0, total - _headroom()) if total else 0
    if host_bytes is None:
        import psutil

        host_bytes = psutil.virtual_memory().total
    return Budget(device_bytes=device_bytes, host_bytes=host_bytes)


def _device_total() -> int:
    spec = os.environ.get("HEARTH_ARBITER_DEVICE", "").strip()
    if spec.startswith("sim"):
        from workers.arbiter.device import parse_simulated

        return parse_simulated(spec).total()
    if spec == "host":
        return 0
    from workers.machine import detect_machine

    return detect_machine().vram_bytes


def _headroom() -> int:
    from workers.arbiter.records import DEFAULT_HEADROOM
    from workers.arbiter.units import parse_bytes

    try:
        return parse_bytes(os.environ.get("HEARTH_ARBITER_HEADROOM", str(DEFAULT_HEADROOM)))
    except ValueError:
        return DEFAULT_HEADROOM
