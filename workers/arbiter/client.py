"""The client side of the lease protocol: workers ask here before they allocate.

    client = ArbiterClient("video worker")
    with client.acquire("video render", Priority.background, tiers, cancelled=token.is_set) as lease:
        for step in steps:
            if (revoke := lease.revoke_requested()) is not None:
                shrink_to(revoke.tier)          # or unload; then:
                lease.done_revoke(new_bytes, revoke.tier)
            ...

If no arbiter listens, the client starts one (detached, so it outlives the GUI or CLI that
started it) and retries for up to ten seconds. If the arbiter dies, a background thread
reconnects (starting a new one) and re-registers the leases it holds, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from workers import codec
from workers.arbiter.address import arbiter_running, log_path, socket_path, start_lock_path
from workers.arbiter.framing import MAX_ARBITER_FRAME, MAX_CLIENT_FRAME, FrameBuffer, FrameTooLarge, frame
from workers.arbiter.messages import (
    ArbiterMessage,
    CancelRequest,
    DeviceReading,
    Granted,
    Grow,
    GrowDone,
    HeldLease,
    LedgerSnapshot,
    ProtocolError,
    Refused,
    Register,
    Release,
    Request,
    Revoke,
    RevokeDone,
    SetIdle,
    Status,
    StatusQuery,
    Throttle,
    Tier,
    Waiting,
)
from workers.errors import HearthError, JobCancelled, OutOfMemory
from workers.protocol import Priority

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
AUTOSTART_IDLE_EXIT_S = 600
"""An arbiter started on demand exits after ten minutes without clients."""
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_STARTED: list[subprocess.Popen] = []  # kept so a started arbiter is reaped, not warned about


class ArbiterUnavailable(HearthError):
    """No arbiter could be reached (or started) at the socket."""


class Lease:
    """Device memory granted by the arbiter; release it when the memory is freed.

    ``bytes`` and ``tier`` follow revocations: after ``done_revoke`` they are the leaner values.
    """

    def __init__(self, client: ArbiterClient, granted: Granted, request: Request):
        self._client = client
        self.lease_id = granted.lease_id
        self.bytes = granted.bytes
        self.tier = granted.tier
        self.job = request.job
        self.priority = request.priority
        self.tiers = request.tiers
        self.keep_resident = request.keep_resident
        self.can_grow = request.can_grow
        self.idle = False
        self.released = False
        self._revoke: Revoke | None = None
        self._throttle: Throttle | None = None
        self._grow: Grow | None = None

    def __repr__(self) -> str:
        return f"Lease({self.lease_id!r}, {self.job!r}, bytes={self.bytes}, tier={self.tier!r})"

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def revoke_requested(self) -> Revoke | None:
        """The arbiter's pending order to shrink, if any; check it at every step boundary."""
        return self._revoke

    def throttled(self) -> Throttle | None:
        """The arbiter's standing order to pause between steps (a stronger job computes), if any."""
        return self._throttle

    def done_revoke(self, new_bytes: int, tier: str = "") -> None:
        """Tell the arbiter the memory is freed down to ``new_bytes`` (0: unloaded, lease ends)."""
        self._client._revoke_done(self, new_bytes, tier)

    def grow_offered(self) -> Grow | None:
        """Memory for a faster tier the arbiter set aside for this lease, if any (step boundary)."""
        return self._grow

    def done_grow(self, new_bytes: int, tier: str = "") -> None:
        """Tell the arbiter this lease now holds ``new_bytes`` at ``tier`` (unchanged: declined)."""
        self._client._grow_done(self, new_bytes, tier)

    def release(self) -> None:
        """End the lease after freeing its memory. Idempotent."""
        self._client._release(self)

    def set_idle(self, idle: bool) -> None:
        """Idle: the model stays warm but the arbiter may evict it (LRU) when memory is needed."""
        self._client._set_idle(self, idle)

    def held(self) -> HeldLease:
        return HeldLease(
            lease_id=self.lease_id,
            job=self.job,
            priority=self.priority,
            bytes=self.bytes,
            tier=self.tier,
            tiers=self.tiers,
            idle=self.idle,
            keep_resident=self.keep_resident,
            can_grow=self.can_grow,
        )


