"""Frames on the arbiter socket: a 4-byte big-endian length, then one codec JSON message."""

from __future__ import annotations

import struct

from workers import codec

HEADER = struct.Struct(">I")
MAX_FRAME = 4 * 1024 * 1024
"""Far above any real message; a bigger length means the peer is not speaking this protocol."""


class FrameTooLarge(ValueError):
    """The length prefix is beyond ``MAX_FRAME``: the stream cannot be resynchronised."""


def frame(msg: object) -> bytes:
    data = codec.encode(msg)
    return HEADER.pack(len(data)) + data


class FrameBuffer:
    """Accumulates bytes from a stream and cuts them into frame payloads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete payloads. Raises ``FrameTooLarge``."""
        self._buffer += data
        payloads = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise FrameTooLarge(
                    f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit "
                    "(is this a Hearth arbiter client?)"
                )
            if len(self._buffer) < HEADER.size + length:
                break
            payloads.append(bytes(self._buffer[HEADER.size : HEADER.size + length]))
            del self._buffer[: HEADER.size + length]
        return payloads
