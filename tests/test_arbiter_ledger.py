"""The arbiter's ledger on the simulated device, with a fake clock: fast and deterministic."""

from __future__ import annotations

import random
import sys

import pytest

from workers.arbiter.device import SimulatedDevice, parse_simulated
from workers.arbiter.ledger import Ledger
from workers.arbiter.messages import (
    CancelRequest,
    Granted,
    HeldLease,
    ProtocolError,
    Refused,
    Register,
    Release,
    Request,
    Revoke,
    RevokeDone,
    SetIdle,
    Tier,
    Waiting,
)
from workers.arbiter.status import format_snapshot
from workers.arbiter.units import GiB, MiB, format_bytes, parse_bytes
from workers.protocol import Priority


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    clock: Clock, total=8 * GiB, lag_window_s=0.0, aging_s=30.0, **device
) -> tuple[Ledger, SimulatedDevice]:
    sim = SimulatedDevice(total, clock=clock, **device)
    ledger = Ledger(
        sim, headroom=512 * MiB, lag_window_s=lag_window_s, aging_s=aging_s, clock=clock, lease_prefix="L"
    )
    return ledger, sim


def join(ledger: Ledger, client: str, pid: int) -> None:
    ledger.handle(client, Register(owner=client, pid=pid))


_ids = iter(range(10**9))


def ask(ledger, client, job, priority, *sizes_gib, name=None):
    tiers = tuple(Tier(name=f"t{i}", bytes=int(size * GiB)) for i, size in enumerate(sizes_gib))
    request = Request(request_id=f"r{next(_ids)}", job=job, priority=priority, tiers=tiers)
    return request.request_id, ledger.handle(client, request)


def messages(sends, kind=None, client=None):
    return [
        s.message
        for s in sends
        if (kind is None or isinstance(s.message, kind)) and (client in (None, s.client))
    ]


def test_budget_is_total_minus_headroom_minus_outside(clock):
    ledger, sim = make(clock, foreign_bytes=1 * GiB)
    assert ledger.budget() == 8 * GiB - 512 * MiB - 1 * GiB
    sim.grow_foreign(1 * GiB)
    assert ledger.budget() == 8 * GiB - 512 * MiB - 2 * GiB


def test_randomised_requests_never_exceed_the_budget(clock):
    rng = random.Random(1234)
    ledger, sim = make(clock, lag_window_s=1.5, reading_lag_s=0.3)
    clients = [f"w{i}" for i in range(5)]
    for pid, client in enumerate(clients, start=100):
        join(ledger, client, pid)
    held: dict[str, str] = {}  # lease_id -> client
    grants = 0
    for step in range(600):
        client = rng.choice(clients)
        action = rng.random()
        if action < 0.35:
            sizes = sorted((rng.uniform(0.2, 5.0) for _ in range(rng.randint(1, 3))), reverse=True)
            _, sends = ask(ledger, client, f"job{step}", rng.choice(list(Priority)), *sizes)
        elif action < 0.7 and held:
            lease_id = rng.choice(sorted(held))
            sends = ledger.handle(held.pop(lease_id), Release(lease_id=lease_id))
        elif action < 0.75 and ledger.snapshot().waiting:
            waiting = rng.choice(ledger.snapshot().waiting)
            sends = ledger.handle(waiting.owner, CancelRequest(request_id=waiting.request_id))
        elif action < 0.8:
            # Another program's usage wanders between 0 and 3 GiB.
            sim.grow_foreign(
                max(-sim.used_outside(), min(3 * GiB - sim.used_outside(), rng.randint(-512, 512) * MiB))
            )
            sends = ledger.tick()
        else:
            clock.advance(rng.uniform(0.0, 2.0))
            sends = ledger.tick()
        granted_now = False
        while sends:
            send = sends.pop(0)
            if isinstance(send.message, Granted):
                held[send.message.lease_id] = send.client
                grants += 1
                granted_now = True
            elif isinstance(send.message, Revoke):
                # Holders comply at once; what that frees may be granted in the same step.
                revoke = send.message
                if revoke.target_bytes == 0:
                    held.pop(revoke.lease_id)
                sends += ledger.handle(
                    send.client, RevokeDone(lease_id=revoke.lease_id, new_bytes=revoke.target_bytes)
                )
        if granted_now:
            # The budget may shrink after a grant (a foreign process grew; the ledger then
            # revokes), but at the moment of a grant everything leased or returning fits in it.
            snapshot = ledger.snapshot()
            leased = sum(lease.bytes for lease in snapshot.leases) + snapshot.returning
            assert leased <= snapshot.budget, f"step {step}: {format_snapshot(snapshot)}"
    assert grants > 100, (
        f"the random trace should grant often: {grants}\n{format_snapshot(ledger.snapshot())}"
    )


