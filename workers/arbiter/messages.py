"""The arbiter's lease protocol: one file, one contract.

Commands (client -> arbiter) are imperative nouns: ``Register``, ``Request``, ``Release``,
``SetIdle``, ``RevokeDone``, ``GrowDone``, ``DeviceReading``, ``StatusQuery``, ``CancelRequest``.
Answers and orders (arbiter -> client) say what happened or what must happen: ``Granted``,
``Waiting``, ``Refused``, ``Revoke``, ``Grow``, ``Throttle``, ``Status``, ``ProtocolError``.

Every message is a frozen, slotted, keyword-only dataclass registered with ``workers.codec``,
so it travels as JSON; the arbiter never unpickles anything a client sends. The codec's envelope
carries ``PROTOCOL_VERSION``: a packaged bundle and a source checkout share one arbiter socket, and
a message from a build speaking another version is refused with a ``ProtocolError`` naming both
(its ``message`` field is the one thing every version reads). The arbiter decodes only
``ClientMessage``, a client only ``ArbiterMessage``.
"""

from __future__ import annotations

from workers.codec import frozen, message
from workers.protocol import Priority


@message
@frozen
class Tier:
    """One acceptable memory footprint for a job, e.g. fully resident, sliced, offloaded."""

    name: str
    bytes: int
    """Device memory the job holds at this tier."""
    est_step_s: float = 0.0
    """Estimated seconds per step (denoising step, token) at this tier; 0 when unknown."""
    reload_s: float = 0.0
    """Seconds to load the model back at this tier once evicted; 0: estimated from ``bytes``."""
    pause_every_s: float = 0.0
    """Longest stretch of work between two points where the job can pause for a stronger one
    (a block of the denoiser, not the whole step); 0: it pauses only between steps."""


@message
@frozen
class HeldLease:
    """A lease a client still holds, told to a restarted arbiter so nothing is lost."""

    lease_id: str
    job: str
    priority: Priority
    bytes: int
    tier: str
    tiers: tuple[Tier, ...] = ()
    idle: bool = False
    keep_resident: bool = False
    can_grow: bool = False


# --------------------------------------------------------------------------- client -> arbiter


@message
@frozen
class Register:
    """First message on a connection: who is asking, and what it already holds."""

    owner: str
    """Human name of the client, e.g. "video worker" or "hearth run image"."""
    pid: int
    held: tuple[HeldLease, ...] = ()
    """Leases granted by an earlier arbiter instance (re-registration after a restart)."""


@message
@frozen
class Request:
    """Ask for memory before allocating it. Tiers are listed fastest/largest first."""

    request_id: str
    job: str
    priority: Priority
    tiers: tuple[Tier, ...]
    owner: str = ""
    keep_resident: bool = False
    """A token-by-token model (chat, music): reloading it stalls a person mid-answer, so the
    arbiter evicts or pauses it only after everything else."""
    can_grow: bool = False
    """The job can switch to a larger tier between steps without reloading (a video render
    changing its slicing), so the arbiter offers it memory back (``Grow``) once it is free."""


@message
@frozen
class Release:
    """The holder has freed the lease's memory; the lease ends."""

    lease_id: str


@message
@frozen
class SetIdle:
    """A warm, idle lease stays cached (keep-alive) but may be evicted, least recently used first."""

    lease_id: str
    idle: bool


@message
@frozen
class RevokeDone:
    """The holder shrank to a leaner tier (or unloaded: ``new_bytes`` 0 ends the lease)."""

    lease_id: str
    new_bytes: int
    tier: str = ""


@message
@frozen
class GrowDone:
    """The holder switched to a larger tier after a ``Grow`` (or declined: ``new_bytes`` unchanged)."""

    lease_id: str
    new_bytes: int
    tier: str = ""


@message
@frozen
class DeviceReading:
    """A real device reading from a worker, e.g. from ``torch.cuda.mem_get_info``.

    ``total`` and ``free`` are for the whole device; ``used_by_hearth`` is what the reporting
    process itself holds there (``torch.cuda.memory_reserved``), so the arbiter can tell memory
    used by other programs from memory used by Hearth.
    """

    total: int
    free: int
    used_by_hearth: int


