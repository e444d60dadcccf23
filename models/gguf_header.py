"""A GGUF file's header walked with every length checked against the bytes really there.

GGUF (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic,
version, tensor count, metadata count, then the metadata (key, type, value), then one info per
tensor (name, dimensions, type, offset into the data section). Every count and length in it is
the author's word: a count of 2^60, or a file cut off after its first megabyte, is found here in
well under a second, before transformers (13 s to import on a small machine) reads anything.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from workers.errors import BadInput

MAGIC = b"GGUF"
VERSIONS = (2, 3)
"""What transformers' GGUF reader supports (version 1 predates it)."""
MAX_COUNT = 1 << 20
"""Tensors or metadata keys; real models have thousands (a 70B Llama: 723 tensors)."""
MAX_DIMS = 8
MAX_NESTING = 4
MIN_TENSOR_INFO = 24  # name length u64, n_dims u32, type u32, offset u64
MIN_KEY_VALUE = 13  # key length u64, value type u32, one byte of value
FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32


class Truncated(Exception):
    """A length in the header runs past the end of the file."""


class GGUFHeaderWalk:
    """A cursor over the file's bytes that refuses to step past their end."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> int:
        if count < 0 or self.at + count > len(self.data):
            raise Truncated(self.at)
        start, self.at = self.at, self.at + count
        return start

    def number(self, fmt: str) -> int:
        return struct.unpack_from(fmt, self.data, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> bytes:
        length = self.number("<Q")
        return bytes(self.data[self.take(length) : self.at])

    def value(self, kind: int, depth: int = 0) -> object:
        if kind in FIXED_SIZES:
            return struct.unpack_from(_FORMATS[kind], self.data, self.take(FIXED_SIZES[kind]))[0]
        if kind == STRING:
            return self.string()
        if kind != ARRAY or depth >= MAX_NESTING:
            raise BadInput(f"metadata value type {kind} is not one GGUF defines")
        item, count = self.number("<I"), self.number("<Q")
        if item in FIXED_SIZES:
            self.take(count * FIXED_SIZES[item])  # skipped whole: a vocabulary's scores, say
            return None
        if count > (len(self.data) - self.at) // 8:
            raise Truncated(self.at)
        if item == STRING:
            self.skip_strings(count)
            return None
        for _ in range(count):
            self.value(item, depth + 1)
        return None

    def skip_strings(self, count: int) -> None:
        """A vocabulary is 50,000 strings and more: one tight loop, no objects made."""
        data, at, end, length_of = self.data, self.at, len(self.data), _LENGTH.unpack_from
        for _ in range(count):
            if at + 8 > end:
                raise Truncated(at)
            at += 8 + length_of(data, at)[0]
        if at > end:
            raise Truncated(end)
        self.at = at


_LENGTH = struct.Struct("<Q")
_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def require_gguf(path: Path) -> None:
    """Refuse ``path`` unless it is a GGUF whose whole header fits inside the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(4) != MAGIC:
            raise BadInput(f"{path.name} is not a GGUF file (it does not start with the GGUF header)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                _walk(GGUFHeaderWalk(view), path.name)
            except Truncated as cut:
                raise BadInput(
                    f"{path.name} is truncated or damaged: its header runs past the end of the file "
                    f"(at byte {cut.args[0]} of {len(view)})"
                ) from None
            finally:
                view.release()


def _walk(walk: GGUFHeaderWalk, name: str) -> None:
    walk.take(4)
    version = walk.number("<I")
    if version not in VERSIONS:
        raise BadInput(f"{name}: GGUF version {version} is not one this Hearth reads")
    tensors, keys = walk.number("<Q"), walk.number("<Q")
    size = len(walk.data)
    for what, count, smallest in (("tensor", tensors, MIN_TENSOR_INFO), ("metadata", keys, MIN_KEY_VALUE)):
        if count > min(MAX_COUNT, size // smallest):
            raise BadInput(
                f"{name} is damaged or hostile: its {what} count is {count}, more than its {size} bytes can hold"
            )
    alignment = DEFAULT_ALIGNMENT
    for _ in range(keys):
        key, kind = walk.string(), walk.number("<I")
        value = walk.value(kind)
        if key == b"general.alignment" and isinstance(value, int):
            alignment = value
    if alignment <= 0 or alignment & (alignment - 1):
        raise BadInput(f"{name}: alignment {alignment} is not a power of two")
    offsets = [_tensor_offset(walk, name) for _ in range(tensors)]
    data_start = -(-walk.at // alignment) * alignment
    if any(offset >= size - data_start for offset in offsets):
        raise BadInput(f"{name} is truncated: a tensor's data starts past the end of the file")


def _tensor_offset(walk: GGUFHeaderWalk, name: str) -> int:
    walk.string()
    dims = walk.number("<I")
    if dims > MAX_DIMS:
        raise BadInput(f"{name}: a tensor claims {dims} dimensions")
    walk.take(8 * dims + 4)  # the dimensions and the tensor's type
    return walk.number("<Q")
