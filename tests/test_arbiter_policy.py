"""Issue 7's arbiter policy on the ledger, with a fake clock: shrink before pause, throttling for
compute contention, aging protection, LRU eviction weighted by reload cost, and the runtime side
(honouring a throttle, checking its own usage against its leases)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers.arbiter.device import SimulatedDevice
from workers.arbiter.ledger import Ledger
from workers.arbiter.messages import (
    Granted,
    Grow,
    GrowDone,
    ProtocolError,
    Register,
    Release,
    Request,
    Revoke,
    RevokeDone,
    SetIdle,
    Throttle,
    Tier,
    Waiting,
)
from workers.arbiter.selfcheck import CHECKED_METRIC, OVERRUN_METRIC, LeaseAudit
from workers.arbiter.units import GiB, MiB
from workers.protocol import Priority

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock, total=8 * GiB, **kwargs) -> Ledger:
    sim = SimulatedDevice(total, clock=clock)
    ledger = Ledger(sim, headroom=512 * MiB, lag_window_s=0.0, clock=clock, lease_prefix="L", **kwargs)
    for pid, name in enumerate(["chat", "image", "video", "music"], start=1):
        ledger.handle(name, Register(owner=name, pid=pid))
    return ledger


_ids = iter(range(10**9))


def ask(ledger, client, priority, *tiers, keep_resident=False):
    """``tiers``: (name, GiB, est_step_s[, reload_s]) tuples."""
    wire = tuple(
        Tier(name=t[0], bytes=int(t[1] * GiB), est_step_s=t[2], reload_s=t[3] if len(t) > 3 else 0.0)
        for t in tiers
    )
    request = Request(
        request_id=f"r{next(_ids)}", job=client, priority=priority, tiers=wire, keep_resident=keep_resident
    )
    return ledger.handle(client, request)


def after_loading(ledger, clock, reload_s):
    """Past a fresh grant's weight copy: what the ledger says at its next tick."""
    clock.now += reload_s + 0.01
    return ledger.tick()


def only(sends, kind, client=None):
    return [s.message for s in sends if isinstance(s.message, kind) and client in (None, s.client)]


VIDEO_TIERS = (("resident", 6, 0.60), ("sliced", 3, 0.63), ("offloaded", 1, 1.6))


def test_interactive_shrinks_a_render_to_a_leaner_tier_rather_than_pausing_it(clock):
    ledger = make(clock)
    [video] = only(ask(ledger, "video", Priority.background, *VIDEO_TIERS), Granted)
    sends = ask(ledger, "chat", Priority.interactive, ("bf16", 3, 0.03), ("nf4", 2, 0.04), keep_resident=True)
    [revoke] = only(sends, Revoke, "video")
    assert (revoke.tier, revoke.target_bytes) == ("sliced", 3 * GiB), "sliced is enough: no pause"
    sends = ledger.handle("video", RevokeDone(lease_id=video.lease_id, new_bytes=3 * GiB, tier="sliced"))
    [chat] = only(sends, Granted, "chat")
    assert chat.tier == "bf16"


def test_a_render_is_paused_only_when_no_leaner_tier_makes_room(clock):
    ledger = make(clock)
    [music] = only(
        ask(ledger, "music", Priority.background, ("resident", 5, 0.02), ("lean", 4, 0.05)), Granted
    )
    only(ask(ledger, "video", Priority.background, ("resident", 2, 0.6)), Granted)
    sends = ask(ledger, "chat", Priority.interactive, ("bf16", 5, 0.03))
    revokes = {r.lease_id: r for r in only(sends, Revoke)}
    assert revokes[music.lease_id].target_bytes in (0, 4 * GiB)
    assert sum(r.target_bytes == 0 for r in revokes.values()) >= 1, "someone must pause"