def test_grants_never_exceed_budget_on_a_fixed_device(clock):
    rng = random.Random(7)
    ledger, _ = make(clock, lag_window_s=0.5)
    join(ledger, "a", 1)
    leases = []
    for step in range(400):
        if rng.random() < 0.6:
            _, sends = ask(
                ledger, "a", f"j{step}", Priority.single_shot, rng.uniform(0.1, 4), rng.uniform(0.05, 0.1)
            )
        elif leases:
            sends = ledger.handle("a", Release(lease_id=leases.pop(rng.randrange(len(leases)))))
        else:
            sends = []
        clock.advance(rng.uniform(0, 0.3))
        sends += ledger.tick()
        leases += [m.lease_id for m in messages(sends, Granted)]
        snap = ledger.snapshot()
        assert sum(lease.bytes for lease in snap.leases) + snap.returning <= snap.budget, f"step {step}"


def test_impossible_request_is_refused_at_once_naming_the_sizes(clock):
    ledger, _ = make(clock, foreign_bytes=2 * GiB)
    join(ledger, "video", 1)
    _, sends = ask(ledger, "video", "video render", Priority.background, 12, 6)
    [refusal] = messages(sends, Refused)
    assert "6.0 GiB" in refusal.reason  # the leanest tier it needs
    assert "5.5 GiB" in refusal.reason  # what Hearth can ever use
    assert "8.0 GiB total" in refusal.reason and "512 MiB headroom" in refusal.reason
    assert not ledger.snapshot().waiting


def test_largest_fitting_tier_is_granted(clock):
    ledger, _ = make(clock)
    join(ledger, "a", 1)
    ask(ledger, "a", "first", Priority.single_shot, 4)
    _, sends = ask(ledger, "a", "image", Priority.single_shot, 6, 3, 1)
    [grant] = messages(sends, Granted)
    assert grant.tier == "t1" and grant.bytes == 3 * GiB


def test_interactive_request_revokes_background_to_a_leaner_tier(clock):
    ledger, _ = make(clock)
    join(ledger, "video", 10)
    join(ledger, "chat", 20)
    _, sends = ask(ledger, "video", "video render", Priority.background, 6, 2)
    [video] = messages(sends, Granted)
    assert video.bytes == 6 * GiB

    _, sends = ask(ledger, "chat", "chat", Priority.interactive, 4, 3)
    [revoke] = messages(sends, Revoke, client="video")
    assert revoke.lease_id == video.lease_id
    assert revoke.target_bytes == 2 * GiB and revoke.tier == "t1"
    [waiting] = messages(sends, Waiting, client="chat")
    assert "video render" in waiting.reason and "6.0 GiB" in waiting.reason and "next step" in waiting.reason
    assert not messages(sends, Granted)

    sends = ledger.handle("video", RevokeDone(lease_id=video.lease_id, new_bytes=2 * GiB, tier="t1"))
    [grant] = messages(sends, Granted, client="chat")
    assert grant.bytes == 4 * GiB  # room for the fastest tier once the video shrank
    leases = {lease.job: lease for lease in ledger.snapshot().leases}
    assert leases["video render"].bytes == 2 * GiB and not leases["video render"].revoking


def test_interactive_revokes_background_to_zero_when_no_leaner_tier_helps(clock):
    ledger, _ = make(clock)
    join(ledger, "music", 10)
    join(ledger, "chat", 20)
    _, sends = ask(ledger, "music", "long music", Priority.background, 7, 6)
    [music] = messages(sends, Granted)
    _, sends = ask(ledger, "chat", "chat", Priority.interactive, 5)
    [revoke] = messages(sends, Revoke)
    assert revoke.target_bytes == 0 and revoke.tier == ""
    sends = ledger.handle("music", RevokeDone(lease_id=music.lease_id, new_bytes=0))
    assert messages(sends, Granted, client="chat")
    assert [lease.job for lease in ledger.snapshot().leases] == ["chat"]


