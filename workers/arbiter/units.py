"""Byte sizes as people read and write them: ``"8GiB"`` in, ``"6.1 GiB"`` out."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024**2
GiB = 1024**3

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": GiB,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """``"8GiB"``, ``"512 MiB"``, ``"1.5GB"`` or a plain byte count -> bytes."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (try 8GiB, 512MiB or a byte count)")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int) -> str:
    """Binary units with one decimal: what the memory panel and the status table show."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= GiB:
        return f"{sign}{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{sign}{n / MiB:.0f} MiB"
    if n >= KiB:
        return f"{sign}{n / KiB:.0f} KiB"
    return f"{sign}{n} B"
