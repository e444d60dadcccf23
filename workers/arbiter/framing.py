"""Frames on the arbiter socket: a 4-byte big-endian length, then one codec JSON message."""

from __future__ import annotations

import struct

from workers import codec

HEADER = struct.Struct(">I")
MAX_CLIENT_FRAME = 256 * 1024
"""Largest frame a client may send. The largest real client message is a ``Register`` listing the
leases a process holds (about 1 KiB each with its tiers): a few per worker, far below 200. Each
of the arbiter's connections buffers at most this much of an unfinished frame."""
MAX_ARBITER_FRAME = 4 * 1024 * 1024
"""Largest frame the arbiter sends: a ``Status`` lists every lease and waiting request (a few
hundred bytes each), so it grows with a request flood; only the client that asked buffers it."""
MAX_FRAME = MAX_ARBITER_FRAME
"""The larger of the two: a length beyond it means the peer is not speaking this protocol."""


class FrameTooLarge(ValueError):
    """The length prefix is beyond the limit: the stream cannot be resynchronised."""


def frame(msg: object, limit: int = MAX_FRAME) -> bytes:
    """One message as a frame; raises ``FrameTooLarge`` past ``limit`` (the receiver would hang up)."""
    data = codec.encode(msg)
    if len(data) > limit:
        raise FrameTooLarge(f"{type(msg).__name__} is {len(data)} bytes, over the {limit}-byte frame limit")
    return HEADER.pack(len(data)) + data


class FrameBuffer:
    """Accumulates bytes from a stream and cuts them into frame payloads of at most ``limit`` bytes."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self.limit = limit
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held (0 between frames)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete payloads. Raises ``FrameTooLarge``."""
        self._buffer += data
        payloads, start = [], 0
        try:
            while len(self._buffer) - start >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buffer, start)
                if length > self.limit:
                    raise FrameTooLarge(
                        f"frame of {length} bytes exceeds the {self.limit}-byte limit "
                        "(is this a Hearth arbiter client?)"
                    )
                end = start + HEADER.size + length
                if len(self._buffer) < end:
                    break
                payloads.append(bytes(self._buffer[start + HEADER.size : end]))
                start = end
        finally:
            del self._buffer[:start]  # once per feed: a burst of small frames costs no copying per frame
        return payloads