def test_a_single_shot_waits_for_a_cheap_shrink_instead_of_running_offloaded(clock):
    ledger = make(clock)
    [video] = only(ask(ledger, "video", Priority.background, *VIDEO_TIERS), Granted)
    sends = ask(ledger, "music", Priority.single_shot, ("resident", 3, 0.012), ("offloaded", 1.5, 0.04))
    assert not only(sends, Granted), "1.5 GiB fits now, but offloaded is 3x slower"
    [revoke] = only(sends, Revoke, "video")
    assert revoke.tier == "sliced"
    sends = ledger.handle("video", RevokeDone(lease_id=video.lease_id, new_bytes=3 * GiB, tier="sliced"))
    assert only(sends, Granted, "music")[0].tier == "resident"


def test_alone_the_largest_fitting_tier_is_granted_even_where_a_leaner_one_is_faster(clock):
    """Leaner tiers cost quality (nf4 answers drift), so with the GPU to itself speed does not pick."""
    ledger = make(clock)
    [chat] = only(ask(ledger, "chat", Priority.interactive, ("bf16", 4, 0.03), ("nf4", 2.5, 0.02)), Granted)
    assert chat.tier == "bf16"


def test_under_contention_a_tier_larger_and_slower_than_another_that_fits_is_skipped(clock):
    """With a render computing, int8's every token costs the render GPU time nf4 would not."""
    ledger = make(clock)
    tiers = (("bf16", 7.2, 0.03), ("int8", 3.6, 0.055), ("nf4", 2.2, 0.04), ("q2", 1.2, 0.035))
    only(ask(ledger, "video", Priority.background, ("resident", 3, 0.6)), Granted)
    [chat] = only(ask(ledger, "chat", Priority.interactive, *tiers), Granted)
    assert chat.tier == "nf4", "bf16 does not fit; int8 is larger and slower than nf4; q2 costs quality"


def test_background_pauses_while_interactive_work_computes_and_resumes_after(clock):
    ledger = make(clock)
    [video] = only(ask(ledger, "video", Priority.background, ("resident", 3, 0.6)), Granted)
    sends = ask(ledger, "image", Priority.interactive, ("resident", 2, 0.03, 0.8))
    [edit] = only(sends, Granted, "image")
    assert not only(sends, Throttle), "copying its weights in (0.8 s) uses the bus, not the GPU's cores"
    [pause] = only(after_loading(ledger, clock, 0.8), Throttle, "video")
    assert pause.pause and pause.pause_s == 0 and "image" in pause.reason
    assert pause.max_pause_s > 0, "bounded: background is never starved for good"
    assert not only(ledger.handle("image", SetIdle(lease_id=edit.lease_id, idle=True)), Throttle)
    clock.now += 2.0
    assert not only(ledger.tick(), Throttle), "a brush burst: the next edit comes within seconds"
    clock.now += 4.0
    [resume] = only(ledger.tick(), Throttle, "video")
    assert resume.lease_id == video.lease_id and not resume.pause
    assert [lease.throttled for lease in ledger.snapshot().leases] == [False, False]


def _ask_paused_points(ledger, client, priority, name, gib, step_s, pause_every_s):
    tier = Tier(name=name, bytes=int(gib * GiB), est_step_s=step_s, pause_every_s=pause_every_s)
    request = Request(request_id=f"r{next(_ids)}", job=client, priority=priority, tiers=(tier,))
    return ledger.handle(client, request)


def test_a_render_that_pauses_within_its_step_runs_between_edits_and_pauses_for_each(clock):
    """A denoiser with pause points before each block stops within 0.07 s of an edit starting, so
    it need not sit idle through the whole burst; a render that only pauses between 0.6 s steps must."""
    ledger = make(clock)
    [video] = only(
        _ask_paused_points(ledger, "video", Priority.background, "resident", 2, 0.6, 0.6 / 9), Granted
    )
    [music] = only(_ask_paused_points(ledger, "music", Priority.background, "resident", 1, 0.6, 0.0), Granted)
    [edit] = only(ask(ledger, "image", Priority.interactive, ("resident", 2, 0.03, 0.5)), Granted)
    sends = after_loading(ledger, clock, 0.5)  # loaded: the first edit computes
    assert {t.lease_id for t in only(sends, Throttle) if t.pause} == {video.lease_id, music.lease_id}
    sends = ledger.handle("image", SetIdle(lease_id=edit.lease_id, idle=True))
    [resume] = only(sends, Throttle)
    assert resume.lease_id == video.lease_id and not resume.pause, "it runs in the gap between edits"
    clock.now += 1.5
    [again] = only(ledger.handle("image", SetIdle(lease_id=edit.lease_id, idle=False)), Throttle)
    assert again.lease_id == video.lease_id and again.pause, "the next edit pauses it at once"
    assert not only(ledger.handle("image", SetIdle(lease_id=edit.lease_id, idle=True)), Throttle, "music")


