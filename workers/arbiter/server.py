"""The arbiter process: one selector loop serving the ledger on a private Unix socket.

One instance per user: it holds an fcntl lock beside the socket for its whole life, and a second
arbiter started meanwhile exits quietly. Malformed input gets a ``ProtocolError`` reply and the
loop keeps serving; a message from a build speaking another protocol version is refused naming
both versions. A client that disconnects loses its leases. A holder that misses its revoke
deadline is killed with SIGKILL, because process exit is the only reliable way to give VRAM back;
its supervisor then sees the worker die, fails its job and restarts it.

Hostile or broken clients cost little: each connection buffers at most one unfinished frame of
``MAX_CLIENT_FRAME`` bytes and is dropped if the rest does not come within ``FRAME_IDLE_S``; at
most ``MAX_CONNECTIONS`` are served at once, and a further one is told so and closed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers import codec
from workers.arbiter.address import MAX_SOCKET_PATH, lock_path, socket_path
from workers.arbiter.device import device_from_env
from workers.arbiter.framing import MAX_ARBITER_FRAME, MAX_CLIENT_FRAME, FrameBuffer, FrameTooLarge, frame
from workers.arbiter.ledger import (
    DEFAULT_AGING_S,
    DEFAULT_HEADROOM,
    DEFAULT_REVOKE_DEADLINE_S,
    GROW_SETTLE_S,
    Ledger,
    Send,
)
from workers.arbiter.messages import ClientMessage, ProtocolError, Register, Status
from workers.arbiter.units import format_bytes, parse_bytes
from workers.arbiter.user_config import ConfigWatcher

log = logging.getLogger("workers.arbiter")

TICK_S = 0.1
LISTEN_BACKLOG = 256
RECOVERY_S = 3.0
"""Clients notice a dead arbiter at once and reconnect within a second or two of its restart."""
MAX_CONNECTIONS = 64
"""Connections served at once: a few per Hearth process (four workers, the memory panel, a CLI run)."""
FRAME_IDLE_S = 10.0
"""A client sends each frame whole in one write; one that stops mid-frame this long is dropped."""
MAX_OUTBOX = 2 * MAX_ARBITER_FRAME
"""Replies queued for a client that does not read them; past this it is dropped."""


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    name: str
    pid: int
    frames: FrameBuffer = field(default_factory=lambda: FrameBuffer(MAX_CLIENT_FRAME))
    outbox: bytearray = field(default_factory=bytearray)
    registered: bool = False
    closing: bool = False
    last_data: float = field(default_factory=time.monotonic)
    """When bytes last arrived (or when a hang-up began, for a closing connection)."""
    told_version: bool = False


def acquire_instance_lock(sock_path: Path) -> int | None:
    """Take the single-instance lock and write our pid into it; None if another arbiter holds it."""
    fd = os.open(lock_path(sock_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def peer_pid(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, from SO_PEERCRED where the OS has it."""
    if not hasattr(socket, "SO_PEERCRED"):
        return 0, os.getuid()
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


