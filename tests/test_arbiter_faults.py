"""Arbiter faults: a worker dying with a lease, the arbiter killed mid-run, hostile clients on
the socket, floods of requests. After each, the ledger is consistent (leases within the budget,
nothing held by a dead process, no leftover clients or requests) and nothing leaked."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.arbiter_helpers import wait_for
from workers import codec
from workers.arbiter.address import arbiter_running, running_pid
from workers.arbiter.client import ArbiterClient
from workers.arbiter.device import SimulatedDevice
from workers.arbiter.framing import HEADER, FrameBuffer, frame
from workers.arbiter.ledger import Ledger
from workers.arbiter.messages import (
    CancelRequest,
    DeviceReading,
    Granted,
    GrowDone,
    HeldLease,
    ProtocolError,
    Register,
    Release,
    Request,
    RevokeDone,
    SetIdle,
    Status,
    StatusQuery,
    Tier,
)
from workers.arbiter.server import MAX_CONNECTIONS
from workers.arbiter.units import GiB, MiB
from workers.protocol import Priority

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 8 * GiB - 512 * MiB
pytestmark = pytest.mark.timeout(120)


def tiers(*sizes_gib: float) -> list[Tier]:
    return [Tier(name=f"t{i}", bytes=int(size * GiB)) for i, size in enumerate(sizes_gib)]


def assert_consistent(snapshot, live_pids: set[int]) -> None:
    assert sum(lease.bytes for lease in snapshot.leases) <= snapshot.budget
    assert {lease.pid for lease in snapshot.leases} <= live_pids, "a dead process still holds a lease"


def status_if(client: ArbiterClient, condition):
    snapshot = client.status()
    return snapshot if condition(snapshot) else None


def arbiter_process(sock: Path) -> psutil.Process:
    return psutil.Process(running_pid(sock))


def test_a_worker_dying_with_a_lease_gives_its_memory_back(clients, sock, tmp_path):
    marker = tmp_path / "granted"
    code = (
        "import os, pathlib\n"
        "from workers.arbiter.client import ArbiterClient\n"
        "from workers.arbiter.messages import Tier\n"
        "from workers.protocol import Priority\n"
        "client = ArbiterClient('video worker')\n"
        "client.acquire('video render', Priority.background, [Tier(name='full', bytes=6 * 2**30)])\n"
        f"pathlib.Path({str(marker)!r}).write_text('held')\n"
        "os.kill(os.getpid(), 9)  # dies holding the lease, no goodbye\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    assert worker.wait(timeout=30) == -signal.SIGKILL and marker.exists()
    chat = clients("chat worker")
    lease = chat.acquire("chat", Priority.interactive, tiers(7), timeout=10)
    snapshot = chat.status()
    assert [info.owner for info in snapshot.leases] == ["chat worker"]
    assert_consistent(snapshot, {os.getpid()})
    assert snapshot.clients == 1 and not snapshot.waiting
    lease.release()


def test_the_arbiter_killed_mid_run_comes_back_consistent(clients, sock):
    video, music, chat = clients("video worker"), clients("music worker"), clients("chat worker")
    # Equal classes: the waiting request queues, nobody is revoked (a revoke this test process
    # ignored would end with the arbiter killing it).
    held = video.acquire("video render", Priority.single_shot, tiers(4, 2))
    music.acquire("music", Priority.single_shot, tiers(3))
    waiting: dict = {}
    waiter = threading.Thread(
        target=lambda: waiting.update(lease=chat.acquire("chat", Priority.single_shot, tiers(3), timeout=30))
    )
    waiter.start()
    wait_for(lambda: chat.status().waiting, what="the chat request to queue")
    first = running_pid(sock)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: running_pid(sock) not in (None, first) and arbiter_running(sock), what="a new arbiter")
    snapshot = wait_for(
        lambda: status_if(video, lambda s: len(s.leases) == 2 and s.clients == 3),
        what="both leases to be re-registered",
    )
    assert_consistent(snapshot, {os.getpid()})
    assert {info.lease_id for info in snapshot.leases} >= {held.lease_id}
    held.release()  # the re-sent request is served from the memory this frees
    waiter.join(timeout=30)
    assert waiting["lease"].bytes == 3 * GiB
    assert_consistent(chat.status(), {os.getpid()})


def _connect(sock: Path) -> socket.socket:
    for _ in range(100):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(5)
        try:
            conn.connect(str(sock))
            return conn
        except BlockingIOError:  # the backlog is full for a moment: retry, as clients do
            conn.close()
            time.sleep(0.02)
    raise AssertionError("the arbiter stopped accepting connections")


def _status_over(conn: socket.socket) -> Status:
    conn.sendall(frame(StatusQuery()))
    frames = FrameBuffer()
    while True:
        data = conn.recv(65536)
        assert data, "the arbiter hung up"
        for payload in frames.feed(data):
            msg = codec.decode(payload)
            if isinstance(msg, Status):
                return msg


def _answer_or_refusal(conn: socket.socket) -> object:
    """A status round trip on a flood connection: ``Status`` if served, the refusal if turned away."""
    with contextlib.suppress(OSError):  # a refused one may already be closed at our end's peer
        conn.sendall(frame(StatusQuery()))
    frames = FrameBuffer()
    while data := conn.recv(65536):
        if payloads := frames.feed(data):
            return codec.decode(payloads[0])
    raise AssertionError("the arbiter hung up without a word")


def _settled(client: ArbiterClient) -> None:
    """Once this returns, the arbiter has handled everything that was ready before it was called:
    one select() reports every ready socket, so the second query waits behind all of them."""
    client.status()
    client.status()


def test_hostile_clients_cannot_stall_or_bloat_the_arbiter(clients, sock):
    honest = clients("chat worker")
    _settled(honest)  # the arbiter has accepted the honest connection: count file descriptors from here
    process = arbiter_process(sock)
    fds_before = process.num_fds()
    # Slowloris: a header promising 1000 bytes, then ten of them, then silence.
    slow = _connect(sock)
    slow.sendall(HEADER.pack(1000) + b"{" * 10)
    # Garbage, and a huge length prefix (answered, then hung up on).
    garbage = _connect(sock)
    garbage.sendall(HEADER.pack(12) + os.urandom(12))
    huge = _connect(sock)
    huge.sendall(b"\xff\xff\xff\xff")
    assert "exceeds" in codec.decode(_read_one(huge)).message
    # A flood of connections left open, beyond the cap: the extra ones are told so and closed.
    flood = [_connect(sock) for _ in range(100)]
    for conn in flood[::2]:
        with contextlib.suppress(OSError):
            conn.sendall(frame(Register(owner="flood", pid=1)))
    lease = honest.acquire("chat", Priority.interactive, tiers(2), timeout=5)  # served meanwhile
    assert lease.bytes == 2 * GiB
    assert isinstance(codec.decode(_read_one(garbage)), ProtocolError)
    _settled(honest)  # every flood connection is accepted or refused by now
    answers = [_answer_or_refusal(conn) for conn in flood[1::2]]
    refusals = [a for a in answers if isinstance(a, ProtocolError)]
    assert all(isinstance(a, (Status, ProtocolError)) for a in answers)
    assert all("too many connections" in a.message for a in refusals)
    assert len(refusals) >= (100 + 3 - MAX_CONNECTIONS) // 2 - 1, "about half the refused ones are asked"
    assert max(a.snapshot.clients for a in answers if isinstance(a, Status)) <= MAX_CONNECTIONS
    for conn in [slow, garbage, huge, *flood]:
        conn.close()
    snapshot = wait_for(lambda: status_if(honest, lambda s: s.clients == 1), what="closed clients gone")
    assert_consistent(snapshot, {os.getpid()})
    _settled(honest)  # every close is handled: the arbiter holds exactly the sockets it held before
    assert process.num_fds() == fds_before, "file descriptors leaked"
    lease.release()


def _read_one(conn: socket.socket) -> bytes:
    frames = FrameBuffer()
    while True:
        data = conn.recv(65536)
        assert data, "the arbiter hung up without an answer"
        if got := frames.feed(data):
            return got[0]


def test_a_request_flood_leaves_no_waiters_and_no_leases_behind(clients, sock):
    honest = clients("image worker")
    rss_before = arbiter_process(sock).memory_info().rss
    for _ in range(3):
        conn = _connect(sock)
        batch = b"".join(
            frame(
                Request(request_id=f"f{i}", job="flood", priority=Priority.interactive, tiers=tuple(tiers(1)))
            )
            for i in range(1500)
        )
        conn.sendall(batch)
        assert _status_over(conn).snapshot.budget == BUDGET
        conn.close()
    snapshot = wait_for(
        lambda: status_if(honest, lambda s: s.clients == 1 and not s.leases and not s.waiting),
        what="the flood's leases and requests to end",
    )
    assert_consistent(snapshot, {os.getpid()})
    lease = honest.acquire("image", Priority.single_shot, tiers(7), timeout=10)
    assert lease.bytes == 7 * GiB, "every flooded byte came back"
    assert arbiter_process(sock).memory_info().rss - rss_before < 64 * MiB
    lease.release()


# --------------------------------------------------------------------------- the ledger alone


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _random_message(rng: random.Random, leases: list[str], requests: list[str]):
    kind = rng.randrange(8)
    sizes = [rng.choice([-1, 0, 1, 2**62, rng.randint(1, 9 * GiB)]) for _ in range(rng.randint(0, 3))]
    if kind <= 2:
        request_id = rng.choice(requests) if requests and rng.random() < 0.2 else f"q{rng.random()}"
        requests.append(request_id)
        tiers_ = tuple(Tier(name=f"t{i}", bytes=b, est_step_s=rng.random()) for i, b in enumerate(sizes))
        return Request(
            request_id=request_id,
            job="j",
            priority=rng.choice(list(Priority)),
            tiers=tiers_,
            can_grow=rng.random() < 0.5,
        )
    lease_id = rng.choice(leases) if leases and rng.random() < 0.8 else "bogus"
    return rng.choice(
        [
            Release(lease_id=lease_id),
            SetIdle(lease_id=lease_id, idle=rng.random() < 0.5),
            RevokeDone(lease_id=lease_id, new_bytes=rng.choice([0, -5, 2**40, rng.randint(0, 4 * GiB)])),
            GrowDone(lease_id=lease_id, new_bytes=rng.choice([0, -5, 2**40, rng.randint(0, 9 * GiB)])),
            CancelRequest(request_id=rng.choice(requests) if requests else "none"),
            DeviceReading(total=rng.randint(0, 2**40), free=rng.randint(0, 2**40), used_by_hearth=-1),
        ]
    )


def test_a_random_storm_of_messages_keeps_the_ledger_consistent():
    rng = random.Random(7)
    clock = Clock()
    sim = SimulatedDevice(8 * GiB, clock=clock, reading_lag_s=0.3, context_bytes_per_process=100 * MiB)
    ledger = Ledger(sim, headroom=512 * MiB, lag_window_s=0.5, clock=clock, lease_prefix="L")
    alive: dict[str, int] = {}
    granted: list[str] = []
    requests: list[str] = []
    for step in range(4000):
        clock.now += rng.random() * 0.2
        client = f"c{rng.randrange(6)}"
        if client not in alive:
            alive[client] = 100 + step
            held = (
                ()
                if rng.random() < 0.8
                else (
                    HeldLease(
                        lease_id=f"old{step}", job="old", priority=Priority.background, bytes=GiB, tier="t"
                    ),
                )
            )
            ledger.handle(client, Register(owner=client, pid=alive[client], held=held))
        action = rng.random()
        if action < 0.03:
            ledger.process_killed(alive.pop(client))
            continue
        if action < 0.06:
            ledger.disconnect(client)
            alive.pop(client)
            continue
        if action < 0.08:
            sim.grow_foreign(rng.choice([-1, 1]) * rng.randint(0, 2 * GiB))
        sends = ledger.handle(client, _random_message(rng, granted, requests)) + ledger.tick()
        granted += [s.message.lease_id for s in sends if isinstance(s.message, Granted)]
        for overdue in ledger.overdue():
            ledger.process_killed(overdue.pid)
            alive = {name: pid for name, pid in alive.items() if pid != overdue.pid}
        snapshot = ledger.snapshot()
        assert {lease.pid for lease in snapshot.leases} <= set(alive.values())
        assert {w.owner for w in snapshot.waiting} <= set(alive)
        assert all(lease.bytes >= 0 for lease in snapshot.leases)
    for client in list(alive):
        ledger.disconnect(client)
    clock.now += 5
    ledger.tick()
    snapshot = ledger.snapshot()
    assert not snapshot.leases and not snapshot.waiting and snapshot.clients == 0 and snapshot.returning == 0