def test_the_duty_pause_is_per_pause_point_not_per_step(clock):
    ledger = make(clock)
    only(_ask_paused_points(ledger, "video", Priority.background, "resident", 3, 0.6, 0.1), Granted)
    only(ask(ledger, "chat", Priority.interactive, ("nf4", 2, 0.04, 0.5), keep_resident=True), Granted)
    [slow] = only(after_loading(ledger, clock, 0.5), Throttle)
    # One 0.1 s block per (0.1 + pause) s keeps the chat's 0.04 s tokens within 3/4 of 0.2 s.
    time_per_token = 0.04 * (0.1 + slow.pause_s) / slow.pause_s
    assert slow.pause_s < 0.05 and time_per_token <= 0.75 * 0.2 + 1e-9


def test_a_streaming_chat_throttles_background_to_keep_its_time_per_token(clock):
    ledger = make(clock)
    only(ask(ledger, "video", Priority.background, ("resident", 3, 0.6)), Granted)
    only(ask(ledger, "chat", Priority.interactive, ("nf4", 2, 0.04, 0.5), keep_resident=True), Granted)
    [slow] = only(after_loading(ledger, clock, 0.5), Throttle)
    assert slow.pause and slow.pause_s > 0
    # One 0.6 s video step per (0.6 + pause) s leaves the chat its 0.04 s tokens within 3/4 of 0.2 s.
    time_per_token = 0.04 * (0.6 + slow.pause_s) / slow.pause_s
    assert time_per_token <= 0.75 * 0.2 + 1e-9


def test_an_aged_grant_is_not_preempted_straight_away(clock):
    ledger = make(clock, aging_s=10.0)
    [shot] = only(ask(ledger, "image", Priority.single_shot, ("resident", 7, 0.1)), Granted)
    ask(ledger, "video", Priority.background, ("resident", 6, 0.6))
    clock.now += 25.0  # two aging steps: the render now ranks as interactive
    [video] = only(ledger.handle("image", Release(lease_id=shot.lease_id)), Granted)
    sends = ask(ledger, "chat", Priority.interactive, ("bf16", 3, 0.03))
    assert not only(sends, Revoke), "protected for one aging period"
    clock.now += 10.5
    [revoke] = only(ledger.tick(), Revoke)
    assert revoke.lease_id == video.lease_id


def test_idle_eviction_is_lru_weighted_by_reload_cost_and_keeps_token_models(clock):
    ledger = make(clock)
    [chat] = only(
        ask(ledger, "chat", Priority.interactive, ("bf16", 2, 0.03, 4.0), keep_resident=True), Granted
    )
    [image] = only(ask(ledger, "image", Priority.interactive, ("resident", 2, 0.03, 4.0)), Granted)
    [music] = only(ask(ledger, "music", Priority.single_shot, ("resident", 2, 0.02, 0.5)), Granted)
    for lease, client in ((chat, "chat"), (image, "image"), (music, "music")):
        ledger.handle(client, SetIdle(lease_id=lease.lease_id, idle=True))
        clock.now += 1.0
    # Music went idle last but reloads in 0.5 s: it goes first. Then the image, not the chat.
    sends = ask(ledger, "video", Priority.background, ("resident", 3.5, 0.6))
    assert [r.lease_id for r in only(sends, Revoke)] == [music.lease_id]
    sends = ledger.handle("music", RevokeDone(lease_id=music.lease_id, new_bytes=0))
    assert only(sends, Granted, "video")
    sends = ask(ledger, "music", Priority.single_shot, ("resident", 2, 0.02, 0.5))
    assert [r.lease_id for r in only(sends, Revoke)] == [image.lease_id], "the chat stays resident"


