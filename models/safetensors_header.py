"""A safetensors header checked against the file's real size before any loader parses it.

Model files come from anyone. A safetensors header is an 8-byte length and that much JSON; a
length of 2^40 or a tensor whose offsets run past the end of the file is refused here in
microseconds, with a message naming the file, instead of surfacing later as an allocation
failure or an "internal" error from deep inside a library. (GGUF: ``models/gguf_header.py``.)
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import BinaryIO

from workers.errors import BadInput

SAFETENSORS_MAX_HEADER = 100_000_000
"""The safetensors library's own limit on the JSON header (100 MB)."""


def require_safetensors(path: Path) -> None:
    """Refuse ``path`` unless its header length and tensor offsets fit inside the file."""
    read_safetensors_header(path)


def read_safetensors_header(path: Path) -> dict:
    """The checked header of ``path``: tensor name -> {dtype, shape, data_offsets}, and
    ``__metadata__`` when the file has one. No tensor data is read."""
    path = Path(path)
    with open(path, "rb") as handle:
        return check_safetensors(handle, os.fstat(handle.fileno()).st_size, path.name)


def require_safetensors_bytes(data: bytes, what: str) -> None:
    check_safetensors(io.BytesIO(data), len(data), what)


def check_safetensors(handle: BinaryIO, size: int, what: str) -> dict:
    if size < 8:
        raise BadInput(f"{what} is not a safetensors file ({size} bytes, shorter than its header)")
    (header_length,) = struct.unpack("<Q", handle.read(8))
    if header_length > min(SAFETENSORS_MAX_HEADER, size - 8):
        raise BadInput(
            f"{what} is damaged or hostile: its header claims {header_length} bytes "
            f"but the file holds {size} bytes (header limit {SAFETENSORS_MAX_HEADER})"
        )
    try:
        header = json.loads(handle.read(header_length))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise BadInput(f"{what} has an unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise BadInput(f"{what} has a safetensors header that is not an object")
    data_bytes = size - 8 - header_length
    for name, tensor in header.items():
        if name != "__metadata__":
            _check_tensor_offsets(what, name, tensor, data_bytes)
    return header


def _check_tensor_offsets(what: str, name: str, tensor: object, data_bytes: int) -> None:
    offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
    valid = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    )
    if not valid or not isinstance(offsets, list) or not 0 <= offsets[0] <= offsets[1] <= data_bytes:
        raise BadInput(
            f"{what}: tensor {name[:80]!r} lies outside the file's {data_bytes} bytes of data "
            f"(offsets {offsets!r})"
        )
