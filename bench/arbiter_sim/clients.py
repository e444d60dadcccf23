"""How each app gets device memory under the three policies compared.

- ``ArbiterClient``: Hearth's arbiter, the real ``workers.arbiter.ledger.Ledger`` driven by
  messages exactly as the worker runtime sends them (Request, SetIdle, RevokeDone, Release) and
  obeying its answers (Granted, Revoke at the next step boundary, Throttle between steps, idle
  revokes honoured by the 0.2 s idle poll).
- ``GreedyClient``: first come, first served. An app loads the largest tier that fits the memory
  free *now* (as llama.cpp or ComfyUI pick their offload level at load time) and keeps its model
  for a 5-minute keep-alive; an app whose leanest tier no longer fits gets out-of-memory.
- ``StaticClient``: the budget split equally between the four apps once, at start; each app uses
  the largest tier that fits its share and keeps it. Out-of-memory when the share is too small or
  when other programs grew into the device.

Every client generator yields engine events; ``open`` and ``boundary`` return the tier the app
runs at, or None when it has no memory (out-of-memory).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from bench.arbiter_sim.engine import first_of
from bench.arbiter_sim.workloads import TierCost, Workload
from workers.arbiter.messages import (
    Granted,
    Grow,
    GrowDone,
    Refused,
    Register,
    Release,
    Request,
    Revoke,
    RevokeDone,
    SetIdle,
    Throttle,
)

if TYPE_CHECKING:
    from bench.arbiter_sim.world import World

GREEDY_KEEP_ALIVE_S = 300.0
IDLE_POLL_S = 0.2
_ids = itertools.count(1)


class Client:
    """One app's memory: what it holds, and whether it loaded before (for bytes reloaded)."""

    def __init__(self, world: World, workload: Workload, pid: int) -> None:
        self.world = world
        self.workload = workload
        self.pid = pid
        self.tier: TierCost | None = None
        self._loaded_once = False

    def _load(self, tier: TierCost):
        """Allocate and read the weights in; an allocation past the device total is an OOM."""
        if not self.world.allocate(self.pid, tier.bytes, self.workload.app):
            return None
        self.tier = tier
        if self._loaded_once:
            self.world.stats.bytes_reloaded += tier.bytes
        self._loaded_once = True
        yield self.world.sim.timeout(tier.reload_s)
        return tier

    def _free(self) -> None:
        if self.tier is not None:
            self.world.device.free(self.pid, self.tier.bytes)
            self.tier = None

    def _fitting(self, space: int) -> TierCost | None:
        return next((t for t in self.workload.tiers if t.bytes <= space), None)

    def idle(self) -> None:
        """The job ended; the model stays warm."""

    def close(self) -> None:
        self._free()

    def boundary(self):
        return self.tier
        yield  # a generator that never waits

    def pause_point(self):
        """Inside a step: only a throttle can hold it here (memory in use cannot shrink mid-step)."""
        return
        yield


class GreedyClient(Client):
    def __init__(self, world: World, workload: Workload, pid: int) -> None:
        super().__init__(world, workload, pid)
        self._keep_alive = 0

    def open(self):
        self._keep_alive += 1
        if self.tier is not None:
            return self.tier
        device = self.world.device
        tier = self._fitting(device.total() - device.really_used())
        if tier is None:
            self.world.oom(self.workload.app, "no tier fits the free memory")
            return None
        return (yield from self._load(tier))

    def idle(self) -> None:
        ticket = self._keep_alive
        self.world.sim.at(self.world.sim.now + GREEDY_KEEP_ALIVE_S, lambda: self._expire(ticket))

    def _expire(self, ticket: int) -> None:
        if ticket == self._keep_alive:
            self._free()


class StaticClient(Client):
    def __init__(self, world: World, workload: Workload, pid: int, share: int) -> None:
        super().__init__(world, workload, pid)
        self.share = share

    def open(self):
        if self.tier is not None:
            return self.tier
        tier = self._fitting(self.share)
        if tier is None:
            self.world.oom(self.workload.app, "its static share is too small")
            return None
        return (yield from self._load(tier))