def test_stale_idle_leases_go_before_an_active_render_shrinks(clock):
    ledger = make(clock, keep_warm_s=60.0)
    [image] = only(ask(ledger, "image", Priority.interactive, ("resident", 2, 0.03)), Granted)
    ledger.handle("image", SetIdle(lease_id=image.lease_id, idle=True))
    clock.now += 120.0
    only(ask(ledger, "video", Priority.background, ("resident", 5, 0.6), ("sliced", 3, 0.63)), Granted)
    sends = ask(ledger, "chat", Priority.interactive, ("bf16", 2, 0.03), keep_resident=True)
    assert [r.lease_id for r in only(sends, Revoke)] == [image.lease_id]


def test_memory_freed_by_an_unload_is_granted_only_once_the_device_shows_it(clock):
    sim = SimulatedDevice(8 * GiB, clock=clock, reading_lag_s=0.5)
    ledger = Ledger(sim, headroom=512 * MiB, lag_window_s=1.5, clock=clock, lease_prefix="L")
    ledger.handle("video", Register(owner="video", pid=1))
    ledger.handle("chat", Register(owner="chat", pid=2))
    [video] = only(ask(ledger, "video", Priority.background, ("resident", 7, 0.6)), Granted)
    sim.allocate(1, 7 * GiB)
    clock.now += 3
    [waiting] = only(ask(ledger, "chat", Priority.interactive, ("bf16", 4, 0.03)), Waiting)
    sim.free(1, 7 * GiB)
    sends = ledger.handle("video", RevokeDone(lease_id=video.lease_id, new_bytes=0))
    assert not only(sends, Granted) and "just released" in only(sends, Waiting)[0].reason
    clock.now += 0.6
    assert only(ledger.tick(), Granted, "chat")


# --------------------------------------------------------------------------- the worker side


class FakeLease:
    def __init__(self, nbytes: int, tier: str, throttle: Throttle | None = None) -> None:
        self.bytes, self.tier, self._throttle = nbytes, tier, throttle

    def throttled(self):
        return self._throttle

    def revoke_requested(self):
        return None

    grow = None
    grown: tuple[int, str] | None = None

    def grow_offered(self):
        return self.grow

    def done_grow(self, new_bytes: int, tier: str = "") -> None:
        self.grow, self.grown = None, (new_bytes, tier)
        self.bytes, self.tier = new_bytes, tier


def test_the_runtime_waits_out_a_throttle_between_steps_then_runs_on():
    from workers.context import CancelToken, HeldLease, MemoryTier
    from workers.runtime import WorkerRuntime

    runtime = WorkerRuntime.__new__(WorkerRuntime)
    order = Throttle(lease_id="L1", pause=True, reason="paused while chat runs", max_pause_s=0.3)
    lease = FakeLease(GiB, "resident", order)
    runtime.leases = {
        "m": HeldLease(lease=lease, tiers=[MemoryTier("resident", GiB, 0.1)], priority=None, job="m")
    }
    runtime._lease_audit = runtime._throttle_said = None
    said: list[str] = []
    ctx = SimpleNamespace(job_id="j1", status=said.append, cancel_token=CancelToken(), metrics=[])
    runtime.honour_revokes(ctx)  # returns once max_pause_s is spent: never starved for good
    assert said == ["paused while chat runs"]
    lease._throttle = None
    runtime.honour_revokes(ctx)
    assert said == ["paused while chat runs"], "no throttle, no wait"
    assert {m.name: m.value for m in ctx.metrics} == {CHECKED_METRIC: 2.0, OVERRUN_METRIC: 0.0}