def test_background_never_revokes_and_is_not_starved_by_single_shots(clock):
    ledger, _ = make(clock, aging_s=10.0)
    join(ledger, "image", 1)
    join(ledger, "video", 2)
    _, sends = ask(ledger, "image", "image 0", Priority.single_shot, 5)
    [current] = messages(sends, Granted)
    _, sends = ask(ledger, "video", "video render", Priority.background, 5)
    assert not messages(sends, Revoke), "background must not preempt a stronger lease"
    video_granted_at = None
    for n in range(1, 40):
        clock.advance(2.0)
        _, sends = ask(ledger, "image", f"image {n}", Priority.single_shot, 5)  # a new one queues
        sends += ledger.handle("image", Release(lease_id=current.lease_id))
        grants = messages(sends, Granted)
        assert len(grants) == 1
        if grants[0].lease_id and any(lease.job == "video render" for lease in ledger.snapshot().leases):
            video_granted_at = n
            break
        current = grants[0]
    assert video_granted_at is not None, "background starved"
    assert video_granted_at <= 6  # within one aging step (10 s) of waiting, not never


def test_priority_then_age_orders_the_queue(clock):
    ledger, _ = make(clock)
    join(ledger, "a", 1)
    _, sends = ask(ledger, "a", "big", Priority.interactive, 7)
    [big] = messages(sends, Granted)
    ask(ledger, "a", "bg", Priority.background, 7)
    clock.advance(1)
    ask(ledger, "a", "shot", Priority.single_shot, 7)
    clock.advance(1)
    ask(ledger, "a", "chat", Priority.interactive, 7)
    assert [w.job for w in ledger.snapshot().waiting] == ["chat", "shot", "bg"]
    sends = ledger.handle("a", Release(lease_id=big.lease_id))
    assert [g.request_id for g in messages(sends, Granted)] and ledger.snapshot().leases[0].job == "chat"


def test_idle_leases_are_evicted_lru_before_active_ones(clock):
    ledger, _ = make(clock)
    for pid, name in enumerate(["chat", "image", "music", "video"], start=1):
        join(ledger, name, pid)
    grants = {}
    for name in ["chat", "image", "music"]:
        _, sends = ask(ledger, name, name, Priority.single_shot, 2)
        [grants[name]] = messages(sends, Granted)
        clock.advance(1)
    ledger.handle("image", SetIdle(lease_id=grants["image"].lease_id, idle=True))  # idle first: LRU
    clock.advance(1)
    ledger.handle("chat", SetIdle(lease_id=grants["chat"].lease_id, idle=True))
    _, sends = ask(ledger, "video", "video render", Priority.interactive, 3)  # 1.5 GiB free, needs 3
    revokes = messages(sends, Revoke)
    assert [r.lease_id for r in revokes] == [grants["image"].lease_id], "only the least recently idle one"
    assert revokes[0].target_bytes == 0 and "idle" in revokes[0].reason
    sends = ledger.handle("image", RevokeDone(lease_id=grants["image"].lease_id, new_bytes=0))
    assert messages(sends, Granted, client="video")
    assert {lease.job for lease in ledger.snapshot().leases} == {"chat", "music", "video render"}


def _image_holding_six_gib(ledger, sim, clock):
    """The image worker (pid 1) granted and holding 6 GiB for a while; chat (pid 2) connected."""
    join(ledger, "image", 1)
    join(ledger, "chat", 2)
    _, sends = ask(ledger, "image", "image", Priority.single_shot, 6)
    [lease] = messages(sends, Granted)
    sim.allocate(1, 6 * GiB)
    clock.advance(5)
    return lease


def test_freed_memory_waits_for_the_device_reading(clock):
    # Readings trail reality by 0.3 s; the ledger's fallback window is 1.5 s.
    ledger, sim = make(clock, lag_window_s=1.5, reading_lag_s=0.3)
    lease = _image_holding_six_gib(ledger, sim, clock)
    sim.free(1, 6 * GiB)
    sends = ledger.handle("image", Release(lease_id=lease.lease_id))
    _, sends = ask(ledger, "chat", "chat", Priority.single_shot, 6)
    [waiting] = messages(sends, Waiting)
    assert "just released" in waiting.reason
    clock.advance(0.2)
    assert not messages(ledger.tick(), Granted), "the reading still shows the memory in use"
    clock.advance(0.2)
    assert messages(ledger.tick(), Granted), "the reading now shows it free: grant before the window ends"


