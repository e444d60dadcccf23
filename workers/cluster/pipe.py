"""The worker runtime's pipe, inside an actor: two queues of encoded messages.

``WorkerRuntime`` speaks to its supervisor through ``send_bytes``/``recv_bytes`` on a
multiprocessing connection. An actor has no such pipe; it has method calls. ``QueuePipe`` gives
the runtime the same two calls, while the actor's methods put commands in and take events out,
still as the codec's JSON bytes: the same messages, checked the same way, on both transports.
"""

from __future__ import annotations

import queue
import threading

_CLOSED = object()


class QueuePipe:
    """``send_bytes``/``recv_bytes`` for the runtime; ``put_command``/``take_events`` for the actor."""

    def __init__(self) -> None:
        self._commands: queue.Queue = queue.Queue()
        self._events: queue.Queue = queue.Queue()
        self._closed = threading.Event()

    # -- the runtime's side ---------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        if self._closed.is_set():
            raise BrokenPipeError("the actor's pipe is closed")
        self._events.put(bytes(data))

    def recv_bytes(self) -> bytes:
        item = self._commands.get()
        if item is _CLOSED:
            self._commands.put(_CLOSED)  # every later read sees the end too
            raise EOFError("the actor's pipe is closed")
        return item

    # -- the actor's side -----------------------------------------------------------------

    def put_command(self, data: bytes) -> None:
        self._commands.put(bytes(data))

    def take_events(self, timeout: float, limit: int = 256) -> list[bytes]:
        """Events sent since the last call; waits up to ``timeout`` for the first one."""
        try:
            first = self._events.get(timeout=timeout)
        except queue.Empty:
            return []
        taken = [first]
        while len(taken) < limit:
            try:
                taken.append(self._events.get_nowait())
            except queue.Empty:
                break
        return taken

    def close(self) -> None:
        self._closed.set()
        self._commands.put(_CLOSED)