def test_a_pause_point_inside_a_step_flushes_the_gpu_queue_and_waits_only_when_throttled():
    from workers.context import CancelToken, HeldLease, MemoryTier
    from workers.runtime import WorkerRuntime

    runtime = WorkerRuntime.__new__(WorkerRuntime)
    lease = FakeLease(GiB, "resident", None)
    runtime.leases = {
        "m": HeldLease(lease=lease, tiers=[MemoryTier("resident", GiB, 0.1)], priority=None, job="m")
    }
    runtime._throttle_said = None
    flushed: list[int] = []
    said: list[str] = []
    ctx = SimpleNamespace(job_id="j1", status=said.append, cancel_token=CancelToken(), metrics=[])
    runtime.pause_point(ctx, flush=lambda: flushed.append(1))
    assert flushed == [] and said == [], "not throttled: no sync, no wait"
    lease._throttle = Throttle(lease_id="L1", pause=True, reason="paused while image runs", max_pause_s=0.2)
    runtime.pause_point(ctx, flush=lambda: flushed.append(1))
    assert flushed == [1] and said == ["paused while image runs"]


def test_the_runtime_takes_memory_back_at_a_step_boundary_when_offered():
    from workers.context import CancelToken, HeldLease, MemoryTier
    from workers.runtime import WorkerRuntime

    runtime = WorkerRuntime.__new__(WorkerRuntime)
    lease = FakeLease(GiB, "sliced")
    lease.grow = Grow(lease_id="L1", target_bytes=3 * GiB, tier="resident")
    applied: list[str] = []
    tiers = [
        MemoryTier("resident", 3 * GiB, 0.6, apply=lambda: applied.append("resident")),
        MemoryTier("sliced", GiB, 0.63, apply=lambda: applied.append("sliced")),
    ]
    runtime.leases = {"v": HeldLease(lease=lease, tiers=tiers, priority=None, job="v")}
    runtime._lease_audit = runtime._throttle_said = None
    said: list[str] = []
    ctx = SimpleNamespace(job_id="j3", status=said.append, cancel_token=CancelToken(), metrics=[])
    runtime.honour_revokes(ctx)
    assert applied == ["resident"] and lease.grown == (3 * GiB, "resident")
    assert said == ["memory back: running resident"]
    runtime.honour_revokes(ctx)
    assert applied == ["resident"], "an offer is taken up once"
    lease.grow = Grow(lease_id="L1", target_bytes=3 * GiB, tier="resident")
    tiers[0].apply = lambda: False  # e.g. group-offloaded weights cannot come back mid-render
    lease.bytes, lease.tier = GiB, "sliced"
    runtime.honour_revokes(ctx)
    assert lease.grown == (GiB, "sliced"), "declined: it keeps what it holds"


def test_a_worker_running_beyond_its_lease_reports_it(caplog):
    from workers.context import HeldLease, MemoryTier

    held = HeldLease(
        lease=FakeLease(GiB, "resident"), tiers=[MemoryTier("resident", 3 * GiB, 0.1)], priority=None, job="m"
    )
    audit, metrics = LeaseAudit("j2"), []
    usage = audit.check([held], metrics)
    assert usage.overrun == 2 * GiB and usage.source == "declared tier bytes"
    assert {m.name: m.value for m in metrics}[OVERRUN_METRIC] == 2 * GiB
    assert "beyond its leases" in caplog.text


def test_on_the_benchmarks_trace_ours_has_no_ooms_and_beats_greedy_on_slo():
    """One seeded trace of the arbiter benchmark, in this process (``bench/arbiter.py`` runs it
    and eleven more seeds, and prints the JSON)."""
    from bench.arbiter import make_trace, summarise

    trace = make_trace(7, quick=True)
    ours, greedy = summarise("ours", trace), summarise("greedy", trace)
    assert ours["ooms"] == 0 and greedy["ooms"] > 0
    assert ours["slo_attainment"] > greedy["slo_attainment"] and ours["slo_attainment"] >= 0.95
    # Interactive work first costs the render what the stronger apps compute, and not much more:
    assert ours["background_throughput"] >= ours["background_throughput_ceiling"] - 0.02


def _ask_growable(ledger, *tiers):
    wire = tuple(Tier(name=t[0], bytes=int(t[1] * GiB), est_step_s=t[2]) for t in tiers)
    request = Request(
        request_id=f"r{next(_ids)}", job="video", priority=Priority.background, tiers=wire, can_grow=True
    )
    return ledger.handle("video", request)