class ArbiterServer:
    """Serves one ``Ledger`` on a Unix socket until stopped (or idle for ``idle_exit_s``)."""

    def __init__(
        self,
        ledger: Ledger,
        path: Path,
        *,
        idle_exit_s: float | None = None,
        user_config: ConfigWatcher | None = None,
        max_connections: int = MAX_CONNECTIONS,
        frame_idle_s: float = FRAME_IDLE_S,
    ):
        self.ledger = ledger
        self.path = Path(path)
        self.idle_exit_s = idle_exit_s
        self.max_connections = max_connections
        self.frame_idle_s = frame_idle_s
        self._refused = 0  # connections turned away since the last time there was room
        self._default_headroom = ledger.headroom
        self._user_config = user_config
        self._selector = selectors.DefaultSelector()
        self._connections: dict[str, _Connection] = {}
        self._next_id = 0
        self._stopping = False
        self._listener: socket.socket | None = None

    # ----------------------------------------------------------------------- lifecycle

    def listen(self) -> None:
        """Bind the socket, private to this user. Call only while holding the instance lock."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise OSError(f"arbiter socket path is too long for a Unix socket: {self.path}")
        # We hold the lock, so any socket file left here belongs to a dead arbiter: its clients
        # will reconnect and re-register what they hold; grant nothing until they have.
        if self.path.exists():
            log.warning("the previous arbiter died; holding grants %.0f s for re-registration", RECOVERY_S)
            self.ledger.hold_grants(RECOVERY_S)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no window in which another user could connect
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._listener = listener

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stopping = True

    def serve_forever(self) -> None:
        last_tick = 0.0
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                for key, events in self._selector.select(timeout=TICK_S):
                    if key.data is None:
                        self._accept()
                    else:
                        self._service(key.data, events)
                now = time.monotonic()
                if now - last_tick >= TICK_S:
                    last_tick = now
                    self._tick()
                if self._connections:
                    idle_since = now
                elif self.idle_exit_s is not None and now - idle_since >= self.idle_exit_s:
                    log.info("no clients for %.0f s: exiting", self.idle_exit_s)
                    break
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for conn in list(self._connections.values()):
            self._drop(conn)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._selector.close()

    # ----------------------------------------------------------------------- connections

    def _accept(self) -> None:
        # Drain the backlog: under a connection flood, one accept per loop would leave honest
        # clients finding the queue full.
        listener = self._listener
        while listener is not None:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: serve who is connected, retry later
                log.warning("cannot accept a connection: %s", exc)
                return
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        pid, uid = peer_pid(sock)
        if uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            sock.close()
            return
        sock.setblocking(False)
        if len(self._connections) >= self.max_connections:
            self._refuse(sock, pid)
            return
        self._refused = 0
        self._next_id += 1
        conn = _Connection(sock=sock, name=f"c{self._next_id}", pid=pid)
        self._connections[conn.name] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        log.debug("connection %s from pid %d", conn.name, pid)

    def _refuse(self, sock: socket.socket, pid: int) -> None:
        self._refused += 1
        if self._refused == 1:
            log.warning(
                "%d connections already: refusing pid %d (and any more until one closes)",
                self.max_connections,
                pid,
            )
        text = (
            f"too many connections: the arbiter serves at most {self.max_connections} at once and all "
            "are in use, so this one is closed (retry once another Hearth process exits)"
        )
        with contextlib.suppress(OSError):
            sock.send(frame(ProtocolError(message=text)))
            sock.recv(MAX_CLIENT_FRAME)  # read what it sent already, so the close is clean, not a reset
        sock.close()

    def _hang_up(self, conn: _Connection, text: str) -> None:
        """Tell the client why, then close once the reply is out (or after ``frame_idle_s``)."""
        self._reply(conn, ProtocolError(message=text))
        conn.closing, conn.last_data = True, time.monotonic()
        self._flush(conn)

    def _service(self, conn: _Connection, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(conn)
        if events & selectors.EVENT_READ and conn.name in self._connections:
            self._receive(conn)

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        if conn.closing:
            return  # hanging up: nothing more it says is read
        conn.last_data = time.monotonic()
        try:
            payloads = conn.frames.feed(data)
        except FrameTooLarge as exc:
            # The length prefix is garbage: we cannot find the next frame, so answer and hang up.
            self._hang_up(conn, str(exc))
            return
        for payload in payloads:
            if conn.name not in self._connections:
                return  # dropped meanwhile (it stopped reading its replies)
            self._deliver(conn, self._decode(conn, payload))

    def _decode(self, conn: _Connection, payload: bytes) -> object | None:
        try:
            return codec.decode(payload, expected=ClientMessage)
        except codec.VersionMismatch as exc:
            self._reply(conn, ProtocolError(message=self._version_refusal(conn, exc)))
        except codec.MalformedMessage as exc:
            self._reply(conn, ProtocolError(message=f"malformed message: {exc}"))
        return None

    def _version_refusal(self, conn: _Connection, exc: codec.VersionMismatch) -> str:
        text = (
            f"protocol version mismatch: this arbiter speaks Hearth protocol version {exc.ours}, "
            f"the {exc.payload.get('type', 'message')!s} from pid {conn.pid} is version {exc.theirs!r}. "
            f"Two Hearth builds share the arbiter at {self.path}: quit one of them"
        )
        if not conn.told_version:
            conn.told_version = True
            log.warning("%s", text)
        return text

    def _deliver(self, conn: _Connection, msg: object | None) -> None:
        if msg is None:
            return
        if not conn.registered and not isinstance(msg, Register):
            # Be forgiving: a client that skips Register is known by its pid.
            self._send_all(self.ledger.register(conn.name, f"pid {conn.pid}", conn.pid))
        conn.registered = True
        try:
            sends = self.ledger.handle(conn.name, msg, pid=conn.pid)
        except Exception:  # a ledger bug must not take down every client's arbiter
            log.exception("ledger failed on %r", msg)
            sends = [Send(conn.name, ProtocolError(message=f"arbiter error handling {type(msg).__name__}"))]
        self._send_all(sends)

    def _drop(self, conn: _Connection) -> None:
        if self._connections.pop(conn.name, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
        log.debug("connection %s closed", conn.name)
        self._send_all(self.ledger.disconnect(conn.name))

    # ----------------------------------------------------------------------- sending

    def _send_all(self, sends: list[Send]) -> None:
        for send in sends:
            conn = self._connections.get(send.client)
            if conn is not None:
                self._reply(conn, send.message)

    def _reply(self, conn: _Connection, msg: object) -> None:
        data = _frame_within_limit(msg)
        if len(conn.outbox) + len(data) > MAX_OUTBOX:
            log.warning("connection %s (pid %d) does not read its replies: dropping it", conn.name, conn.pid)
            self._drop(conn)
            return
        conn.outbox += data
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        if conn.name not in self._connections:
            return
        try:
            sent = conn.sock.send(conn.outbox) if conn.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del conn.outbox[:sent]
        if conn.closing and not conn.outbox:
            self._drop(conn)
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        self._selector.modify(conn.sock, wanted, conn)

    # ----------------------------------------------------------------------- time

    def _tick(self) -> None:
        self._apply_user_config()
        self._drop_stalled(time.monotonic())
        for item in self.ledger.overdue():
            self._send_all(self._enforce(item))
        self._send_all(self.ledger.tick())

    def _drop_stalled(self, now: float) -> None:
        """Slowloris: a frame begun and never finished holds a buffer; a hang-up never read, a socket."""
        for conn in list(self._connections.values()):
            if now - conn.last_data < self.frame_idle_s:
                continue
            if conn.closing:
                self._drop(conn)
            elif conn.frames.pending:
                log.warning("connection %s (pid %d) stopped mid-frame: dropping it", conn.name, conn.pid)
                self._hang_up(
                    conn,
                    f"an unfinished frame waited {self.frame_idle_s:g} s for the rest: closing the connection",
                )

    def _apply_user_config(self) -> None:
        """The person changed how much memory to keep free: the next tick acts on it."""
        config = self._user_config.changed() if self._user_config is not None else None
        if config is None:
            return
        headroom = config.headroom if config.headroom is not None else self._default_headroom
        if headroom != self.ledger.headroom:
            log.info("headroom set to %s (arbiter.json)", format_bytes(headroom))
            self.ledger.headroom = headroom

    def _enforce(self, item) -> list[Send]:
        if item.pid <= 1 or item.pid == os.getpid():
            # No process we may kill: hanging up is the strongest thing left.
            log.warning(
                "lease %s of %s missed its revoke deadline; closing its connection", item.lease_id, item.owner
            )
            conn = self._connections.get(item.client)
            if conn is not None:
                self._drop(conn)
            return self.ledger.disconnect(item.client)
        log.warning(
            "lease %s of %s (%s, pid %d) missed its revoke deadline: killing the process",
            item.lease_id,
            item.owner,
            item.job,
            item.pid,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(item.pid, signal.SIGKILL)
        return self.ledger.process_killed(item.pid)


def _frame_within_limit(msg: object) -> bytes:
    """``frame(msg)``, never ``FrameTooLarge``: a ``Status`` swollen past the frame limit (a flood
    of waiting requests, owners named with 250 KB) keeps halving its lists of leases and waiting
    requests until it fits, and anything else too large becomes a ``ProtocolError`` saying so."""
    while True:
        try:
            return frame(msg)
        except FrameTooLarge as exc:
            snapshot = msg.snapshot if isinstance(msg, Status) else None
            if snapshot is None or not (snapshot.leases or snapshot.waiting):
                log.warning("%s: sending an error instead", exc)
                return frame(ProtocolError(message=str(exc)))
            leases, waiting = snapshot.leases, snapshot.waiting
            half = dataclasses.replace(
                snapshot, leases=leases[: len(leases) // 2], waiting=waiting[: len(waiting) // 2]
            )
            msg = Status(snapshot=half)


# --------------------------------------------------------------------------- entry point


def _env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else default


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers.arbiter", description="Hearth's VRAM arbiter.")
    parser.add_argument(
        "--socket", type=Path, default=None, help="socket path (default: $HEARTH_ARBITER_SOCKET)"
    )
    parser.add_argument("--device", default=None, help="sim:8GiB[,lag=0.5], cuda, host or auto")
    parser.add_argument(
        "--headroom",
        default=os.environ.get("HEARTH_ARBITER_HEADROOM", str(DEFAULT_HEADROOM)),
        help="memory never leased, e.g. 512MiB",
    )
    parser.add_argument(
        "--revoke-deadline",
        type=float,
        default=_env_float("HEARTH_ARBITER_REVOKE_DEADLINE", DEFAULT_REVOKE_DEADLINE_S),
        help="seconds a holder has to shrink before it is killed",
    )
    parser.add_argument("--aging", type=float, default=_env_float("HEARTH_ARBITER_AGING", DEFAULT_AGING_S))
    parser.add_argument(
        "--grow-settle",
        type=float,
        default=_env_float("HEARTH_ARBITER_GROW_SETTLE", GROW_SETTLE_S),
        help="seconds after a shrink before a render is offered memory back",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=_env_float("HEARTH_ARBITER_IDLE_EXIT", None),
        help="exit after this many seconds without clients",
    )
    parser.add_argument("--log-level", default=os.environ.get("HEARTH_ARBITER_LOG", "INFO"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the arbiter; returns 0 also when another arbiter already serves this socket."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s arbiter[{os.getpid()}] %(levelname)s %(message)s",
    )
    path = args.socket.absolute() if args.socket else socket_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = acquire_instance_lock(path)
    if lock_fd is None:
        log.info("another arbiter already serves %s; exiting", path)
        return 0
    try:
        device = device_from_env(args.device)
        ledger = Ledger(
            device,
            headroom=parse_bytes(args.headroom),
            revoke_deadline_s=args.revoke_deadline,
            aging_s=args.aging,
            grow_settle_s=args.grow_settle,
        )
        server = ArbiterServer(ledger, path, idle_exit_s=args.idle_exit, user_config=ConfigWatcher())
        server.listen()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.stop())
        log.info("serving %s on %s (budget %s)", device.describe(), path, format_bytes(ledger.budget()))
        server.serve_forever()
        log.info("stopped")
        return 0
    finally:
        os.close(lock_fd)