def test_memory_pytorch_keeps_cached_is_not_granted_until_it_goes_back_to_the_driver(clock):
    """Freed tensors stay reserved in the process until ``empty_cache``: readings taken after the
    release still show them, and that outweighs the lag window."""
    ledger, sim = make(clock, lag_window_s=1.0, reading_lag_s=0.3)
    lease = _image_holding_six_gib(ledger, sim, clock)
    sim.free(1, 6 * GiB, keep_cached=True)
    assert sim.reserved(1) == 6 * GiB and sim.allocated(1) == 0
    ledger.handle("image", Release(lease_id=lease.lease_id))
    ask(ledger, "chat", "chat", Priority.single_shot, 6)
    clock.advance(2.0)  # past the lag window
    assert not messages(ledger.tick(), Granted), "the device still shows the 6 GiB in use"
    sim.empty_cache(1)
    clock.advance(0.4)
    assert messages(ledger.tick(), Granted)
    assert sim.really_used() == 0


def test_freed_memory_returns_after_the_lag_window_without_readings(clock):
    ledger, _ = make(clock, lag_window_s=1.5)
    join(ledger, "image", 1)
    _, sends = ask(ledger, "image", "image", Priority.single_shot, 6)
    [lease] = messages(sends, Granted)
    ledger.handle("image", Release(lease_id=lease.lease_id))
    _, sends = ask(ledger, "image", "image 2", Priority.single_shot, 6)
    assert not messages(sends, Granted)
    clock.advance(1.4)
    assert not messages(ledger.tick(), Granted)
    clock.advance(0.2)
    assert messages(ledger.tick(), Granted)


def test_overdue_holder_is_reported_and_its_memory_freed_when_killed(clock):
    ledger, _ = make(clock)
    join(ledger, "video", 42)
    join(ledger, "chat", 43)
    _, sends = ask(ledger, "video", "video render", Priority.background, 7)
    [video] = messages(sends, Granted)
    ask(ledger, "chat", "chat", Priority.interactive, 4)
    assert ledger.overdue() == []
    clock.advance(5.1)
    [late] = ledger.overdue()
    assert late.lease_id == video.lease_id and late.pid == 42
    sends = ledger.process_killed(42)
    assert messages(sends, Granted, client="chat")
    assert [lease.job for lease in ledger.snapshot().leases] == ["chat"]


def test_foreign_growth_shrinks_the_budget_and_revokes_background(clock):
    ledger, sim = make(clock)
    join(ledger, "video", 1)
    _, sends = ask(ledger, "video", "video render", Priority.background, 7, 3)
    [video] = messages(sends, Granted)
    sim.grow_foreign(2 * GiB)  # a browser opened a video call
    [revoke] = messages(ledger.tick(), Revoke)
    assert revoke.lease_id == video.lease_id and revoke.target_bytes == 3 * GiB
    assert not messages(ledger.tick(), Revoke), "asked once, not every tick"


def test_reregistered_leases_appear_in_the_snapshot(clock):
    ledger, _ = make(clock)
    held = HeldLease(
        lease_id="old-7", job="video render", priority=Priority.background, bytes=3 * GiB, tier="full"
    )
    ledger.handle("video", Register(owner="video worker", pid=5, held=(held,)))
    [lease] = ledger.snapshot().leases
    assert (lease.lease_id, lease.owner, lease.bytes) == ("old-7", "video worker", 3 * GiB)
    assert ledger.available() == ledger.budget() - 3 * GiB


def test_bad_client_messages_get_protocol_errors(clock):
    ledger, _ = make(clock)
    join(ledger, "a", 1)
    [error] = messages(ledger.handle("a", Release(lease_id="nope")), ProtocolError)
    assert "nope" in error.message
    _, sends = ask(ledger, "a", "x", Priority.single_shot, 1)
    [grant] = messages(sends, Granted)
    [error] = messages(ledger.handle("b", Release(lease_id=grant.lease_id)), ProtocolError)
    assert "belongs to" in error.message
    [error] = messages(
        ledger.handle("a", RevokeDone(lease_id=grant.lease_id, new_bytes=5 * GiB)), ProtocolError
    )
    assert "only shrink" in error.message
    [error] = messages(
        ledger.handle("a", Granted(request_id="r", lease_id="l", bytes=1, tier="t")), ProtocolError
    )


def test_disconnect_frees_leases_and_requests(clock):
    ledger, _ = make(clock)
    join(ledger, "a", 1)
    join(ledger, "b", 2)
    ask(ledger, "a", "a job", Priority.single_shot, 7)
    ask(ledger, "b", "b job", Priority.single_shot, 7)
    sends = ledger.disconnect("a")
    assert messages(sends, Granted, client="b")
    assert [lease.owner for lease in ledger.snapshot().leases] == ["b"]