def _shrunk_render(ledger, clock, waiting=None):
    """A video shrunk to ``sliced`` for a music clip that then ended (``waiting`` asks for memory
    meanwhile): returns the video's lease id and what the ledger said at the release."""
    [video] = only(_ask_growable(ledger, *VIDEO_TIERS), Granted)
    [revoke] = only(ask(ledger, "music", Priority.single_shot, ("resident", 3, 0.012)), Revoke, "video")
    sends = ledger.handle("video", RevokeDone(lease_id=video.lease_id, new_bytes=3 * GiB, tier=revoke.tier))
    [music] = only(sends, Granted, "music")
    assert not only(sends, Grow), "someone needed that memory a moment ago"
    clock.now += 20.0
    if waiting:
        waiting()
    return video.lease_id, ledger.handle("music", Release(lease_id=music.lease_id))


def test_a_shrunk_render_gets_its_faster_tier_back_once_the_memory_is_free(clock):
    ledger = make(clock)
    lease_id, sends = _shrunk_render(ledger, clock)
    [grow] = only(sends, Grow, "video")
    assert (grow.lease_id, grow.tier, grow.target_bytes) == (lease_id, "resident", 6 * GiB)
    assert ledger.available() < 2 * GiB, "the memory set aside is not granted to anyone else"
    assert not only(ask(ledger, "image", Priority.single_shot, ("resident", 2, 0.1)), Granted)
    ledger.handle("video", GrowDone(lease_id=lease_id, new_bytes=6 * GiB, tier="resident"))
    [lease] = [lease for lease in ledger.snapshot().leases if lease.lease_id == lease_id]
    assert (lease.bytes, lease.tier) == (6 * GiB, "resident")


def test_no_memory_is_offered_back_while_someone_waits_or_to_a_job_that_cannot_grow(clock):
    ledger = make(clock)

    def chat_waits():  # 7 GiB: it cannot fit beside the sliced video, so it waits
        assert not only(ask(ledger, "chat", Priority.background, ("bf16", 7, 0.03)), Granted)

    _, sends = _shrunk_render(ledger, clock, waiting=chat_waits)
    assert not only(sends, Grow) and not only(ledger.tick(), Grow)
    other = make(clock)
    only(ask(other, "video", Priority.background, *VIDEO_TIERS), Granted)
    [revoke] = only(ask(other, "music", Priority.single_shot, ("resident", 3, 0.012)), Revoke, "video")
    done = RevokeDone(lease_id=revoke.lease_id, new_bytes=3 * GiB, tier=revoke.tier)
    [music] = only(other.handle("video", done), Granted, "music")
    clock.now += 20.0
    sends = other.handle("music", Release(lease_id=music.lease_id))
    assert not only(sends, Grow) and not only(other.tick(), Grow), "no can_grow: it never asked"


def test_an_offer_not_taken_up_lapses_and_a_growth_beyond_the_tiers_is_refused(clock):
    ledger = make(clock)
    lease_id, sends = _shrunk_render(ledger, clock)
    assert only(sends, Grow)
    reserved = ledger.available()
    clock.now += 6.0  # past the revoke deadline: the holder never answered
    ledger.tick()
    assert ledger.available() > reserved, "the memory set aside is free again"
    [error] = only(ledger.handle("video", GrowDone(lease_id=lease_id, new_bytes=9 * GiB)), ProtocolError)
    assert "largest tier" in error.message


def test_a_stale_idle_lease_is_evicted_to_give_a_shrunk_render_its_memory_back(clock):
    ledger = make(clock)
    [image] = only(ask(ledger, "image", Priority.interactive, ("resident", 3, 0.03)), Granted)
    ledger.handle("image", SetIdle(lease_id=image.lease_id, idle=True))
    [video] = only(_ask_growable(ledger, *VIDEO_TIERS), Granted)
    assert video.tier == "sliced", "the warm image editor holds 3 of 7.5 GiB"
    clock.now += 20.0
    assert not only(ledger.tick(), Revoke), "recently used: kept warm"
    clock.now += 60.0  # unused for longer than keep-warm: stale
    [evict] = only(ledger.tick(), Revoke, "image")
    assert evict.target_bytes == 0 and "video to run resident" in evict.reason
    [grow] = only(ledger.handle("image", RevokeDone(lease_id=image.lease_id, new_bytes=0)), Grow, "video")
    assert (grow.tier, grow.target_bytes) == ("resident", 6 * GiB)


