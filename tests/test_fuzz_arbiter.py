"""Fuzzing the arbiter's socket: a real arbiter on a private socket (a simulated 8 GiB device) is
sent generated frames and garbage from raw connections, and after each input it is the same
process, still alive, and still answers an honest ``ArbiterClient``'s status request with a
consistent ledger. Examples are few (each costs socket round trips); settings and strategies:
``tests/test_fuzz.py``, regression inputs: ``tests/fuzz_corpus/arbiter/`` (each file is the bytes
one connection sends).
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz import (
    corpus_bytes,
    corpus_params,
    edited_fields,
    fuzz_settings,
    long_run_timeout,
    mutated,
)
from workers import codec
from workers.arbiter.address import running_pid
from workers.arbiter.framing import HEADER, MAX_CLIENT_FRAME
from workers.arbiter.messages import (
    CancelRequest,
    DeviceReading,
    GrowDone,
    HeldLease,
    Register,
    Release,
    Request,
    RevokeDone,
    SetIdle,
    StatusQuery,
    Tier,
)
from workers.arbiter.units import GiB
from workers.protocol import Priority

pytestmark = long_run_timeout(240)

TIERS = (Tier(name="full", bytes=3 * GiB, est_step_s=0.1), Tier(name="lean", bytes=GiB, pause_every_s=0.01))
CLIENT_MESSAGES = (
    Register(owner="fuzz", pid=1),
    Register(
        owner="restarted",
        pid=2,
        held=(
            HeldLease(
                lease_id="l1", job="j", priority=Priority.background, bytes=GiB, tier="lean", tiers=TIERS
            ),
        ),
    ),
    Request(request_id="r1", job="render", priority=Priority.background, tiers=TIERS, can_grow=True),
    Request(request_id="r2", job="chat", priority=Priority.interactive, tiers=TIERS[1:], keep_resident=True),
    Release(lease_id="l1"),
    SetIdle(lease_id="l1", idle=True),
    RevokeDone(lease_id="l1", new_bytes=0),
    GrowDone(lease_id="l1", new_bytes=3 * GiB, tier="full"),
    DeviceReading(total=8 * GiB, free=4 * GiB, used_by_hearth=GiB),
    StatusQuery(),
    CancelRequest(request_id="r1"),
)


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


@st.composite
def client_bytes(draw) -> bytes:
    """One piece of what a connection sends: a real message with wild fields, a mutated one, a
    long one, a frame whose length lies, or garbage."""
    real = draw(st.sampled_from(CLIENT_MESSAGES))
    match draw(st.integers(0, 5)):
        case 0 | 1:
            return _frame(codec.encode(draw(edited_fields(real))))
        case 2:
            return _frame(draw(mutated(codec.encode(real))))
        case 3:
            size = draw(st.sampled_from((1000, 100_000, MAX_CLIENT_FRAME - 200, MAX_CLIENT_FRAME + 1)))
            return _frame(codec.encode(Register(owner="x" * size, pid=1)))
        case 4:
            payload = draw(st.binary(max_size=32))
            claimed = draw(st.sampled_from((0, len(payload) + 1, MAX_CLIENT_FRAME, 2**32 - 1)))
            return HEADER.pack(claimed) + payload
        case _:
            return draw(st.binary(min_size=1, max_size=64))


@st.composite
def connections(draw) -> bytes:
    """What one connection sends: a few pieces, some repeated (a flood of the same request)."""
    pieces = draw(st.lists(st.tuples(client_bytes(), st.sampled_from((1, 1, 1, 20))), min_size=1, max_size=6))
    return b"".join(piece * times for piece, times in pieces)


@pytest.fixture
def arbiter(clients, sock):
    """The honest client (it starts the arbiter) and the arbiter's process."""
    honest = clients("honest")
    honest.status()
    return honest, psutil.Process(running_pid(sock))


def _send_and_listen(sock_path: Path, data: bytes) -> socket.socket:
    """Send ``data`` on a fresh connection and read what comes back for a moment; the connection
    stays open (what it asked for is still in the ledger) until the caller closes it."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect(str(sock_path))
    with contextlib.suppress(OSError):  # the arbiter may hang up mid-send: that is allowed
        conn.sendall(data)
    conn.setblocking(False)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        try:
            if not conn.recv(1 << 20):
                break  # hung up
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    return conn


def check_arbiter(arbiter, sock_path: Path, data: bytes) -> None:
    honest, process = arbiter
    conn = _send_and_listen(sock_path, data)
    try:
        snapshot = honest.status(timeout=10)  # while the connection's requests are still queued
    finally:
        conn.close()
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE, "the arbiter died"
    assert running_pid(sock_path) == process.pid, "the arbiter was restarted"
    assert sum(lease.bytes for lease in snapshot.leases) <= snapshot.budget
    assert not honest.last_error, honest.last_error


@fuzz_settings(30, share=0.1, deadline=None)
@given(data=connections())
def test_fuzz_the_arbiter_socket(arbiter, sock, data):
    check_arbiter(arbiter, sock, data)


@corpus_params("arbiter")
def test_fuzz_corpus_arbiter(arbiter, sock, case):
    check_arbiter(arbiter, sock, corpus_bytes(case))
