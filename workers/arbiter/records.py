"""The ledger's own records: leases, waiting requests, memory on its way back. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.arbiter.messages import Request, Tier
from workers.arbiter.units import GiB, MiB
from workers.protocol import Priority

DEFAULT_HEADROOM = 512 * MiB
DEFAULT_REVOKE_DEADLINE_S = 5.0
DEFAULT_AGING_S = 30.0
DEFAULT_KEEP_WARM_S = 60.0
"""An idle lease unused for longer than this is stale: evicted before any active job shrinks."""
GROW_SETTLE_S = 10.0
"""A lease shrunk (or whose offer lapsed) less than this long ago is not offered memory back yet."""
INTERACTIVE_STEP_S = 0.2
"""Time per token a person tolerates in chat (ConsumerBench's SLO)."""
ASSUMED_LOAD_BYTES_PER_S = 2 * GiB
"""Reload speed assumed when a tier does not say (weights from the page cache or an NVMe disk)."""
INTERACTIVE_LINGER_S = 5.0
"""A brush edit is one of a burst: for this long after one, weaker jobs stay paused..."""
QUICK_PAUSE_S = 0.1
"""...unless they can pause within this long of the next edit starting (pause points inside a
step): then waiting idle between edits would buy the edit at most this much latency."""
RESIDENT_WEIGHT = 4.0
"""How much more a token-by-token model's warmth is worth: reloading it stalls a person mid-answer."""

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
class ClientRecord:
    owner: str
    pid: int


@dataclass(slots=True)
class RevokeOrder:
    target_bytes: int
    deadline: float
    reason: str


@dataclass(slots=True)
class GrowOrder:
    """Memory set aside for a lease's larger tier until the holder answers (or ``deadline``)."""

    target_bytes: int
    tier: str
    deadline: float


@dataclass(slots=True)
class LeaseRecord:
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
    revoke: RevokeOrder | None = None
    keep_resident: bool = False
    granted_rank: int = 0
    """The class it was granted at; stronger than its own when the request had aged."""
    protected_until: float = 0.0
    """Until then ``granted_rank`` holds: an aged grant runs one aging period before preemption."""
    throttle: tuple[bool, float] = (False, 0.0)
    """(paused, seconds to wait after each step) as last told to the holder."""
    can_grow: bool = False
    loading_until: float = float("-inf")
    """Until then the holder is copying its weights in (estimated from the tier's reload time)."""
    grow: GrowOrder | None = None
    offer_after: float = float("-inf")
    """No ``Grow`` before then: it was just shrunk (no ping-pong), or its last offer lapsed."""

    @property
    def reserved(self) -> int:
        """Bytes set aside for a pending grow, on top of ``bytes``."""
        return max(0, self.grow.target_bytes - self.bytes) if self.grow else 0

    @property
    def incoming(self) -> int:
        """Bytes this lease will give back once its revoke is done."""
        return self.bytes - self.revoke.target_bytes if self.revoke else 0

    def rank(self, now: float) -> int:
        own = RANK[self.priority]
        return min(own, self.granted_rank) if now < self.protected_until else own

    def reload_s(self) -> float:
        """Seconds to bring this lease's model back if it is evicted now."""
        tier = next((t for t in self.tiers if t.name == self.tier), None)
        return tier_reload_s(tier) if tier is not None else self.bytes / ASSUMED_LOAD_BYTES_PER_S

    def keep_value(self, now: float) -> float:
        """What keeping it warm is worth: LRU weighted by reload cost (lowest is evicted first)."""
        weight = RESIDENT_WEIGHT if self.keep_resident else 1.0
        return weight * (self.reload_s() + 1e-3) / (1.0 + max(0.0, now - self.idle_since))

    def step_s(self) -> float:
        """Declared seconds per step at the tier it runs (0 when unknown)."""
        tier = next((t for t in self.tiers if t.name == self.tier), None)
        return tier.est_step_s if tier is not None else 0.0

    def pause_every_s(self) -> float:
        """Longest run between two of its pause points at the tier it runs (0 when unknown)."""
        tier = next((t for t in self.tiers if t.name == self.tier), None)
        if tier is None:
            return 0.0
        return tier.pause_every_s or tier.est_step_s

    def leaner_tiers(self) -> list[Tier]:
        return [tier for tier in self.tiers if tier.bytes < self.bytes]

    def describe(self) -> str:
        return f"{self.job} ({self.owner})" if self.owner and self.owner != self.job else self.job


def tier_reload_s(tier: Tier) -> float:
    """Seconds to load ``tier``'s weights in: as declared, else estimated from its size."""
    return tier.reload_s if tier.reload_s > 0 else tier.bytes / ASSUMED_LOAD_BYTES_PER_S


@dataclass(slots=True)
class WaiterRecord:
    request: Request
    client: str
    owner: str
    pid: int
    arrived: float
    reason: str = ""
    seq: int = 0


@dataclass(slots=True)
class ReturningMemory:
    """Released bytes the device may still report as used (readings lag)."""

    pid: int
    bytes: int
    freed_at: float
    job: str


@dataclass(slots=True)
class Totals:
    leased: int = 0
    returning: int = 0
    incoming: int = 0
    leases: list[LeaseRecord] = field(default_factory=list)
