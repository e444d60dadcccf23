"""The arbiter as a real process on a real Unix socket, with real client processes.

Every test runs its own arbiter on the simulated device, with the socket and runtime dir under
``tmp_path``; the fixture kills whatever arbiter and helper processes a test leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.arbiter_helpers import KILL_DEADLINE_S, wait_for
from workers import codec
from workers.arbiter.address import arbiter_running, log_path, running_pid
from workers.arbiter.client import ArbiterClient, ArbiterUnavailable
from workers.arbiter.device import SimulatedDevice
from workers.arbiter.framing import HEADER, MAX_CLIENT_FRAME, FrameBuffer, FrameTooLarge, frame
from workers.arbiter.ledger import Ledger
from workers.arbiter.messages import (
    Granted,
    HeldLease,
    ProtocolError,
    Register,
    Status,
    StatusQuery,
    Tier,
)
from workers.arbiter.server import MAX_CONNECTIONS, ArbiterServer
from workers.arbiter.status import print_status
from workers.arbiter.units import GiB, MiB
from workers.codec import PROTOCOL_VERSION
from workers.errors import JobCancelled, OutOfMemory
from workers.protocol import Priority

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spawn(sock):
    processes: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        processes.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def tiers(*sizes_gib: float) -> list[Tier]:
    return [Tier(name=f"t{i}", bytes=int(size * GiB)) for i, size in enumerate(sizes_gib)]


def test_grant_and_revoke_reach_the_holder(clients, sock):
    video = clients("video worker")
    chat = clients("chat worker")
    lease = video.acquire("video render", Priority.background, tiers(6, 2))
    assert (lease.bytes, lease.tier) == (6 * GiB, "t0")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

    reasons: list[str] = []
    result: dict = {}
    waiter = threading.Thread(
        target=lambda: result.update(
            lease=chat.acquire("chat", Priority.interactive, tiers(4), on_wait=reasons.append)
        )
    )
    waiter.start()
    revoke = wait_for(lease.revoke_requested, what="the revoke")
    assert (revoke.target_bytes, revoke.tier) == (2 * GiB, "t1")
    assert "chat" in revoke.reason
    lease.done_revoke(2 * GiB, revoke.tier)
    waiter.join(timeout=10)
    assert result["lease"].bytes == 4 * GiB
    assert any("video render" in reason and "next step" in reason for reason in reasons)
    snapshot = chat.status()
    assert {(info.owner, info.bytes) for info in snapshot.leases} == {
        ("video worker", 2 * GiB),
        ("chat worker", 4 * GiB),
    }


def test_impossible_request_is_refused_and_cancel_is_prompt(clients):
    client = clients("image worker")
    with pytest.raises(OutOfMemory, match="needs at least 9.0 GiB"):
        client.acquire("huge image", Priority.single_shot, tiers(12, 9))
    held = client.acquire("image", Priority.single_shot, tiers(7))
    start = time.monotonic()
    with pytest.raises(JobCancelled):
        client.acquire(
            "second", Priority.single_shot, tiers(7), cancelled=lambda: time.monotonic() - start > 0.3
        )
    with pytest.raises(OutOfMemory, match="within 0.3 s"):
        client.acquire("third", Priority.single_shot, tiers(7), timeout=0.3)
    assert not client.status().waiting, "cancelled and timed-out requests stop waiting"
    held.release()


def test_holder_ignoring_revoke_is_killed_and_its_memory_returns(clients, spawn, tmp_path, monkeypatch):
    # The short deadline reaches only the arbiter the child starts; pytest holds nothing revocable.
    monkeypatch.setenv("HEARTH_ARBITER_REVOKE_DEADLINE", str(KILL_DEADLINE_S))
    marker = tmp_path / "granted"
    stubborn = spawn(
        "import time, pathlib\n"
        "from workers.arbiter.client import ArbiterClient\n"
        "from workers.arbiter.messages import Tier\n"
        "from workers.protocol import Priority\n"
        "client = ArbiterClient('stubborn worker')\n"
        "lease = client.acquire('video render', Priority.background, [Tier(name='full', bytes=6 * 2**30)])\n"
        f"pathlib.Path({str(marker)!r}).write_text(lease.lease_id)\n"
        "time.sleep(60)  # never looks at revoke_requested()\n"
    )
    wait_for(marker.exists, timeout=20, what="the helper's grant")
    chat = clients("chat worker")
    start = time.monotonic()
    lease = chat.acquire("chat", Priority.interactive, tiers(4), timeout=10)
    waited = time.monotonic() - start
    assert lease.bytes == 4 * GiB
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert 0.9 <= waited < 5, "killed at the 1 s deadline, not before and not much later"
    assert [info.owner for info in chat.status().leases] == ["chat worker"]


def test_killed_arbiter_comes_back_with_the_leases(clients, sock):
    client = clients("music worker")
    lease = client.acquire("music", Priority.single_shot, tiers(3))
    first = running_pid(sock)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: running_pid(sock) not in (None, first) and arbiter_running(sock), what="a new arbiter")

    def reregistered():
        snapshot = client.status()
        return snapshot if any(info.lease_id == lease.lease_id for info in snapshot.leases) else None

    snapshot = wait_for(reregistered, what="the lease to be re-registered")
    [info] = snapshot.leases
    assert (info.owner, info.bytes, info.tier) == ("music worker", 3 * GiB, "t0")
    # The new arbiter counts it: only what is left can be granted.
    other = clients("image worker")
    with pytest.raises(OutOfMemory):
        other.acquire("image", Priority.single_shot, tiers(5), timeout=0.5)
    lease.release()


def _raw_exchange(conn: socket.socket, payload: bytes) -> object:
    conn.sendall(HEADER.pack(len(payload)) + payload)
    frames = FrameBuffer()
    while True:
        data = conn.recv(65536)
        assert data, "the arbiter hung up"
        if got := frames.feed(data):
            return codec.decode(got[0])


def test_malformed_frames_get_protocol_errors_and_serving_goes_on(clients, sock):
    clients("starter")  # starts the arbiter
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(sock))
        reply = _raw_exchange(conn, b"\x00\xffnot json")
        assert isinstance(reply, ProtocolError) and "not JSON" in reply.message
        reply = _raw_exchange(conn, b'{"type": "Bogus", "v": 1}')
        assert isinstance(reply, ProtocolError) and "Bogus" in reply.message
        reply = _raw_exchange(conn, codec.encode(Granted(request_id="r", lease_id="l", bytes=1, tier="t")))
        assert isinstance(reply, ProtocolError) and "expected Register | Request" in reply.message
        assert "got Granted" in reply.message
        reply = _raw_exchange(conn, b'{"type": "Release", "v": 1, "lease_id": "x", "force": true}')
        assert isinstance(reply, ProtocolError) and "no field 'force'" in reply.message
        reply = _raw_exchange(conn, b'{"type": "Release", "v": 1, "lease_id": 5}')
        assert isinstance(reply, ProtocolError) and "lease_id" in reply.message
        # Still the same connection, still served:
        conn.sendall(frame(StatusQuery()))
        assert conn.recv(4)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(sock))
        conn.sendall(b"GET / HTTP/1.1\r\n\r\n")  # a length prefix of 1.2 GB: cannot resync
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        [payload] = FrameBuffer().feed(data)
        assert "exceeds" in codec.decode(payload).message
    assert clients("next").status().budget == 8 * GiB - 512 * 1024**2


def test_disconnect_frees_the_clients_leases(clients):
    first = clients("image worker")
    first.acquire("image", Priority.single_shot, tiers(7))
    first.close()
    second = clients("video worker")
    lease = second.acquire("video", Priority.background, tiers(7), timeout=5)
    assert lease.bytes == 7 * GiB


def test_two_clients_at_once_start_exactly_one_arbiter(spawn, sock, tmp_path):
    code = (
        "from workers.arbiter.client import ArbiterClient\n"
        "with ArbiterClient('client') as client:\n"
        "    assert client.status().budget > 0\n"
    )
    first, second = spawn(code), spawn(code)
    assert first.wait(timeout=30) == 0 and second.wait(timeout=30) == 0
    assert arbiter_running(sock)
    log = log_path(sock).read_text()
    assert log.count("serving") == 1, log
    assert "another arbiter" not in log, "a second arbiter was started"
    # The fixture cannot reap an arbiter started by another process; stop it here.
    os.kill(running_pid(sock), signal.SIGTERM)
    wait_for(lambda: not arbiter_running(sock), what="the arbiter to stop")


def test_status_command(clients, sock, capsys):
    assert print_status(sock) == 1, "no arbiter yet, and status must not start one"
    assert not arbiter_running(sock)
    client = clients("chat worker")
    client.acquire("chat", Priority.interactive, tiers(2))
    assert print_status(sock) == 0
    out = capsys.readouterr().out
    assert "chat worker" in out and "2.0 GiB" in out and "512 MiB" in out


def test_no_autostart_fails_fast(sock):
    start = time.monotonic()
    with pytest.raises(ArbiterUnavailable):
        ArbiterClient("x", autostart=False)
    assert time.monotonic() - start < 2


def test_a_shrunk_render_is_given_its_memory_back_over_the_socket(clients, sock, monkeypatch):
    monkeypatch.setenv("HEARTH_ARBITER_GROW_SETTLE", "0")
    video, music = clients("video worker"), clients("music worker")
    fast_slow = [
        Tier(name="resident", bytes=6 * GiB, est_step_s=0.6),
        Tier(name="sliced", bytes=2 * GiB, est_step_s=0.63),
    ]
    lease = video.acquire("video render", Priority.background, fast_slow, can_grow=True)
    result: dict = {}
    waiter = threading.Thread(
        target=lambda: result.update(lease=music.acquire("music", Priority.single_shot, tiers(4)))
    )
    waiter.start()
    revoke = wait_for(lease.revoke_requested, what="the revoke")
    lease.done_revoke(2 * GiB, revoke.tier)
    waiter.join(timeout=10)
    result["lease"].release()
    grow = wait_for(lease.grow_offered, what="the memory offered back")
    assert (grow.tier, grow.target_bytes) == ("resident", 6 * GiB)
    lease.done_grow(grow.target_bytes, grow.tier)
    assert lease.grow_offered() is None and (lease.bytes, lease.tier) == (6 * GiB, "resident")
    snapshot = video.status()
    assert [(i.owner, i.bytes, i.tier) for i in snapshot.leases] == [("video worker", 6 * GiB, "resident")]


def test_keeping_more_memory_free_takes_it_back_from_a_running_render(clients, sock):
    """The person raises "keep free for other programs" before starting a game: the running
    arbiter reads arbiter.json and shrinks the background render to make room."""
    from workers.arbiter.user_config import ArbiterUserConfig, save

    video = clients("video worker")
    lease = video.acquire("video render", Priority.background, tiers(6, 2))
    assert lease.bytes == 6 * GiB
    save(ArbiterUserConfig(headroom=5 * GiB))  # 8 GiB device: 3 GiB left for Hearth
    revoke = wait_for(lease.revoke_requested, what="the render to be asked to shrink")
    assert (revoke.target_bytes, revoke.tier) == (2 * GiB, "t1")
    assert "budget shrank" in revoke.reason
    lease.done_revoke(2 * GiB, revoke.tier)
    snapshot = video.status()
    assert snapshot.headroom == 5 * GiB and snapshot.budget == 3 * GiB


# --------------------------------------------------------------------------- limits and versions, in process
# An ArbiterServer on a thread of this process: it never kills its own pid (it hangs up instead),
# and its limits can be made small enough to reach in a test.


@pytest.fixture
def serve(tmp_path):
    running: list[tuple[ArbiterServer, threading.Thread]] = []

    def start(**options) -> Path:
        path = tmp_path / f"s{len(running)}.sock"
        server = ArbiterServer(Ledger(SimulatedDevice(8 * GiB), headroom=512 * MiB), path, **options)
        server.listen()
        thread = threading.Thread(target=server.serve_forever, name="arbiter-in-test")
        thread.start()
        running.append((server, thread))
        return path

    yield start
    for server, thread in running:
        server.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


def _raw(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(path))
    return conn


def _until_eof(conn: socket.socket) -> list[object]:
    """Every message the arbiter sends before it hangs up (blocks until it does)."""
    frames, messages = FrameBuffer(), []
    while data := conn.recv(65536):
        messages += [codec.decode(payload) for payload in frames.feed(data)]
    conn.close()
    return messages


def _ask_status(conn: socket.socket) -> Status:
    """A round trip: once it returns, the arbiter has accepted this connection."""
    reply = _raw_exchange(conn, codec.encode(StatusQuery()))
    assert isinstance(reply, Status), reply
    return reply


def test_connections_beyond_the_cap_are_told_so_and_closed(serve):
    assert MAX_CONNECTIONS == 64
    path = serve(max_connections=3)
    served = [_raw(path) for _ in range(3)]
    for conn in served:
        _ask_status(conn)
    [refusal] = _until_eof(_raw(path))
    assert isinstance(refusal, ProtocolError)
    assert "too many connections" in refusal.message and "at most 3" in refusal.message
    served[0].close()
    _ask_status(served[1])  # its EOF was pending before this query: handled by the time it is answered
    again = _raw(path)
    assert _ask_status(again).snapshot.budget == 8 * GiB - 512 * MiB, "a freed place is served again"
    for conn in [*served[1:], again]:
        conn.close()


def test_a_client_stopping_mid_frame_is_dropped_but_one_idle_between_frames_is_not(serve):
    path = serve(frame_idle_s=0.3)
    idle = _raw(path)
    _ask_status(idle)
    slow = _raw(path)
    slow.sendall(HEADER.pack(100) + b'{"type": "Sta')  # and never the rest
    [reply] = _until_eof(slow)
    assert isinstance(reply, ProtocolError) and "unfinished frame waited 0.3 s" in reply.message
    _ask_status(idle)  # silent for longer than the slow one, but between frames: still served
    idle.close()


def test_client_frames_are_capped_at_what_the_largest_real_message_needs(serve):
    tiers_ = tuple(
        Tier(name=f"sliced:{2**i}", bytes=(8 - i) * GiB, est_step_s=0.63, reload_s=4.2, pause_every_s=0.05)
        for i in range(8)
    )
    held = tuple(
        HeldLease(
            lease_id=f"{i:032x}",
            job="video render of a long prompt",
            priority=Priority.background,
            bytes=64 * MiB,
            tier="sliced:64",
            tiers=tiers_,
            idle=True,
            can_grow=True,
        )
        for i in range(64)
    )
    register = Register(owner="video worker", pid=os.getpid(), held=held)
    assert len(frame(register, MAX_CLIENT_FRAME)) < MAX_CLIENT_FRAME / 2, "64 held leases fit with room"
    path = serve()
    conn = _raw(path)
    conn.sendall(frame(register, MAX_CLIENT_FRAME))
    assert len(_ask_status(conn).snapshot.leases) == 64
    conn.close()
    huge = _raw(path)
    huge.sendall(HEADER.pack(MAX_CLIENT_FRAME + 1) + b"{")
    [reply] = _until_eof(huge)
    assert isinstance(reply, ProtocolError) and f"exceeds the {MAX_CLIENT_FRAME}-byte limit" in reply.message
    with pytest.raises(FrameTooLarge, match="over the"):
        frame(Register(owner="x" * MAX_CLIENT_FRAME, pid=1), MAX_CLIENT_FRAME)


def test_a_register_from_another_protocol_version_is_refused_naming_both(serve):
    path = serve()
    conn = _raw(path)
    register = json.loads(codec.encode(Register(owner="bundle", pid=os.getpid())))
    register["v"] = PROTOCOL_VERSION + 1
    reply = _raw_exchange(conn, json.dumps(register).encode())
    assert isinstance(reply, ProtocolError)
    assert f"speaks Hearth protocol version {PROTOCOL_VERSION}," in reply.message
    assert f"the Register from pid {os.getpid()} is version {PROTOCOL_VERSION + 1}" in reply.message
    assert _ask_status(conn).snapshot.leases == (), "refused, not misread; the connection stays usable"
    conn.close()


def _other_build_arbiter(listener: socket.socket) -> None:
    """Answers every frame as an arbiter speaking the next protocol version would."""
    conn, _ = listener.accept()
    with conn:
        frames = FrameBuffer()
        while data := conn.recv(65536):
            for _ in frames.feed(data):
                body = json.dumps(
                    {
                        "type": "ProtocolError",
                        "v": PROTOCOL_VERSION + 1,
                        "message": f"this arbiter speaks Hearth protocol version {PROTOCOL_VERSION + 1}",
                    }
                ).encode()
                conn.sendall(HEADER.pack(len(body)) + body)


def test_an_arbiter_of_another_version_is_a_clear_error_in_the_client(tmp_path):
    path = tmp_path / "other.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    other = threading.Thread(target=_other_build_arbiter, args=(listener,), name="other-build-arbiter")
    other.start()
    client = ArbiterClient("image worker", address=path, autostart=False)
    try:
        both = rf"protocol version {PROTOCOL_VERSION + 1} and this Hearth speaks version {PROTOCOL_VERSION}"
        with pytest.raises(ArbiterUnavailable, match=both):
            client.acquire("image", Priority.single_shot, tiers(1), timeout=20)
        assert "the arbiter says: this arbiter speaks" in client.last_error
        with pytest.raises(ArbiterUnavailable, match=both):
            client.status(timeout=20)
    finally:
        client.close()
        other.join(timeout=10)
        listener.close()
