"""The ledger of VRAM leases: who holds what, who waits, whom to revoke. Pure logic.

No sockets and no real time: every method reads the injected clock, and returns the messages to
send as ``Send(client, message)``. The server does the I/O; tests drive the ledger directly.

Rules (ARCHITECTURE.md, "The arbiter"):
- budget = device total - headroom - memory used outside Hearth; grants never exceed it;
- a request whose leanest tier exceeds the budget is refused at once, with the sizes;
- otherwise it gets the largest tier that fits now, or waits, ordered by priority class then
  age, with aging so background work is never starved;
- to make room the ledger first evicts idle (keep-alive) leases, least recently used first, then
  revokes lower-priority active leases down to a leaner tier of theirs or to 0;
- released memory is re-granted only once the holder's device reading shows it gone, or once the
  reading lag window has passed;
- a holder that misses its revoke deadline is reported by ``overdue()``; the server kills that
  process (exit is the only reliable way to free VRAM) and calls ``process_killed``.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from workers.arbiter.device import DeviceView
from workers.arbiter.messages import (
    CancelRequest,
    DeviceReading,
    Granted,
    HeldLease,
    LeaseInfo,
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
    Tier,
    WaitInfo,
    Waiting,
)
from workers.arbiter.units import MiB, format_bytes
from workers.protocol import Priority

log = logging.getLogger(__name__)

DEFAULT_HEADROOM = 512 * MiB
DEFAULT_REVOKE_DEADLINE_S = 5.0
DEFAULT_AGING_S = 30.0
INTERACTIVE_STEP_S = 0.2
"""Time per token a person tolerates in chat (ConsumerBench's SLO)."""

RANK = {Priority.interactive: 0, Priority.single_shot: 1, Priority.background: 2}


class LedgerError(ValueError):
    """A client message the ledger cannot apply (unknown lease, someone else's lease)."""


@dataclass(frozen=True, slots=True)
class Send:
    """A message for the client connection ``client``."""

    client: str
    message: object


@dataclass(frozen=True, slots=True)
class Overdue:
    """A lease whose holder missed its revoke deadline: kill ``pid``."""

    lease_id: str
    client: str
    pid: int
    owner: str
    job: str


@dataclass(slots=True)
class _Client:
    owner: str
    pid: int


@dataclass(slots=True)
class _RevokeOrder:
    target_bytes: int
    deadline: float
    reason: str


@dataclass(slots=True)
class _Lease:
    lease_id: str
    client: str
    owner: str
    pid: int
    job: str
    priority: Priority
    bytes: int
    tier: str
    tiers: tuple[Tier, ...]
    granted_at: float
    idle: bool = False
    idle_since: float = 0.0
    revoke: _RevokeOrder | None = None

    @property
    def incoming(self) -> int:
        """Bytes this lease will give back once its revoke is done."""
        return self.bytes - self.revoke.target_bytes if self.revoke else 0

    def describe(self) -> str:
        return f"{self.job} ({self.owner})" if self.owner and self.owner != self.job else self.job


@dataclass(slots=True)
class _Waiter:
    request: Request
    client: str
    owner: str
    pid: int
    arrived: float
    reason: str = ""
    seq: int = 0


@dataclass(slots=True)
class _Returning:
    """Released bytes the device may still report as used (readings lag)."""

    pid: int
    bytes: int
    freed_at: float
    job: str


@dataclass(slots=True)
class _Totals:
    leased: int = 0
    returning: int = 0
    incoming: int = 0
    leases: list[_Lease] = field(default_factory=list)


class Ledger:
    """Grants, queues, revokes and refuses VRAM leases for every Hearth process on the machine."""

    def __init__(
        self,
        device: DeviceView,
        *,
        headroom: int = DEFAULT_HEADROOM,
        revoke_deadline_s: float = DEFAULT_REVOKE_DEADLINE_S,
        lag_window_s: float | None = None,
        aging_s: float = DEFAULT_AGING_S,
        clock: Callable[[], float] = time.monotonic,
        lease_prefix: str | None = None,
    ):
        self.device = device
        self.headroom = headroom
        self.revoke_deadline_s = revoke_deadline_s
        self.lag_window_s = device.reading_lag_s if lag_window_s is None else lag_window_s
        self.aging_s = aging_s
        self._clock = clock
        # A restarted arbiter must not reuse the ids that re-registering clients still hold.
        self._prefix = lease_prefix if lease_prefix is not None else f"L{secrets.token_hex(3)}-"
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._clients: dict[str, _Client] = {}
        self._leases: dict[str, _Lease] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._returning: list[_Returning] = []

    # ----------------------------------------------------------------------- budget

    def budget(self) -> int:
        """Bytes the ledger may lease in total right now."""
        return max(0, self.device.total() - self.headroom - self.device.used_outside())

    def _totals(self) -> _Totals:
        leases = list(self._leases.values())
        return _Totals(
            leased=sum(lease.bytes for lease in leases),
            returning=sum(item.bytes for item in self._returning),
            incoming=sum(lease.incoming for lease in leases),
            leases=leases,
        )

    def available(self) -> int:
        """Bytes that can be granted now: budget minus leases minus memory still returning."""
        totals = self._totals()
        return self.budget() - totals.leased - totals.returning

    # ----------------------------------------------------------------------- dispatch

    def handle(self, client: str, msg: object, pid: int = 0) -> list[Send]:
        """Apply one client message; bad ones get a ``ProtocolError`` reply, never an exception."""
        try:
            return self._dispatch(client, msg, pid)
        except LedgerError as exc:
            return [Send(client, ProtocolError(message=str(exc)))]

    def _dispatch(self, client: str, msg: object, pid: int) -> list[Send]:
        match msg:
            case Register(owner=owner, pid=reported_pid, held=held):
                return self.register(client, owner, pid or reported_pid, held)
            case Request():
                return self.request(client, msg)
            case Release(lease_id=lease_id):
                return self.release(client, lease_id)
            case SetIdle(lease_id=lease_id, idle=idle):
                return self.set_idle(client, lease_id, idle)
            case RevokeDone(lease_id=lease_id, new_bytes=new_bytes, tier=tier):
                return self.revoke_done(client, lease_id, new_bytes, tier)
            case DeviceReading():
                return self.observe(client, msg)
            case StatusQuery():
                return [Send(client, Status(snapshot=self.snapshot()))]
            case CancelRequest(request_id=request_id):
                return self.cancel(client, request_id)
        raise LedgerError(f"{type(msg).__name__} is not a message the arbiter accepts")

    # ----------------------------------------------------------------------- client messages

    def register(self, client: str, owner: str, pid: int, held: tuple[HeldLease, ...] = ()) -> list[Send]:
        """A client connected; ``held`` are leases it kept across an arbiter restart."""
        self._clients[client] = _Client(owner=owner, pid=pid)
        self.device.track_pid(pid)
        now = self._clock()
        if held:
            log.info("%s (pid %d) re-registered %d lease(s)", owner, pid, len(held))
        for item in held:
            # Memory already allocated is a fact, not a request: accept it even over budget;
            # the over-commit check below then revokes what no longer fits.
            self._leases[item.lease_id] = _Lease(
                lease_id=item.lease_id,
                client=client,
                owner=owner,
                pid=pid,
                job=item.job,
                priority=item.priority,
                bytes=max(0, item.bytes),
                tier=item.tier,
                tiers=_sorted_tiers(item.tiers),
                granted_at=now,
                idle=item.idle,
                idle_since=now,
            )
        return self._schedule()

    def request(self, client: str, request: Request) -> list[Send]:
        """Grant, queue (``Waiting``) or refuse at once (``Refused``)."""
        owner, pid = self._identity(client, request.owner)
        tiers = _sorted_tiers(request.tiers)
        refusal = self._refusal(request, tiers)
        if refusal:
            return [Send(client, Refused(request_id=request.request_id, reason=refusal))]
        if request.request_id in self._waiters:
            raise LedgerError(f"request {request.request_id!r} is already waiting")
        self._waiters[request.request_id] = _Waiter(
            request=Request(
                request_id=request.request_id,
                job=request.job,
                priority=request.priority,
                tiers=tiers,
                owner=owner,
            ),
            client=client,
            owner=owner,
            pid=pid,
            arrived=self._clock(),
            seq=next(self._seq),
        )
        return self._schedule()

    def release(self, client: str, lease_id: str) -> list[Send]:
        """The holder freed the memory; it returns to the pool once the device shows it."""
        lease = self._own_lease(client, lease_id)
        self._end_lease(lease)
        return self._schedule()

    def set_idle(self, client: str, lease_id: str, idle: bool) -> list[Send]:
        lease = self._own_lease(client, lease_id)
        lease.idle = idle
        lease.idle_since = self._clock()
        return self._schedule()

    def revoke_done(self, client: str, lease_id: str, new_bytes: int, tier: str = "") -> list[Send]:
        """The holder shrank to ``new_bytes`` (0: unloaded, the lease ends)."""
        lease = self._own_lease(client, lease_id)
        if new_bytes < 0:
            raise LedgerError(f"RevokeDone for {lease_id}: new_bytes must be >= 0, got {new_bytes}")
        if new_bytes > lease.bytes:
            raise LedgerError(
                f"RevokeDone for {lease_id}: a lease can only shrink "
                f"({format_bytes(new_bytes)} > {format_bytes(lease.bytes)}); request more instead"
            )
        if new_bytes == 0:
            self._end_lease(lease)
        else:
            self._shrink(lease, new_bytes, tier or lease.tier)
        return self._schedule()

    def cancel(self, client: str, request_id: str) -> list[Send]:
        waiter = self._waiters.get(request_id)
        # A cancel racing a grant is normal: the client releases the late grant itself.
        if waiter is not None and waiter.client == client:
            del self._waiters[request_id]
        return self._schedule()

    def observe(self, client: str, reading: DeviceReading) -> list[Send]:
        """A worker's real device reading (used by the CUDA view; ignored by the simulation)."""
        pid = self._clients[client].pid if client in self._clients else 0
        self.device.observe(pid, reading)
        return self._schedule()

    def disconnect(self, client: str) -> list[Send]:
        """The connection closed: its leases end and its requests stop waiting."""
        self._drop_client(client)
        return self._schedule()

    def _drop_client(self, client: str) -> None:
        for lease in [lease for lease in self._leases.values() if lease.client == client]:
            self._end_lease(lease)
        for request_id in [rid for rid, w in self._waiters.items() if w.client == client]:
            del self._waiters[request_id]
        gone = self._clients.pop(client, None)
        if gone and not any(c.pid == gone.pid for c in self._clients.values()):
            self.device.forget_pid(gone.pid)

    def process_killed(self, pid: int) -> list[Send]:
        """The server killed ``pid``: every lease and request of that process ends.

        Its supervisor then sees the worker die, marks its job failed and restarts it.
        """
        for client in [name for name, c in self._clients.items() if c.pid == pid]:
            self._drop_client(client)
        for lease in [lease for lease in self._leases.values() if lease.pid == pid]:
            self._end_lease(lease)
        self.device.forget_pid(pid)
        return self._schedule()

    def tick(self) -> list[Send]:
        """Call about ten times a second: returning memory, aging and device changes."""
        return self._schedule()

    def overdue(self) -> list[Overdue]:
        """Leases whose holders missed their revoke deadline (the server kills those pids)."""
        now = self._clock()
        return [
            Overdue(lease.lease_id, lease.client, lease.pid, lease.owner, lease.job)
            for lease in self._leases.values()
            if lease.revoke and now > lease.revoke.deadline
        ]

    # ----------------------------------------------------------------------- snapshot

    def snapshot(self) -> LedgerSnapshot:
        """The state the memory panel and ``hearth arbiter status`` show."""
        leases = tuple(
            LeaseInfo(
                lease_id=lease.lease_id,
                owner=lease.owner,
                pid=lease.pid,
                job=lease.job,
                priority=lease.priority,
                bytes=lease.bytes,
                tier=lease.tier,
                idle=lease.idle,
                revoking=lease.revoke is not None,
            )
            for lease in sorted(self._leases.values(), key=lambda lease: (lease.owner, lease.granted_at))
        )
        waiting = tuple(
            WaitInfo(
                request_id=w.request.request_id,
                owner=w.owner,
                job=w.request.job,
                priority=w.request.priority,
                reason=w.reason,
            )
            for w in self._queue_order()
        )
        return LedgerSnapshot(
            budget=self.budget(),
            total=self.device.total(),
            headroom=self.headroom,
            used_outside=self.device.used_outside(),
            leases=leases,
            waiting=waiting,
            returning=sum(item.bytes for item in self._returning),
            device=self.device.describe(),
        )

    # ----------------------------------------------------------------------- helpers: clients

    def _identity(self, client: str, owner: str) -> tuple[str, int]:
        known = self._clients.get(client)
        if known is None:
            known = self._clients[client] = _Client(owner=owner or client, pid=0)
        return owner or known.owner, known.pid

    def _own_lease(self, client: str, lease_id: str) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LedgerError(f"unknown lease {lease_id!r} (already released, revoked or never granted)")
        if lease.client != client:
            raise LedgerError(f"lease {lease_id!r} belongs to {lease.owner!r}, not to this connection")
        return lease

    def _refusal(self, request: Request, tiers: tuple[Tier, ...]) -> str:
        if not tiers:
            return f"{request.job}: the request lists no memory tiers"
        if any(tier.bytes <= 0 for tier in tiers):
            return f"{request.job}: every tier needs a positive size"
        if not self.device.ready():
            return ""  # no reading yet: wait for one rather than refuse on a zero-sized device
        leanest, budget = tiers[-1], self.budget()
        if leanest.bytes <= budget:
            return ""
        return (
            f"{request.job} needs at least {format_bytes(leanest.bytes)} (tier {leanest.name!r}) but "
            f"Hearth can use at most {format_bytes(budget)} on this device "
            f"({format_bytes(self.device.total())} total - {format_bytes(self.headroom)} headroom - "
            f"{format_bytes(self.device.used_outside())} used by other programs)"
        )

    # ----------------------------------------------------------------------- helpers: leases

    def _end_lease(self, lease: _Lease) -> None:
        del self._leases[lease.lease_id]
        if lease.bytes:
            self._returning.append(_Returning(lease.pid, lease.bytes, self._clock(), lease.job))

    def _shrink(self, lease: _Lease, new_bytes: int, tier: str) -> None:
        freed = lease.bytes - new_bytes
        lease.bytes, lease.tier = new_bytes, tier
        if lease.revoke and new_bytes <= lease.revoke.target_bytes:
            lease.revoke = None
        if freed:
            self._returning.append(_Returning(lease.pid, freed, self._clock(), lease.job))

    def _confirm_returns(self) -> None:
        """Drop returning memory the device shows free again, or whose lag window has passed."""
        now = self._clock()
        kept = []
        for item in self._returning:
            if now - item.freed_at >= self.lag_window_s or self._reading_shows_free(item):
                continue
            kept.append(item)
        self._returning = kept

    def _reading_shows_free(self, item: _Returning) -> bool:
        reading = self.device.process_reading(item.pid)
        if reading is None or reading.taken_at < item.freed_at:
            return False
        still_leased = sum(lease.bytes for lease in self._leases.values() if lease.pid == item.pid)
        later = sum(
            other.bytes
            for other in self._returning
            if other.pid == item.pid and other.freed_at > reading.taken_at
        )
        return reading.used <= still_leased + later

    # ----------------------------------------------------------------------- scheduling

    def _effective_rank(self, waiter: _Waiter, now: float) -> int:
        # Aging: each aging_s spent waiting lifts a request one class, so background work
        # eventually goes first and is never starved by a stream of stronger requests.
        lift = int((now - waiter.arrived) / self.aging_s) if self.aging_s > 0 else 0
        return max(0, RANK[waiter.request.priority] - lift)

    def _queue_order(self) -> list[_Waiter]:
        now = self._clock()
        return sorted(self._waiters.values(), key=lambda w: (self._effective_rank(w, now), w.arrived, w.seq))

    def _schedule(self) -> list[Send]:
        self._confirm_returns()
        out = self._reclaim_overcommit()
        queue = self._queue_order()
        for index, waiter in enumerate(queue):
            tier = self._fitting_tier(waiter)
            if tier is not None:
                out.append(self._grant(waiter, tier))
                continue
            if self.device.ready() and waiter.request.tiers[-1].bytes > self.budget():
                # Other programs grew since it queued: Hearth freeing memory cannot help it, so
                # it must not hold up the requests behind it.
                out += self._tell_waiting(waiter, self._outside_reason(waiter.request))
                continue
            # Strict order: the head reserves the next freed memory, so nobody behind it
            # (weaker or younger) can starve it by slipping into the gaps.
            out += self._make_room(waiter)
            behind = f"waiting for memory: queued behind {waiter.request.job} ({waiter.request.priority})"
            for later in queue[index + 1 :]:
                out += self._tell_waiting(later, behind)
            break
        return out

    def _fitting_tier(self, waiter: _Waiter) -> Tier | None:
        if not self.device.ready():
            return None
        available = self.available()
        return next((tier for tier in waiter.request.tiers if tier.bytes <= available), None)

    def _grant(self, waiter: _Waiter, tier: Tier) -> Send:
        request = waiter.request
        lease_id = f"{self._prefix}{next(self._ids)}"
        now = self._clock()
        self._leases[lease_id] = _Lease(
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
        )
        del self._waiters[request.request_id]
        log.info("granted %s %s to %s (%s)", format_bytes(tier.bytes), tier.name, waiter.owner, request.job)
        return Send(
            waiter.client,
            Granted(request_id=request.request_id, lease_id=lease_id, bytes=tier.bytes, tier=tier.name),
        )

    def _target_tier(self, request: Request) -> Tier:
        """The tier worth revoking others for: the leanest, or for a person waiting on every
        token, the leanest that still meets the interactive step time."""
        tiers = request.tiers
        if request.priority is Priority.interactive:
            quick = [t for t in tiers if 0 < t.est_step_s <= INTERACTIVE_STEP_S]
            if quick:
                return quick[-1]
        return tiers[-1]

    def _make_room(self, waiter: _Waiter) -> list[Send]:
        if not self.device.ready():
            return self._tell_waiting(waiter, "waiting for the first GPU memory reading from a worker")
        request = waiter.request
        totals = self._totals()
        available = self.budget() - totals.leased - totals.returning
        short = self._target_tier(request).bytes - available - totals.returning - totals.incoming
        out: list[Send] = []
        if short > 0:
            short, sent = self._evict_idle(short, f"memory needed by {request.job} ({request.priority})")
            out += sent
        if short > 0:
            weaker = [
                lease
                for lease in totals.leases
                if not lease.idle and lease.revoke is None and RANK[lease.priority] > RANK[request.priority]
            ]
            short, sent = self._revoke_active(
                short, weaker, f"memory needed by {request.job} ({request.priority})"
            )
            out += sent
        return out + self._tell_waiting(waiter, self._wait_reason(available))

    def _reclaim_overcommit(self) -> list[Send]:
        """Other programs grew (or re-registered leases exceed a new budget): take memory back."""
        totals = self._totals()
        budget = self.budget()
        # Returning memory leaves by itself; only live leases may need to shrink.
        short = totals.leased - totals.incoming - budget
        if short <= 0 or not self.device.ready():
            return []
        reason = f"Hearth's memory budget shrank to {format_bytes(budget)} (other programs use more)"
        short, out = self._evict_idle(short, reason)
        if short > 0:
            weaker = [
                lease
                for lease in totals.leases
                if not lease.idle and lease.revoke is None and lease.priority is not Priority.interactive
            ]
            short, sent = self._revoke_active(short, weaker, reason)
            out += sent
        return out

    def _evict_idle(self, short: int, reason: str) -> tuple[int, list[Send]]:
        out = []
        idle = sorted(
            (lease for lease in self._leases.values() if lease.idle and lease.revoke is None),
            key=lambda lease: lease.idle_since,
        )
        for lease in idle:
            if short <= 0:
                break
            out.append(self._order_revoke(lease, 0, "", f"idle lease evicted: {reason}"))
            short -= lease.bytes
        return short, out

    def _revoke_active(self, short: int, candidates: list[_Lease], reason: str) -> tuple[int, list[Send]]:
        out = []
        # Weakest first; among equals the youngest, which has the least work to lose.
        for lease in sorted(candidates, key=lambda lease: (-RANK[lease.priority], -lease.granted_at)):
            if short <= 0:
                break
            leaner = next(
                (t for t in lease.tiers if t.bytes < lease.bytes and t.bytes <= lease.bytes - short),
                None,
            )
            target = leaner.bytes if leaner else 0
            out.append(self._order_revoke(lease, target, leaner.name if leaner else "", reason))
            short -= lease.bytes - target
        return short, out

    def _order_revoke(self, lease: _Lease, target: int, tier: str, reason: str) -> Send:
        deadline_s = self.revoke_deadline_s
        lease.revoke = _RevokeOrder(target_bytes=target, deadline=self._clock() + deadline_s, reason=reason)
        log.info(
            "revoking %s from %s down to %s: %s", lease.lease_id, lease.owner, format_bytes(target), reason
        )
        return Send(
            lease.client,
            Revoke(
                lease_id=lease.lease_id, target_bytes=target, deadline_s=deadline_s, reason=reason, tier=tier
            ),
        )

    def _wait_reason(self, available: int) -> str:
        revoking = [lease for lease in self._leases.values() if lease.revoke]
        if revoking:
            lease = max(revoking, key=lambda lease: lease.bytes)
            return (
                f"waiting for memory: {lease.describe()} holds {format_bytes(lease.bytes)}, "
                f"releasing at next step"
            )
        if self._returning:
            returning = sum(item.bytes for item in self._returning)
            return (
                f"waiting for memory: {format_bytes(returning)} just released by "
                f"{self._returning[-1].job}, waiting for the device to show it free"
            )
        holders = [lease for lease in self._leases.values() if lease.bytes]
        if holders:
            lease = max(holders, key=lambda lease: lease.bytes)
            return (
                f"waiting for memory: {lease.describe()} ({lease.priority}) holds "
                f"{format_bytes(lease.bytes)}; {format_bytes(max(0, available))} of "
                f"{format_bytes(self.budget())} free"
            )
        return f"waiting for memory: {format_bytes(max(0, available))} of {format_bytes(self.budget())} free"

    def _outside_reason(self, request: Request) -> str:
        return (
            f"waiting for memory: {request.job} needs at least {format_bytes(request.tiers[-1].bytes)} "
            f"but other programs now use {format_bytes(self.device.used_outside())}, leaving Hearth "
            f"{format_bytes(self.budget())}"
        )

    def _tell_waiting(self, waiter: _Waiter, reason: str) -> list[Send]:
        if reason == waiter.reason:
            return []  # say it once, not ten times a second
        waiter.reason = reason
        return [Send(waiter.client, Waiting(request_id=waiter.request.request_id, reason=reason))]


def _sorted_tiers(tiers: Iterable[Tier]) -> tuple[Tier, ...]:
    """Largest (fastest) first, whatever order the client sent."""
    return tuple(sorted(tiers, key=lambda tier: -tier.bytes))
