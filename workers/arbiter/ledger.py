"""The ledger of VRAM leases: who holds what, who waits, whom to revoke. Pure logic.

No sockets and no real time: every method reads the injected clock, and returns the messages to
send as ``Send(client, message)``. The server does the I/O; tests and ``bench/arbiter.py`` drive
the ledger directly.

This module keeps the books (clients, leases, waiting requests, memory on its way back) and
answers client messages; ``policy`` decides whom to grant, evict, shrink, pause or throttle.
- budget = device total - headroom - memory used outside Hearth; grants never exceed it;
- a request whose leanest tier exceeds the budget is refused at once, with the sizes;
- released memory is re-granted only once the holder's device reading shows it gone, or once the
  reading lag window has passed;
- a holder that misses its revoke deadline is reported by ``overdue()``; the server kills that
  process (exit is the only reliable way to free VRAM) and calls ``process_killed``;
- memory offered back to a shrunk render (``Grow``) counts as leased from the offer on, so it is
  never granted twice; an offer not taken up within the revoke deadline lapses.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator

from workers.arbiter.device import DeviceView
from workers.arbiter.messages import (
    CancelRequest,
    DeviceReading,
    GrowDone,
    HeldLease,
    LeaseInfo,
    LedgerSnapshot,
    ProtocolError,
    Refused,
    Register,
    Release,
    Request,
    RevokeDone,
    SetIdle,
    Status,
    StatusQuery,
    Tier,
    WaitInfo,
)
from workers.arbiter.policy import SchedulingPolicy
from workers.arbiter.records import (
    DEFAULT_AGING_S,
    DEFAULT_HEADROOM,
    DEFAULT_KEEP_WARM_S,
    DEFAULT_REVOKE_DEADLINE_S,
    GROW_SETTLE_S,
    INTERACTIVE_STEP_S,
    RANK,
    ClientRecord,
    LeaseRecord,
    LedgerError,
    Overdue,
    ReturningMemory,
    Send,
    Totals,
    WaiterRecord,
)
from workers.arbiter.units import format_bytes

__all__ = [
    "DEFAULT_AGING_S",
    "DEFAULT_HEADROOM",
    "DEFAULT_KEEP_WARM_S",
    "DEFAULT_REVOKE_DEADLINE_S",
    "GROW_SETTLE_S",
    "INTERACTIVE_STEP_S",
    "RANK",
    "Ledger",
    "LedgerError",
    "Overdue",
    "Send",
]

log = logging.getLogger(__name__)


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
        keep_warm_s: float = DEFAULT_KEEP_WARM_S,
        grow_settle_s: float = GROW_SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
        lease_prefix: str | None = None,
    ):
        self.device = device
        self.headroom = headroom
        self.revoke_deadline_s = revoke_deadline_s
        self.lag_window_s = device.reading_lag_s if lag_window_s is None else lag_window_s
        self.aging_s = aging_s
        self.keep_warm_s = keep_warm_s
        self.grow_settle_s = grow_settle_s
        self.clock = clock
        # A restarted arbiter must not reuse the ids that re-registering clients still hold.
        self.lease_prefix = lease_prefix if lease_prefix is not None else f"L{secrets.token_hex(3)}-"
        self.lease_ids: Iterator[int] = itertools.count(1)
        self._seq = itertools.count()
        self._clients: dict[str, ClientRecord] = {}
        self.leases: dict[str, LeaseRecord] = {}
        self.waiters: dict[str, WaiterRecord] = {}
        self.returning: list[ReturningMemory] = []
        self.hold_until = float("-inf")
        self.policy = SchedulingPolicy(self)

    def hold_grants(self, seconds: float) -> None:
        """Grant nothing for ``seconds``: after a crash, the clients that still hold memory need a
        moment to reconnect and re-register it, or a fresh request could be granted that memory."""
        self.hold_until = self.clock() + seconds

    # ----------------------------------------------------------------------- budget

    def budget(self) -> int:
        """Bytes the ledger may lease in total right now."""
        return max(0, self.device.total() - self.headroom - self.device.used_outside())

    def totals(self) -> Totals:
        leases = list(self.leases.values())
        return Totals(
            leased=sum(lease.bytes + lease.reserved for lease in leases),
            returning=sum(item.bytes for item in self.returning),
            incoming=sum(lease.incoming for lease in leases),
            leases=leases,
        )

    def available(self) -> int:
        """Bytes that can be granted now: budget minus leases minus memory still returning."""
        totals = self.totals()
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
            case GrowDone(lease_id=lease_id, new_bytes=new_bytes, tier=tier):
                return self.grow_done(client, lease_id, new_bytes, tier)
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
        self._clients[client] = ClientRecord(owner=owner, pid=pid)
        self.device.track_pid(pid)
        now = self.clock()
        if held:
            log.info("%s (pid %d) re-registered %d lease(s)", owner, pid, len(held))
        for item in held:
            # Memory already allocated is a fact, not a request: accept it even over budget;
            # the over-commit check below then revokes what no longer fits.
            self.leases[item.lease_id] = LeaseRecord(
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
                keep_resident=item.keep_resident,
                granted_rank=RANK[item.priority],
                can_grow=item.can_grow,
            )
        return self.policy.schedule()

    def request(self, client: str, request: Request) -> list[Send]:
        """Grant, queue (``Waiting``) or refuse at once (``Refused``)."""
        owner, pid = self._identity(client, request.owner)
        tiers = _sorted_tiers(request.tiers)
        refusal = self._refusal(request, tiers)
        if refusal:
            return [Send(client, Refused(request_id=request.request_id, reason=refusal))]
        if request.request_id in self.waiters:
            raise LedgerError(f"request {request.request_id!r} is already waiting")
        self.waiters[request.request_id] = WaiterRecord(
            request=Request(
                request_id=request.request_id,
                job=request.job,
                priority=request.priority,
                tiers=tiers,
                owner=owner,
                keep_resident=request.keep_resident,
                can_grow=request.can_grow,
            ),
            client=client,
            owner=owner,
            pid=pid,
            arrived=self.clock(),
            seq=next(self._seq),
        )
        return self.policy.schedule()

    def release(self, client: str, lease_id: str) -> list[Send]:
        """The holder freed the memory; it returns to the pool once the device shows it."""
        lease = self._own_lease(client, lease_id)
        self._end_lease(lease)
        return self.policy.schedule()

    def set_idle(self, client: str, lease_id: str, idle: bool) -> list[Send]:
        lease = self._own_lease(client, lease_id)
        lease.idle = idle
        lease.idle_since = self.clock()
        if idle:
            lease.grow = None  # its job ended: nobody will take the offer up
        return self.policy.schedule()

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
        return self.policy.schedule()

    def grow_done(self, client: str, lease_id: str, new_bytes: int, tier: str = "") -> list[Send]:
        """The holder took up a ``Grow`` (or declined it with its bytes unchanged).

        Growing past the offer, or with no offer (it lapsed while the holder switched), is taken
        as a fact, like a re-registered lease: memory allocated is not undone by refusing the
        message; the over-commit check then takes back what does not fit.
        """
        lease = self._own_lease(client, lease_id)
        largest = max([t.bytes for t in lease.tiers] + [lease.bytes])
        if not 0 < new_bytes <= largest:
            raise LedgerError(
                f"GrowDone for {lease_id}: new_bytes must be within 1..{format_bytes(largest)} "
                f"(its largest tier), got {new_bytes}"
            )
        offer, lease.grow = lease.grow, None
        if offer is None or new_bytes > offer.target_bytes:
            log.warning(
                "%s grew %s to %s without an offer covering it",
                lease.owner,
                lease_id,
                format_bytes(new_bytes),
            )
        if new_bytes < lease.bytes:
            self._shrink(lease, new_bytes, tier or lease.tier)
        else:
            lease.bytes, lease.tier = new_bytes, tier or lease.tier
        return self.policy.schedule()

    def cancel(self, client: str, request_id: str) -> list[Send]:
        waiter = self.waiters.get(request_id)
        # A cancel racing a grant is normal: the client releases the late grant itself.
        if waiter is not None and waiter.client == client:
            del self.waiters[request_id]
        return self.policy.schedule()

    def observe(self, client: str, reading: DeviceReading) -> list[Send]:
        """A worker's real device reading (used by the CUDA view; ignored by the simulation)."""
        pid = self._clients[client].pid if client in self._clients else 0
        self.device.observe(pid, reading)
        return self.policy.schedule()

    def disconnect(self, client: str) -> list[Send]:
        """The connection closed: its leases end and its requests stop waiting."""
        self._drop_client(client)
        return self.policy.schedule()

    def _drop_client(self, client: str) -> None:
        for lease in [lease for lease in self.leases.values() if lease.client == client]:
            self._end_lease(lease)
        for request_id in [rid for rid, w in self.waiters.items() if w.client == client]:
            del self.waiters[request_id]
        gone = self._clients.pop(client, None)
        if gone and not any(c.pid == gone.pid for c in self._clients.values()):
            self.device.forget_pid(gone.pid)

    def process_killed(self, pid: int) -> list[Send]:
        """The server killed ``pid``: every lease and request of that process ends.

        Its supervisor then sees the worker die, marks its job failed and restarts it.
        """
        for client in [name for name, c in self._clients.items() if c.pid == pid]:
            self._drop_client(client)
        for lease in [lease for lease in self.leases.values() if lease.pid == pid]:
            self._end_lease(lease)
        self.device.forget_pid(pid)
        return self.policy.schedule()

    def tick(self) -> list[Send]:
        """Call about ten times a second: returning memory, aging and device changes."""
        return self.policy.schedule()

    def overdue(self) -> list[Overdue]:
        """Leases whose holders missed their revoke deadline (the server kills those pids)."""
        now = self.clock()
        return [
            Overdue(lease.lease_id, lease.client, lease.pid, lease.owner, lease.job)
            for lease in self.leases.values()
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
                throttled=lease.throttle[0],
            )
            for lease in sorted(self.leases.values(), key=lambda lease: (lease.owner, lease.granted_at))
        )
        waiting = tuple(
            WaitInfo(
                request_id=w.request.request_id,
                owner=w.owner,
                job=w.request.job,
                priority=w.request.priority,
                reason=w.reason,
            )
            for w in self.policy.queue_order()
        )
        return LedgerSnapshot(
            budget=self.budget(),
            total=self.device.total(),
            headroom=self.headroom,
            used_outside=self.device.used_outside(),
            leases=leases,
            waiting=waiting,
            returning=sum(item.bytes for item in self.returning),
            device=self.device.describe(),
            clients=len(self._clients),
        )

    # ----------------------------------------------------------------------- helpers: clients

    def _identity(self, client: str, owner: str) -> tuple[str, int]:
        known = self._clients.get(client)
        if known is None:
            known = self._clients[client] = ClientRecord(owner=owner or client, pid=0)
        return owner or known.owner, known.pid

    def _own_lease(self, client: str, lease_id: str) -> LeaseRecord:
        lease = self.leases.get(lease_id)
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

    def _end_lease(self, lease: LeaseRecord) -> None:
        del self.leases[lease.lease_id]
        if lease.bytes:
            self.returning.append(ReturningMemory(lease.pid, lease.bytes, self.clock(), lease.job))

    def _shrink(self, lease: LeaseRecord, new_bytes: int, tier: str) -> None:
        freed = lease.bytes - new_bytes
        lease.bytes, lease.tier = new_bytes, tier
        lease.offer_after = self.clock() + self.grow_settle_s
        if lease.revoke and new_bytes <= lease.revoke.target_bytes:
            lease.revoke = None
        if freed:
            self.returning.append(ReturningMemory(lease.pid, freed, self.clock(), lease.job))

    def confirm_returns(self) -> None:
        """Drop returning memory the device shows free again, or whose lag window has passed.

        A reading taken after the release that still shows the memory held (PyTorch kept it
        cached) outweighs the lag window, up to a revoke deadline more: the memory is not free.
        """
        now = self.clock()
        kept = []
        for item in self.returning:
            waited = now - item.freed_at
            shown = self._reading_shows_free(item)
            if shown or (waited >= self.lag_window_s and shown is None):
                continue
            if waited >= self.lag_window_s + self.revoke_deadline_s:
                log.warning("%s freed memory the device still shows in use; trusting the holder", item.job)
                continue
            kept.append(item)
        self.returning = kept

    def _reading_shows_free(self, item: ReturningMemory) -> bool | None:
        """True/False from a reading taken after the release; None when there is none yet."""
        reading = self.device.process_reading(item.pid)
        if reading is None or reading.taken_at < item.freed_at:
            return None
        still_leased = sum(lease.bytes for lease in self.leases.values() if lease.pid == item.pid)
        later = sum(
            other.bytes
            for other in self.returning
            if other.pid == item.pid and other.freed_at > reading.taken_at
        )
        return reading.used <= still_leased + later


def _sorted_tiers(tiers: Iterable[Tier]) -> tuple[Tier, ...]:
    """Largest (fastest) first, whatever order the client sent."""
    return tuple(sorted(tiers, key=lambda tier: -tier.bytes))