class ArbiterClient:
    """One connection to the arbiter, shared by every job of a process. Thread-safe."""

    def __init__(self, owner: str, address: Path | None = None, autostart: bool = True):
        self.owner = owner
        self.address = Path(address).absolute() if address else socket_path()
        self.autostart = autostart
        self.last_error = ""
        self._lock = threading.RLock()  # guards state and the socket's send side
        self._closed = False
        self._leases: dict[str, Lease] = {}
        self._pending: dict[str, tuple[Request, queue.Queue]] = {}
        self._status_waiters: deque[queue.Queue] = deque()
        self._sock = self._connect(time.monotonic() + CONNECT_TIMEOUT_S)
        self._send_locked(Register(owner=owner, pid=os.getpid()))
        self._reader = threading.Thread(target=self._read_loop, name=f"arbiter-client {owner}", daemon=True)
        self._reader.start()

    # ----------------------------------------------------------------------- public API

    def acquire(
        self,
        job: str,
        priority: Priority,
        tiers: Sequence[Tier],
        timeout: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        on_wait: Callable[[str], None] | None = None,
        *,
        keep_resident: bool = False,
        can_grow: bool = False,
    ) -> Lease:
        """Block until the arbiter grants one of ``tiers`` (fastest first).

        ``keep_resident`` marks a token-by-token model (chat, music) that the arbiter evicts or
        pauses only after everything else; ``can_grow`` a job that can take a larger tier back
        between steps (``Lease.grow_offered``). Raises ``OutOfMemory`` with the arbiter's reason when refused or after ``timeout``
        seconds, and ``JobCancelled`` as soon as ``cancelled()`` is true.
        """
        request = Request(
            request_id=uuid.uuid4().hex,
            job=job,
            priority=priority,
            tiers=tuple(tiers),
            owner=self.owner,
            keep_resident=keep_resident,
            can_grow=can_grow,
        )
        answers: queue.Queue = queue.Queue()
        with self._lock:
            self._pending[request.request_id] = (request, answers)
            self._send_locked(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        reason = ""
        while True:
            if cancelled():
                self._abandon(request.request_id, answers)
                raise JobCancelled()
            if deadline is not None and time.monotonic() >= deadline:
                self._abandon(request.request_id, answers)
                raise OutOfMemory(f"{job}: no memory granted within {timeout:g} s ({reason or 'no answer'})")
            try:
                answer = answers.get(timeout=0.05)
            except queue.Empty:
                continue
            match answer:
                case Lease():
                    return answer
                case Waiting(reason=reason):
                    if on_wait is not None:
                        on_wait(reason)
                case Refused(reason=refusal):
                    raise OutOfMemory(refusal)
                case ArbiterUnavailable():
                    raise answer

    def report_device(self, total: int, free: int, used_by_hearth: int) -> None:
        """Send a real device reading (``torch.cuda.mem_get_info`` and ``memory_reserved``)."""
        with self._lock:
            self._send_locked(DeviceReading(total=total, free=free, used_by_hearth=used_by_hearth))

    def status(self, timeout: float = 10.0) -> LedgerSnapshot:
        """The arbiter's ledger: budget, leases and waiting requests."""
        answers: queue.Queue = queue.Queue()
        with self._lock:
            self._status_waiters.append(answers)
            self._send_locked(StatusQuery())
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty:
            with self._lock, contextlib.suppress(ValueError):
                self._status_waiters.remove(answers)
            raise ArbiterUnavailable(
                f"the arbiter at {self.address} did not answer within {timeout:g} s"
            ) from None
        if isinstance(answer, ArbiterUnavailable):
            raise answer
        return answer

    def leases(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def close(self) -> None:
        """Disconnect; the arbiter frees every lease this client still holds."""
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(timeout=5)
        self._sock.close()
        for process in _STARTED:
            process.poll()

    def __enter__(self) -> ArbiterClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ----------------------------------------------------------------------- lease operations

    def _release(self, lease: Lease) -> None:
        with self._lock:
            if lease.released:
                return
            lease.released = True
            self._leases.pop(lease.lease_id, None)
            self._send_locked(Release(lease_id=lease.lease_id))

    def _set_idle(self, lease: Lease, idle: bool) -> None:
        with self._lock:
            lease.idle = idle
            if not lease.released:
                self._send_locked(SetIdle(lease_id=lease.lease_id, idle=idle))

    def _revoke_done(self, lease: Lease, new_bytes: int, tier: str) -> None:
        if not 0 <= new_bytes <= lease.bytes:
            raise ValueError(f"a revoked lease can only shrink: {new_bytes} is not within 0..{lease.bytes}")
        with self._lock:
            if lease.released:
                return
            lease._revoke = None
            lease.bytes, lease.tier = new_bytes, tier or lease.tier
            if new_bytes == 0:
                lease.released = True
                self._leases.pop(lease.lease_id, None)
            self._send_locked(RevokeDone(lease_id=lease.lease_id, new_bytes=new_bytes, tier=lease.tier))

    def _grow_done(self, lease: Lease, new_bytes: int, tier: str) -> None:
        with self._lock:
            lease._grow = None
            if lease.released:
                return
            lease.bytes, lease.tier = new_bytes, tier or lease.tier
            self._send_locked(GrowDone(lease_id=lease.lease_id, new_bytes=new_bytes, tier=lease.tier))

    def _abandon(self, request_id: str, answers: queue.Queue) -> None:
        with self._lock:
            self._pending.pop(request_id, None)
            self._send_locked(CancelRequest(request_id=request_id))
        # A grant may have crossed our cancel: give it straight back.
        while not answers.empty():
            answer = answers.get_nowait()
            if isinstance(answer, Lease):
                answer.release()

    # ----------------------------------------------------------------------- connection

    def _send_locked(self, msg: object) -> None:
        # While disconnected, messages are dropped: the ledger state they describe is
        # re-sent as a whole (Register.held, pending requests) once reconnected.
        data = frame(msg, MAX_CLIENT_FRAME)  # FrameTooLarge here, not a hang-up from the arbiter
        try:
            self._sock.sendall(data)
        except OSError as exc:
            log.debug("arbiter send failed (%s); reconnecting", exc)

    def _connect(self, deadline: float) -> socket.socket:
        last_start = float("-inf")
        while not self._closed:
            sock = _try_connect(self.address)
            if sock is not None:
                return sock
            # Rate-limited, so an arbiter that cannot start is not respawned in a tight loop.
            if self.autostart and time.monotonic() - last_start >= 2.0:
                last_start = time.monotonic()
                self._start_arbiter(deadline)
                continue
            if time.monotonic() >= deadline or (not self.autostart and not arbiter_running(self.address)):
                break
            time.sleep(0.05)
        raise ArbiterUnavailable(f"no arbiter is listening at {self.address}")

    def _start_arbiter(self, deadline: float) -> None:
        """Start an arbiter unless one is running; the start lock keeps it to one at a time."""
        with open(start_lock_path(self.address), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if arbiter_running(self.address):
                return
            log.info("starting the arbiter at %s", self.address)
            with open(log_path(self.address), "ab") as log_file:
                process = subprocess.Popen(
                    arbiter_command()
                    + ["--socket", str(self.address), "--idle-exit", str(AUTOSTART_IDLE_EXIT_S)],
                    start_new_session=True,  # survives the GUI or CLI that started it
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                    cwd=_PROJECT_ROOT,
                )
            _STARTED.append(process)
            # Hold the start lock until the new arbiter holds its own lock.
            while not arbiter_running(self.address) and process.poll() is None:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)

    def _read_loop(self) -> None:
        while not self._closed:
            self._read_until_eof(self._sock)
            if self._closed:
                return
            log.warning("lost the arbiter at %s; reconnecting", self.address)
            self._reconnect()

    def _read_until_eof(self, sock: socket.socket) -> None:
        frames = FrameBuffer(MAX_ARBITER_FRAME)
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                payloads = frames.feed(data)
            except FrameTooLarge as exc:
                log.error("arbiter sent a bad frame: %s", exc)
                return
            for payload in payloads:
                try:
                    self._dispatch(codec.decode(payload, expected=ArbiterMessage))
                except codec.VersionMismatch as exc:
                    self._incompatible(exc)
                except codec.MalformedMessage as exc:
                    log.error("arbiter sent a malformed message: %s", exc)

    def _incompatible(self, exc: codec.VersionMismatch) -> None:
        """The arbiter is another build's: every waiting request and status query fails, saying so."""
        said = exc.payload.get("message") if exc.payload.get("type") == "ProtocolError" else None
        text = (
            f"the arbiter at {self.address} speaks Hearth protocol version {exc.theirs!r} and this "
            f"Hearth speaks version {exc.ours}: another Hearth build started it. Quit that Hearth (its "
            "arbiter exits once idle) or run one build at a time"
        )
        if isinstance(said, str) and said:
            text += f" (the arbiter says: {said})"
        error = ArbiterUnavailable(text)
        with self._lock:
            self.last_error = text
            for _, answers in self._pending.values():
                answers.put(error)
            self._pending.clear()
            while self._status_waiters:
                self._status_waiters.popleft().put(error)
        log.error("%s", text)

    def _reconnect(self) -> None:
        while not self._closed:
            try:
                sock = self._connect(time.monotonic() + CONNECT_TIMEOUT_S)
            except ArbiterUnavailable as exc:
                log.warning("%s; retrying", exc)
                time.sleep(0.5)
                continue
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._sock.close()
                self._sock = sock
                for lease in self._leases.values():
                    lease._grow = None  # the old arbiter's offers died with it
                held = tuple(lease.held() for lease in self._leases.values())
                self._send_locked(Register(owner=self.owner, pid=os.getpid(), held=held))
                for request, _ in self._pending.values():
                    self._send_locked(request)
                for _ in self._status_waiters:
                    self._send_locked(StatusQuery())
            log.info("reconnected to the arbiter; re-registered %d lease(s)", len(held))
            return

    def _dispatch(self, msg: object) -> None:
        with self._lock:
            match msg:
                case Granted(request_id=request_id):
                    self._granted(msg, self._pending.pop(request_id, None))
                case Waiting(request_id=request_id) | Refused(request_id=request_id):
                    if isinstance(msg, Refused):
                        entry = self._pending.pop(request_id, None)
                    else:
                        entry = self._pending.get(request_id)
                    if entry is not None:
                        entry[1].put(msg)
                case Revoke(lease_id=lease_id):
                    lease = self._leases.get(lease_id)
                    if lease is not None:
                        lease._revoke = msg
                case Grow(lease_id=lease_id):
                    lease = self._leases.get(lease_id)
                    if lease is not None:
                        lease._grow = msg
                case Throttle(lease_id=lease_id, pause=pause):
                    lease = self._leases.get(lease_id)
                    if lease is not None:
                        lease._throttle = msg if pause else None
                case Status(snapshot=snapshot):
                    if self._status_waiters:
                        self._status_waiters.popleft().put(snapshot)
                case ProtocolError(message=text):
                    self.last_error = text
                    log.warning("arbiter: %s", text)

    def _granted(self, granted: Granted, entry: tuple[Request, queue.Queue] | None) -> None:
        if entry is None:
            # The request was cancelled or timed out while this grant was on its way.
            self._send_locked(Release(lease_id=granted.lease_id))
            return
        request, answers = entry
        lease = Lease(self, granted, request)
        # Recorded here, in the reader, so a reconnect right now already re-registers it.
        self._leases[lease.lease_id] = lease
        answers.put(lease)


def _try_connect(address: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(address))
    except OSError:
        sock.close()
        return None
    return sock


def arbiter_command() -> list[str]:
    """How to start an arbiter process: the module from a source install, the bundle itself when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--arbiter"]
    return [sys.executable, "-m", "workers.arbiter"]