class ArbiterClient(Client):
    """Speaks the lease protocol to the world's ``Ledger``, like ``workers/runtime.py`` does."""

    def __init__(self, world: World, workload: Workload, pid: int) -> None:
        super().__init__(world, workload, pid)
        self.lease_id = ""
        self.idle_now = False
        self.revoke: Revoke | None = None
        self.throttle: Throttle | None = None
        self.grow: Grow | None = None
        self._grant = world.sim.event()
        self._wake = world.sim.event()
        world.send(self, Register(owner=workload.app, pid=pid))

    # messages from the ledger

    def receive(self, message: object) -> None:
        if isinstance(message, Granted | Refused):
            self._grant.fire(message)
        elif isinstance(message, Revoke) and message.lease_id == self.lease_id:
            self.revoke = message
            if self.idle_now:  # the runtime's idle poll answers within 0.2 s
                self.world.sim.at(self.world.sim.now + IDLE_POLL_S, self._honour_idle_revoke)
        elif isinstance(message, Grow) and message.lease_id == self.lease_id:
            self.grow = message
        elif isinstance(message, Throttle) and message.lease_id == self.lease_id:
            self.throttle = message if message.pause else None
        self._wake.fire()

    # what the app does

    def open(self):
        if self.lease_id:
            self.idle_now = False
            self.world.send(self, SetIdle(lease_id=self.lease_id, idle=False))
            return (yield from self.boundary())
        self._grant = self.world.sim.event()
        request = Request(
            request_id=f"r{next(_ids)}",
            job=self.workload.app,
            priority=self.workload.priority,
            tiers=tuple(self.workload.wire()),
            keep_resident=self.workload.keep_resident,
            can_grow=self.workload.can_grow,
        )
        self.world.send(self, request)
        answer = yield self._grant
        if isinstance(answer, Refused):
            self.world.oom(self.workload.app, answer.reason)
            return None
        self.lease_id, self.idle_now, self.revoke, self.throttle = answer.lease_id, False, None, None
        self.grow = None
        return (yield from self._load(self.workload.tier(answer.tier)))

    def boundary(self):
        """A step boundary: wait while throttled (bounded), then honour a revoke."""
        yield from self._wait_while_throttled()
        if self.revoke is None:
            return self._take_up_grow()
        revoke, self.revoke = self.revoke, None
        if not revoke.tier:
            self._free()
            self._answer(RevokeDone(lease_id=self.lease_id, new_bytes=0))
            self.lease_id = ""
            return (yield from self.open())  # paused until memory comes back
        leaner = self.workload.tier(revoke.tier)
        old = self.tier
        self.world.device.free(self.pid, old.bytes - leaner.bytes)
        self.tier = leaner
        self._answer(RevokeDone(lease_id=self.lease_id, new_bytes=leaner.bytes, tier=leaner.name))
        if self.workload.switch_reloads:  # re-quantizing reads the weights again
            self.world.stats.bytes_reloaded += leaner.bytes
            yield self.world.sim.timeout(leaner.reload_s)
        return self.tier

    def pause_point(self):
        yield from self._wait_while_throttled()

    def _take_up_grow(self) -> TierCost:
        """Switch to the larger tier the ledger set aside (re-slicing: no reload)."""
        grow, self.grow = self.grow, None
        if grow is None or self.tier is None:
            return self.tier
        larger = self.workload.tier(grow.tier)
        if not self.world.allocate(self.pid, larger.bytes - self.tier.bytes, self.workload.app):
            self._answer(GrowDone(lease_id=self.lease_id, new_bytes=self.tier.bytes, tier=self.tier.name))
            return self.tier
        self.tier = larger
        self._answer(GrowDone(lease_id=self.lease_id, new_bytes=larger.bytes, tier=larger.name))
        return self.tier

    def _wait_while_throttled(self):
        if self.throttle is None:
            return
        if self.throttle.pause_s > 0:  # throttled, not stopped: one step, then this wait
            yield self.world.sim.timeout(self.throttle.pause_s)
            return
        deadline = self.world.sim.now + self.throttle.max_pause_s
        while self.throttle is not None and self.revoke is None and self.world.sim.now < deadline:
            self._wake = self.world.sim.event()
            yield first_of(self.world.sim, self._wake, self.world.sim.timeout(deadline - self.world.sim.now))

    def idle(self) -> None:
        if self.lease_id:
            self.idle_now = True
            self.world.send(self, SetIdle(lease_id=self.lease_id, idle=True))
            if self.revoke is not None:
                self.world.sim.at(self.world.sim.now + IDLE_POLL_S, self._honour_idle_revoke)

    def _honour_idle_revoke(self) -> None:
        if self.idle_now and self.revoke is not None and self.lease_id:
            self.revoke = None
            self._free()
            self._answer(RevokeDone(lease_id=self.lease_id, new_bytes=0))
            self.lease_id = ""

    def close(self) -> None:
        self._free()
        if self.lease_id:
            self._answer(Release(lease_id=self.lease_id))
            self.lease_id = ""

    def _answer(self, message: object) -> None:
        self.world.send(self, message)