class FakeCudaTorch:
    """Just enough of ``torch`` on a CUDA machine to see what the runtime asks of it, in order."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.cuda = SimpleNamespace(
            is_available=lambda: True,
            is_initialized=lambda: True,
            empty_cache=lambda: calls.append("empty_cache"),
            mem_get_info=lambda: (5 * GiB, 16 * GiB),
            memory_reserved=lambda: GiB,
        )


def test_a_worker_hands_cached_blocks_back_and_reports_before_it_says_the_memory_is_free(monkeypatch):
    """PyTorch keeps freed memory reserved: answering a revoke before ``empty_cache`` would let the
    arbiter grant memory the device still shows in use."""
    from workers.arbiter.messages import Revoke
    from workers.context import CancelToken, HeldLease, MemoryTier
    from workers.runtime import WorkerRuntime

    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch(calls))
    monkeypatch.delenv("HEARTH_DEVICE", raising=False)
    runtime = WorkerRuntime.__new__(WorkerRuntime)
    runtime._arbiter = SimpleNamespace(
        report_device=lambda total, free, used_by_hearth: calls.append(
            f"reading {free // GiB}/{total // GiB}"
        )
    )
    lease = FakeLease(2 * GiB, "resident")
    lease.revoke_requested = lambda: Revoke(lease_id="L1", target_bytes=0, deadline_s=5.0, reason="chat")
    lease.done_revoke = lambda new_bytes, tier="": calls.append(f"done {new_bytes}")
    lease.can_grow = False
    runtime.leases = {
        "m": HeldLease(
            lease=lease,
            tiers=[MemoryTier("resident", 2 * GiB, 0.1)],
            priority=None,
            job="m",
            on_release=lambda: calls.append("to cpu"),
        )
    }
    runtime._lease_audit = runtime._throttle_said = None
    runtime._reported_at = float("-inf")
    runtime._acquire = lambda ctx, key, tiers, can_grow=False: (_ for _ in ()).throw(RuntimeError("paused"))
    ctx = SimpleNamespace(job_id="j4", status=lambda _: None, cancel_token=CancelToken(), metrics=[])
    with pytest.raises(RuntimeError, match="paused"):  # it then waits for memory again
        runtime.honour_revokes(ctx)
    assert calls == ["to cpu", "empty_cache", "reading 5/16", "done 0"]


def test_a_worker_on_a_gpu_tells_the_arbiter_what_the_device_shows_before_it_asks(monkeypatch):
    """Without NVML the arbiter knows the GPU only from worker readings: the first request must
    carry one, or the arbiter would wait for a reading that never comes."""
    from workers.context import CancelToken, MemoryTier
    from workers.protocol import WorkerKind
    from workers.runtime import WorkerRuntime

    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch(calls))
    monkeypatch.delenv("HEARTH_DEVICE", raising=False)
    runtime = WorkerRuntime.__new__(WorkerRuntime)
    runtime.kind, runtime._reported_at = WorkerKind.video, float("-inf")
    runtime._arbiter = SimpleNamespace(
        report_device=lambda total, free, used_by_hearth: calls.append(
            f"reading {free // GiB}/{total // GiB}"
        ),
        acquire=lambda **kwargs: calls.append(f"request {kwargs['job']}") or "lease",
    )
    ctx = SimpleNamespace(priority=Priority.background, cancel_token=CancelToken(), status=lambda _: None)
    assert runtime._acquire(ctx, "demo", [MemoryTier("resident", GiB, 0.5)]) == "lease"
    assert calls == ["reading 5/16", "request video:demo"]
