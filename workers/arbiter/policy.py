"""How the ledger decides: queue order, grants, whom to evict, shrink or pause, whom to throttle.

The policy (docs/ARCHITECTURE.md, "The arbiter"; issue 7):
- strict priority: interactive before single-shot before background, then age; the head of the
  queue reserves the next freed memory so nobody behind it slips into the gaps;
- aging: each ``aging_s`` of waiting lifts a request one class, and a lease granted that way keeps
  the lifted class for one more ``aging_s`` so the next stronger request cannot take it straight
  back: background work always gets a share;
- making room costs the least first: stale idle leases; then active weaker jobs shrunk to a
  leaner tier of theirs (a sliced video runs a little slower, it does not stop); then recently
  used idle leases in LRU order weighted by reload cost, token-by-token models (chat, music) last;
  only then are weaker jobs paused (revoked to 0);
- compute contention: while a stronger job is active, weaker active holders are throttled (pause
  between steps, or at pause points inside a step), so a chat's decode kernels are not starved by
  a render's long kernels; between two edits of a burst only jobs that cannot pause quickly stay
  paused; a fresh grant still copying its weights in holds nobody back;
- giving back: once nobody waits, a shrunk render that can switch tiers in place is offered its
  faster tier again (``Grow``), from free memory or stale idle leases only;
- under contention a tier larger and much slower than another that fits (int8 beside nf4) is
  skipped: GPU time is what everyone shares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from workers.arbiter.messages import Granted, Grow, Request, Revoke, Throttle, Tier, Waiting
from workers.arbiter.records import (
    INTERACTIVE_LINGER_S,
    INTERACTIVE_STEP_S,
    QUICK_PAUSE_S,
    RANK,
    GrowOrder,
    LeaseRecord,
    RevokeOrder,
    Send,
    WaiterRecord,
    tier_reload_s,
)
from workers.arbiter.units import format_bytes
from workers.protocol import Priority

if TYPE_CHECKING:
    from workers.arbiter.device import DeviceView
    from workers.arbiter.records import ReturningMemory, Totals

log = logging.getLogger("workers.arbiter.ledger")

STREAM_TARGET_SHARE = 0.75
"""Throttling aims a streaming chat at this share of the 0.2 s per-token target: a safety margin."""

STEPS_TO_ANSWER_REVOKE = 2.0
"""A revoked holder gets at least this many of its declared steps before it is killed."""

_Plan = dict[str, tuple[LeaseRecord, Tier | None, str]]
"""lease id -> (lease, leaner tier or None to unload, why)."""


class LedgerState(Protocol):
    """What the policy reads of the ledger, and the records it updates when it grants or revokes."""

    device: DeviceView
    aging_s: float
    keep_warm_s: float
    grow_settle_s: float
    revoke_deadline_s: float
    clock: Callable[[], float]
    lease_prefix: str
    lease_ids: Iterator[int]
    leases: dict[str, LeaseRecord]
    waiters: dict[str, WaiterRecord]
    returning: list[ReturningMemory]
    hold_until: float

    def budget(self) -> int: ...

    def available(self) -> int: ...

    def totals(self) -> Totals: ...

    def confirm_returns(self) -> None: ...


class SchedulingPolicy:
    """Everything that chooses, none of the bookkeeping of messages: the ledger asks ``schedule()``
    after every change and sends what it returns."""

    def __init__(self, ledger: LedgerState) -> None:
        self.ledger = ledger

    # ----------------------------------------------------------------------- queue

    def _effective_rank(self, waiter: WaiterRecord, now: float) -> int:
        lift = int((now - waiter.arrived) / self.ledger.aging_s) if self.ledger.aging_s > 0 else 0
        return max(0, RANK[waiter.request.priority] - lift)

    def queue_order(self) -> list[WaiterRecord]:
        now = self.ledger.clock()
        return sorted(
            self.ledger.waiters.values(), key=lambda w: (self._effective_rank(w, now), w.arrived, w.seq)
        )

    def schedule(self) -> list[Send]:
        self.ledger.confirm_returns()
        queue = self.queue_order()
        if self.ledger.clock() < self.ledger.hold_until:
            reason = "waiting for Hearth's processes to re-register their memory after an arbiter restart"
            return [send for waiter in queue for send in self._tell_waiting(waiter, reason)]
        self._lapse_grows()
        out = self._reclaim_overcommit()
        for index, waiter in enumerate(queue):
            tier = self._fitting_tier(waiter)
            if tier is not None and not self._worth_waiting(waiter, tier):
                out.append(self._grant(waiter, tier))
                continue
            if self.ledger.device.ready() and waiter.request.tiers[-1].bytes > self.ledger.budget():
                # Other programs grew since it queued: Hearth freeing memory cannot help it, so
                # it must not hold up the requests behind it.
                out += self._tell_waiting(waiter, self._outside_reason(waiter.request))
                continue
            out += self._make_room(waiter)
            behind = f"waiting for memory: queued behind {waiter.request.job} ({waiter.request.priority})"
            for later in queue[index + 1 :]:
                out += self._tell_waiting(later, behind)
            break
        return out + self._offer_grows() + self._update_throttles()

    def _fitting_tier(self, waiter: WaiterRecord) -> Tier | None:
        if not self.ledger.device.ready():
            return None
        available = self.ledger.available()
        fitting = [tier for tier in waiter.request.tiers if tier.bytes <= available]
        if not fitting:
            return None
        if any(not lease.idle for lease in self.ledger.leases.values()):
            # Others compute too: GPU time is what everyone shares, so skip a tier that is larger
            # *and* much slower than another that fits (int8 next to nf4): its every step takes
            # time from the other jobs for a small gain in quality.
            fitting = [tier for tier in fitting if not any(_dominates(other, tier) for other in fitting)]
        # The largest tier left (tiers are kept largest first): leaner tiers trade quality,
        # not only speed (a chat's nf4 answers drift where bf16's don't, even if nf4 decodes faster).
        return fitting[0]

    def _grant(self, waiter: WaiterRecord, tier: Tier) -> Send:
        request = waiter.request
        lease_id = f"{self.ledger.lease_prefix}{next(self.ledger.lease_ids)}"
        now = self.ledger.clock()
        rank = self._effective_rank(waiter, now)
        self.ledger.leases[lease_id] = LeaseRecord(
            lease_id=lease_id,
            client=waiter.client,
            owner=waiter.owner,
            pid=waiter.pid,
            job=request.job,
            priority=request.priority,
            bytes=tier.bytes,
            tier=tier.name,
            tiers=request.tiers,
            granted_at=now,
            idle_since=now,
            keep_resident=request.keep_resident,
            can_grow=request.can_grow,
            loading_until=now + tier_reload_s(tier),
            granted_rank=rank,
            protected_until=now + self.ledger.aging_s if rank < RANK[request.priority] else 0.0,
        )
        del self.ledger.waiters[request.request_id]
        log.info("granted %s %s to %s (%s)", format_bytes(tier.bytes), tier.name, waiter.owner, request.job)
        return Send(
            waiter.client,
            Granted(request_id=request.request_id, lease_id=lease_id, bytes=tier.bytes, tier=tier.name),
        )

    # ----------------------------------------------------------------------- making room

    def _target_tier(self, request: Request, free: int, weaker: list[LeaseRecord]) -> Tier:
        """The tier worth taking memory from others for.

        A person waiting on every token needs only the leanest tier that still meets the
        interactive step time. Other jobs get their fastest tier where weaker jobs can make the
        room by cheap shrinks (a few per cent slower, never offloaded or paused), else their leanest.
        """
        tiers = request.tiers
        if request.priority is Priority.interactive:
            quick = [t for t in tiers if 0 < t.est_step_s <= INTERACTIVE_STEP_S]
            return quick[-1] if quick else tiers[-1]
        room = free + sum(lease.bytes - _cheap_leanest(lease).bytes for lease in weaker)
        return next((t for t in tiers if t.bytes <= room), tiers[-1])

    def _room_plan(self, waiter: WaiterRecord) -> tuple[Tier, int, list[LeaseRecord]]:
        """(the tier to aim for, bytes free once returns and revokes land, weaker active leases)."""
        totals = self.ledger.totals()
        now = self.ledger.clock()
        rank = self._effective_rank(waiter, now)
        weaker = [lease for lease in self._active_unrevoked() if lease.rank(now) > rank]
        free = self.ledger.budget() - totals.leased + totals.incoming
        return self._target_tier(waiter.request, free, weaker), free, weaker

    def _worth_waiting(self, waiter: WaiterRecord, fitting: Tier) -> bool:
        """A render offered only a much slower tier waits a moment for weaker jobs to shrink."""
        if waiter.request.priority is Priority.interactive:
            return False  # a person is waiting: take what fits now
        target, _, _ = self._room_plan(waiter)
        return 0 < target.est_step_s * CHEAP_SLOWDOWN < fitting.est_step_s

    def _make_room(self, waiter: WaiterRecord) -> list[Send]:
        if not self.ledger.device.ready():
            return self._tell_waiting(waiter, "waiting for the first GPU memory reading from a worker")
        request = waiter.request
        totals = self.ledger.totals()
        available = self.ledger.budget() - totals.leased - totals.returning
        target, free, weaker = self._room_plan(waiter)
        short = target.bytes - free
        out: list[Send] = []
        if short > 0:
            out += self._free_memory(short, weaker, f"memory needed by {request.job} ({request.priority})")
        return out + self._tell_waiting(waiter, self._wait_reason(available))

    def _reclaim_overcommit(self) -> list[Send]:
        """Other programs grew (or re-registered leases exceed a new budget): take memory back."""
        totals = self.ledger.totals()
        budget = self.ledger.budget()
        # Returning memory leaves by itself; only live leases may need to shrink.
        short = totals.leased - totals.incoming - budget
        if short <= 0 or not self.ledger.device.ready():
            return []
        reason = f"Hearth's memory budget shrank to {format_bytes(budget)} (other programs use more)"
        weaker = [lease for lease in self._active_unrevoked() if lease.priority is not Priority.interactive]
        return self._free_memory(short, weaker, reason)

    def _active_unrevoked(self) -> list[LeaseRecord]:
        """Active leases that may be ordered to shrink (not while a grow offer is out: one order
        at a time, and a grow is answered at the holder's next step boundary)."""
        return [
            lease
            for lease in self.ledger.leases.values()
            if not lease.idle and lease.revoke is None and lease.grow is None
        ]

    # ----------------------------------------------------------------------- giving memory back

    def _offer_grows(self) -> list[Send]:
        """Nobody waits and memory is free: offer shrunk renders a faster tier of theirs back.

        Only to jobs that switch tiers without reloading (``can_grow``), not within
        ``grow_settle_s`` of their last shrink, and only from free memory or from stale idle
        leases (the ones evicted first for anything anyway): never by shrinking or pausing anyone.
        """
        now = self.ledger.clock()
        if (
            self.ledger.waiters
            or not self.ledger.device.ready()
            or now < self.ledger.hold_until
            or self.ledger.returning
        ):
            return []
        available = self.ledger.available()
        stale = sorted(
            (
                lease
                for lease in self.ledger.leases.values()
                if lease.idle and not lease.revoke and self._is_stale(lease, now)
            ),
            key=lambda lease: lease.keep_value(now),
        )
        out: list[Send] = []
        growable = [lease for lease in self._active_unrevoked() if lease.can_grow]
        for lease in sorted(growable, key=lambda lease: (lease.rank(now), lease.granted_at)):
            if now < lease.offer_after:
                continue
            current = lease.step_s()
            reachable = available + sum(idle.bytes for idle in stale)
            faster = [
                tier
                for tier in lease.tiers
                if lease.bytes < tier.bytes <= lease.bytes + reachable and 0 < tier.est_step_s < current
            ]
            if not faster:
                continue
            missing = faster[0].bytes - lease.bytes - available
            if missing > 0:  # evict stale idle leases now; the offer follows once the memory is back
                plan: _Plan = {}
                reason = f"idle lease evicted: memory for {lease.describe()} to run {faster[0].name} again"
                _plan_evictions(missing, stale, plan, reason)
                return out + [self._order_revoke(idle, 0, "", reason) for idle, _, _ in plan.values()]
            tier = faster[0]  # the largest that fits is the fastest (tiers are kept largest first)
            lease.grow = GrowOrder(
                target_bytes=tier.bytes, tier=tier.name, deadline=now + self.ledger.revoke_deadline_s
            )
            available -= tier.bytes - lease.bytes
            log.info("offering %s back to %s: %s", format_bytes(tier.bytes), lease.owner, tier.name)
            reason = f"memory free again: back to {tier.name}"
            out.append(
                Send(
                    lease.client,
                    Grow(lease_id=lease.lease_id, target_bytes=tier.bytes, tier=tier.name, reason=reason),
                )
            )
        return out

    def _lapse_grows(self) -> None:
        """Offers not taken up in time lapse; so do all of them when the budget shrank below the
        leases (other programs grew): the memory set aside is the first to give back."""
        now = self.ledger.clock()
        over = self.ledger.totals().leased > self.ledger.budget()
        for lease in self.ledger.leases.values():
            if lease.grow is not None and (over or now > lease.grow.deadline):
                lease.grow = None
                lease.offer_after = now + self.ledger.grow_settle_s

    def _free_memory(self, short: int, weaker: list[LeaseRecord], reason: str) -> list[Send]:
        """Order revokes worth ``short`` bytes, cheapest first (see the module docstring)."""
        now = self.ledger.clock()
        idle = sorted(
            (lease for lease in self.ledger.leases.values() if lease.idle and lease.revoke is None),
            key=lambda lease: lease.keep_value(now),
        )
        stale = [lease for lease in idle if self._is_stale(lease, now)]
        recent = [lease for lease in idle if not self._is_stale(lease, now)]
        # Weakest first; then models that are cheap to have paused; then the youngest (least to lose).
        weaker = sorted(weaker, key=lambda lease: (-lease.rank(now), lease.keep_resident, -lease.granted_at))
        plan: _Plan = {}
        short = _plan_evictions(short, stale, plan, f"idle lease evicted: {reason}")
        short = _plan_shrinks(short, weaker, plan, reason)
        short = _plan_evictions(short, recent, plan, f"idle lease evicted: {reason}")
        _plan_pauses(short, weaker, plan, reason)
        return [
            self._order_revoke(lease, tier.bytes if tier else 0, tier.name if tier else "", why)
            for lease, tier, why in plan.values()
        ]

    def _is_stale(self, lease: LeaseRecord, now: float) -> bool:
        keep = self.ledger.keep_warm_s * (4.0 if lease.keep_resident else 1.0)
        return now - lease.idle_since >= keep

    def _order_revoke(self, lease: LeaseRecord, target: int, tier: str, reason: str) -> Send:
        # A holder answers at its next step boundary, up to a whole step away: a deadline shorter
        # than its declared step would kill a healthy worker, so the slowest get two steps.
        deadline_s = max(self.ledger.revoke_deadline_s, STEPS_TO_ANSWER_REVOKE * lease.step_s())
        lease.revoke = RevokeOrder(
            target_bytes=target, deadline=self.ledger.clock() + deadline_s, reason=reason
        )
        log.info(
            "revoking %s from %s down to %s: %s", lease.lease_id, lease.owner, format_bytes(target), reason
        )
        return Send(
            lease.client,
            Revoke(
                lease_id=lease.lease_id, target_bytes=target, deadline_s=deadline_s, reason=reason, tier=tier
            ),
        )

    # ----------------------------------------------------------------------- compute contention

    def _update_throttles(self) -> list[Send]:
        """Pause (or throttle) every active holder weaker than the strongest active one."""
        now = self.ledger.clock()
        active = [
            lease for lease in self.ledger.leases.values() if lease.bytes and self._computing(lease, now)
        ]
        out = []
        for lease in self.ledger.leases.values():
            stronger = [] if lease.idle else [a for a in active if _holds_back(a, lease, now)]
            state = (bool(stronger), self._duty_pause(lease, stronger, now) if stronger else 0.0)
            if state == lease.throttle:
                continue
            lease.throttle = state
            reason = ""
            if stronger:
                first = min(stronger, key=lambda a: (a.rank(now), a.granted_at))
                reason = f"{'slowed' if state[1] else 'paused'} between steps while {first.describe()} runs"
            message = Throttle(
                lease_id=lease.lease_id,
                pause=state[0],
                reason=reason,
                max_pause_s=self.ledger.aging_s,
                pause_s=state[1],
            )
            out.append(Send(lease.client, message))
        return out

    def _computing(self, lease: LeaseRecord, now: float) -> bool:
        """Active, or an interactive lease between two edits of a burst (the next comes soon).

        Not while a fresh grant is still copying its weights in (its tier's reload time): that
        uses the bus, not the GPU's cores, and weaker jobs may keep computing meanwhile.
        """
        if now < lease.loading_until:
            return False
        if not lease.idle:
            return True
        lingering = not lease.keep_resident and now - lease.idle_since < INTERACTIVE_LINGER_S
        return lease.priority is Priority.interactive and lingering

    def _duty_pause(self, lease: LeaseRecord, stronger: list[LeaseRecord], now: float) -> float:
        """Seconds to wait after each step so a streaming chat keeps within 3/4 of its token target.

        Only while every stronger job is an active interactive token stream with a declared step
        time: with one stretch of weaker work (a step, or the part of one up to its next pause
        point) per ``own + pause`` seconds, the stream loses ``own`` seconds in every
        ``own + pause``. Anything else (a brush burst, a single-shot render) pauses fully.
        """
        streams = [
            s for s in stronger if s.keep_resident and not s.idle and s.priority is Priority.interactive
        ]
        own = lease.pause_every_s()  # it waits at each pause point, not only between steps
        if len(streams) != len(stronger) or own <= 0 or any(s.step_s() <= 0 for s in streams):
            return 0.0
        token_s = max(s.step_s() for s in streams)
        spare = INTERACTIVE_STEP_S * STREAM_TARGET_SHARE - token_s
        return own * token_s / spare if spare > 0 else 0.0

    # ----------------------------------------------------------------------- why it waits

    def _wait_reason(self, available: int) -> str:
        revoking = [lease for lease in self.ledger.leases.values() if lease.revoke]
        if revoking:
            lease = max(revoking, key=lambda lease: lease.bytes)
            return (
                f"waiting for memory: {lease.describe()} holds {format_bytes(lease.bytes)}, "
                f"releasing at next step"
            )
        if self.ledger.returning:
            returning = sum(item.bytes for item in self.ledger.returning)
            return (
                f"waiting for memory: {format_bytes(returning)} just released by "
                f"{self.ledger.returning[-1].job}, waiting for the device to show it free"
            )
        holders = [lease for lease in self.ledger.leases.values() if lease.bytes]
        if holders:
            lease = max(holders, key=lambda lease: lease.bytes)
            return (
                f"waiting for memory: {lease.describe()} ({lease.priority}) holds "
                f"{format_bytes(lease.bytes)}; {format_bytes(max(0, available))} of "
                f"{format_bytes(self.ledger.budget())} free"
            )
        return f"waiting for memory: {format_bytes(max(0, available))} of {format_bytes(self.ledger.budget())} free"

    def _outside_reason(self, request: Request) -> str:
        return (
            f"waiting for memory: {request.job} needs at least {format_bytes(request.tiers[-1].bytes)} "
            f"but other programs now use {format_bytes(self.ledger.device.used_outside())}, leaving Hearth "
            f"{format_bytes(self.ledger.budget())}"
        )

    def _tell_waiting(self, waiter: WaiterRecord, reason: str) -> list[Send]:
        if reason == waiter.reason:
            return []  # say it once, not ten times a second
        waiter.reason = reason
        return [Send(waiter.client, Waiting(request_id=waiter.request.request_id, reason=reason))]


CHEAP_SLOWDOWN = 1.25
"""A leaner tier at most this much slower per step is a cheap shrink (slicing, not offloading)."""


def _dominates(tier: Tier, other: Tier) -> bool:
    """``tier`` is leaner than ``other`` and much faster (``CHEAP_SLOWDOWN``), both declared.

    Only much faster: a slightly faster, even leaner tier (2-bit next to 4-bit) costs quality
    for little GPU time.
    """
    known = tier.est_step_s > 0 and other.est_step_s > 0
    return known and tier.bytes < other.bytes and tier.est_step_s * CHEAP_SLOWDOWN <= other.est_step_s


def _holds_back(stronger: LeaseRecord, weaker: LeaseRecord, now: float) -> bool:
    """Does ``stronger`` (active, or between two edits of a burst) keep ``weaker`` paused?

    Between edits only a weaker job that cannot pause quickly must sit idle: one that pauses
    within ``QUICK_PAUSE_S`` of the next edit starting (pause points inside its step) runs in the
    gaps, and the next edit's ``SetIdle`` pauses it at once.
    """
    if stronger.rank(now) >= weaker.rank(now):
        return False
    if not stronger.idle:
        return True
    quick = 0 < weaker.pause_every_s() <= QUICK_PAUSE_S
    return not quick


def _cheap_leanest(lease: LeaseRecord) -> Tier:
    """The leanest tier of ``lease`` within ``CHEAP_SLOWDOWN`` of its current step time."""
    current = next((t for t in lease.tiers if t.name == lease.tier), None)
    if current is None or current.est_step_s <= 0:
        return current or Tier(name=lease.tier, bytes=lease.bytes)
    cheap = [t for t in lease.leaner_tiers() if 0 < t.est_step_s <= current.est_step_s * CHEAP_SLOWDOWN]
    return cheap[-1] if cheap else current


def _plan_evictions(short: int, idle: list[LeaseRecord], plan: _Plan, reason: str) -> int:
    for lease in idle:
        if short <= 0:
            break
        plan[lease.lease_id] = (lease, None, reason)
        short -= lease.bytes
    return short


def _plan_shrinks(short: int, leases: list[LeaseRecord], plan: _Plan, reason: str) -> int:
    """A leaner tier of the holder's own: the largest that covers what is missing, else its leanest."""
    for lease in leases:
        if short <= 0:
            break
        leaner = lease.leaner_tiers()
        if not leaner:
            continue
        tier = next((t for t in leaner if t.bytes <= lease.bytes - short), leaner[-1])
        plan[lease.lease_id] = (lease, tier, reason)
        short -= lease.bytes - tier.bytes
    return short


def _plan_pauses(short: int, leases: list[LeaseRecord], plan: _Plan, reason: str) -> int:
    for lease in leases:
        if short <= 0:
            break
        _, tier, _ = plan.get(lease.lease_id, (lease, None, ""))
        short -= tier.bytes if tier else lease.bytes
        plan[lease.lease_id] = (lease, None, reason)
    return short