def test_status_table_shows_leases_headroom_outside_and_reasons(clock):
    ledger, _ = make(clock, foreign_bytes=1 * GiB)
    join(ledger, "video worker", 1)
    join(ledger, "chat worker", 2)
    ask(ledger, "video worker", "video render", Priority.background, 6)
    ask(ledger, "chat worker", "chat", Priority.interactive, 3)
    text = format_snapshot(ledger.snapshot())
    assert "video worker" in text and "6.0 GiB" in text and "revoking" in text
    assert "512 MiB" in text and "1.0 GiB" in text  # headroom and memory outside Hearth
    assert "waiting" in text and "releasing at next step" in text


def test_units_and_simulated_device_spec():
    assert (
        parse_bytes("8GiB") == 8 * GiB and parse_bytes("512 MiB") == 512 * MiB and parse_bytes("100") == 100
    )
    assert format_bytes(int(6.1 * GiB)) == "6.1 GiB" and format_bytes(300 * MiB) == "300 MiB"
    with pytest.raises(ValueError, match="not a memory size"):
        parse_bytes("lots")
    sim = parse_simulated("sim:8GiB,lag=0.5,ctx=256MiB")
    assert sim.total() == 8 * GiB and sim.reading_lag_s == 0.5 and sim.context_bytes_per_process == 256 * MiB


def test_cuda_view_without_nvml_waits_for_a_worker_reading(clock, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as on a machine without it
    from workers.arbiter.device import CudaDevice
    from workers.arbiter.messages import DeviceReading

    device = CudaDevice(clock=clock)
    ledger = Ledger(device, headroom=512 * MiB, clock=clock, lease_prefix="L")
    join(ledger, "chat", 7)
    _, sends = ask(ledger, "chat", "chat", Priority.interactive, 4)
    [waiting] = messages(sends, Waiting)
    assert "first GPU memory reading" in waiting.reason, "never refused for want of a reading"
    # A browser holds 3 GiB; this worker holds 1 GiB of its own.
    sends = ledger.handle("chat", DeviceReading(total=24 * GiB, free=20 * GiB, used_by_hearth=1 * GiB))
    [grant] = messages(sends, Granted)
    assert grant.bytes == 4 * GiB
    assert device.used_outside() == 3 * GiB
    assert ledger.budget() == 24 * GiB - 512 * MiB - 3 * GiB


def test_each_hearth_process_context_counts_against_the_budget(clock):
    ledger, _ = make(clock, context_bytes_per_process=256 * MiB)
    join(ledger, "a", 1)
    join(ledger, "b", 2)
    assert ledger.budget() == 8 * GiB - 512 * MiB - 2 * 256 * MiB
    ledger.disconnect("b")
    assert ledger.budget() == 8 * GiB - 512 * MiB - 256 * MiB


def test_device_choice_from_environment():
    from workers.arbiter.device import HostMemoryDevice, device_from_env

    assert isinstance(device_from_env("sim:4GiB"), SimulatedDevice)
    host = device_from_env("host")
    assert isinstance(host, HostMemoryDevice) and host.total() > 0 and "host memory" in host.describe()
    with pytest.raises(ValueError, match="HEARTH_ARBITER_DEVICE"):
        device_from_env("tpu")


def test_a_slow_stepping_holder_gets_two_of_its_steps_to_answer_a_revoke(clock):
    """A 20 s video step cannot reach a step boundary in the default 5 s: killing it there would
    lose a healthy render, so its deadline covers two of the steps it declared."""
    ledger, _ = make(clock)
    join(ledger, "video", 42)
    join(ledger, "chat", 43)
    slow = Tier(name="full", bytes=7 * GiB, est_step_s=20.0)
    request = Request(request_id="slow", job="video render", priority=Priority.background, tiers=(slow,))
    [video] = messages(ledger.handle("video", request), Granted)
    _, sends = ask(ledger, "chat", "chat", Priority.interactive, 4)
    [revoke] = messages(sends + ledger.tick(), Revoke)
    assert revoke.lease_id == video.lease_id and revoke.deadline_s == 40.0
    clock.advance(39)
    assert ledger.overdue() == []
    clock.advance(1.1)
    assert [late.pid for late in ledger.overdue()] == [42]
