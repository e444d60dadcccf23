"""Which node gets a job: each node's arbiter says what it could grant now, the best offer wins.

Pure logic, no Ray: the supervisor fetches every candidate node's ledger snapshot (through the
node's agent actor) and asks ``offer`` what that node could grant the job right now, then
``choose`` picks among the offers:

- fastest tier first (the lowest index among the job's tiers that fits), then the least queued;
- interactive work prefers the user's own machine when it can grant anything (tokens and brush
  strokes should not cross a network), background renders prefer the node with the most free
  memory (they run long and should not squeeze anyone), single-shot jobs take the general rule;
- a job whose tiers are not known yet (the first of its model) fits wherever memory is free.

Memory an idle, warm lease holds counts as free: the node's arbiter evicts idle leases on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workers.arbiter.messages import LedgerSnapshot, Tier
from workers.protocol import Priority


@dataclass(frozen=True, slots=True)
class NodeOffer:
    """What one node could do for one job now."""

    node_id: str
    name: str
    local: bool
    """The node runs on the user's machine (the supervisor's own Ray node)."""
    tier_index: int | None
    """Index of the fastest of the job's tiers the node's arbiter could grant now; None: none."""
    tier: str
    free_bytes: int
    """Budget minus active leases minus memory still returning (idle leases count as free)."""
    budget: int
    queued: int
    """Jobs that run or wait on that node now (its arbiter's waiting requests, this supervisor's jobs)."""

    @property
    def can_grant(self) -> bool:
        return self.tier_index is not None


def free_for_new_work(snapshot: LedgerSnapshot) -> int:
    """Bytes a new request could get now: unleased budget plus idle (evictable) leases."""
    active = sum(lease.bytes for lease in snapshot.leases if not lease.idle)
    idle = sum(lease.bytes for lease in snapshot.leases if lease.idle)
    return max(0, snapshot.budget - active - idle - snapshot.returning) + idle


def offer(
    node_id: str,
    name: str,
    snapshot: LedgerSnapshot,
    tiers: Sequence[Tier] | None,
    *,
    local: bool,
    running_here: int,
) -> NodeOffer:
    """The node's offer for a job with ``tiers`` (fastest first; None when not known yet)."""
    free = free_for_new_work(snapshot)
    if tiers:
        index = next((i for i, tier in enumerate(tiers) if tier.bytes <= free), None)
        tier_name = tiers[index].name if index is not None else ""
    else:
        index, tier_name = (0, "") if free > 0 else (None, "")
    return NodeOffer(
        node_id=node_id,
        name=name,
        local=local,
        tier_index=index,
        tier=tier_name,
        free_bytes=free,
        budget=snapshot.budget,
        queued=len(snapshot.waiting) + running_here,
    )


def choose(offers: Sequence[NodeOffer], priority: Priority) -> NodeOffer | None:
    """The best offer that can grant now, or None when none can (the job waits for one)."""
    grantable = [o for o in offers if o.can_grant]
    if not grantable:
        return None
    if priority is Priority.interactive:
        local = [o for o in grantable if o.local]
        if local:
            return local[0]
        return min(grantable, key=lambda o: (o.tier_index, o.queued, -o.free_bytes, o.name))
    if priority is Priority.background:
        return min(grantable, key=lambda o: (o.tier_index, -o.free_bytes, o.queued, o.local, o.name))
    return min(grantable, key=lambda o: (o.tier_index, o.queued, -o.free_bytes, not o.local, o.name))


def least_queued(offers: Sequence[NodeOffer]) -> NodeOffer | None:
    """Where to wait when no node can grant now: the shortest queue, then the largest budget."""
    if not offers:
        return None
    return min(offers, key=lambda o: (o.queued, -o.budget, not o.local, o.name))