@message
@frozen
class StatusQuery:
    """Ask for a ``Status`` snapshot of the ledger."""


@message
@frozen
class CancelRequest:
    """Stop waiting for a request (its job was cancelled or timed out)."""

    request_id: str


# --------------------------------------------------------------------------- snapshot


@message
@frozen
class LeaseInfo:
    """One lease, as the memory panel shows it."""

    lease_id: str
    owner: str
    pid: int
    job: str
    priority: Priority
    bytes: int
    tier: str
    idle: bool
    revoking: bool
    throttled: bool = False


@message
@frozen
class WaitInfo:
    """One waiting request and why it waits."""

    request_id: str
    owner: str
    job: str
    priority: Priority
    reason: str


@message
@frozen
class LedgerSnapshot:
    """Everything the GUI memory panel and ``hearth arbiter status`` show."""

    budget: int
    """Bytes the arbiter may lease: total - headroom - used outside Hearth."""
    total: int
    headroom: int
    used_outside: int
    """Bytes used by other programs (and per-process contexts) that no lease covers."""
    leases: tuple[LeaseInfo, ...] = ()
    waiting: tuple[WaitInfo, ...] = ()
    returning: int = 0
    """Bytes released but not yet seen free on the device (readings lag)."""
    device: str = ""
    clients: int = 0
    """Connections the ledger knows (a check that closed ones leave nothing behind)."""


# --------------------------------------------------------------------------- arbiter -> client


@message
@frozen
class Granted:
    """The request may allocate ``bytes`` at ``tier``; the lease lasts until released or revoked."""

    request_id: str
    lease_id: str
    bytes: int
    tier: str


@message
@frozen
class Waiting:
    """The request is queued; ``reason`` is human text for the progress line."""

    request_id: str
    reason: str


@message
@frozen
class Refused:
    """Even the leanest tier can never fit this machine's budget; do not retry."""

    request_id: str
    reason: str


@message
@frozen
class Revoke:
    """Shrink to at most ``target_bytes`` at the next step boundary and answer ``RevokeDone``.

    A holder that has not answered within ``deadline_s`` seconds is killed: process exit is the
    only reliable way to give device memory back.
    """

    lease_id: str
    target_bytes: int
    deadline_s: float
    reason: str
    tier: str = ""
    """The holder's own leaner tier that fits ``target_bytes``; empty means unload entirely."""


@message
@frozen
class Grow:
    """Memory for a faster tier of the holder's own is set aside for it (it was shrunk, and the
    memory is free again): switch at the next step boundary and answer ``GrowDone``."""

    lease_id: str
    target_bytes: int
    tier: str
    reason: str = ""


@message
@frozen
class Throttle:
    """Compute contention: pause between steps while a stronger job computes (``pause``), or resume.

    Memory is not the only thing apps share: a background video's long kernels starve a chat's
    short decode kernels (ConsumerBench). A paused holder keeps its memory and waits at its next
    step boundary or pause point inside a step (``Tier.pause_every_s``), but takes one step after
    ``max_pause_s`` so it is never starved for good. With ``pause_s`` it keeps running, waiting
    that long at each of those points.
    """

    lease_id: str
    pause: bool
    reason: str = ""
    max_pause_s: float = 30.0
    pause_s: float = 0.0
    """Throttle rather than stop: wait this long after each step (0: wait until resumed). Used
    while a chat streams tokens, sized so its time per token stays within target."""


@message
@frozen
class Status:
    """Answer to ``StatusQuery``."""

    snapshot: LedgerSnapshot


@message
@frozen
class ProtocolError:
    """The arbiter could not use a message; the connection stays open where it can."""

    message: str


ClientMessage = (
    Register
    | Request
    | Release
    | SetIdle
    | RevokeDone
    | GrowDone
    | DeviceReading
    | StatusQuery
    | CancelRequest
)
"""What a client may send (the arbiter decodes nothing else)."""
ArbiterMessage = Granted | Waiting | Refused | Revoke | Grow | Throttle | Status | ProtocolError
"""What the arbiter may send (a client decodes nothing else)."""
CLIENT_MESSAGES = (
    Register,
    Request,
    Release,
    SetIdle,
    RevokeDone,
    GrowDone,
    DeviceReading,
    StatusQuery,
    CancelRequest,
)
