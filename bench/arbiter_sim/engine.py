"""A small discrete-event engine: virtual time, generator processes, and a shared GPU.

Processes are generators that ``yield`` an ``Event`` and are resumed with its value once it
fires. Nothing here sleeps: a ten-minute trace runs in a fraction of a second.

The GPU is shared by weighted processor sharing. Concurrent jobs' kernels interleave one at a
time, so per round each job runs one kernel and a job's share of the GPU is its typical kernel
duration over the sum of everyone's: a video UNet's millisecond kernels take most of the device
from a chat's tens-of-microseconds decode kernels. That is the unfairness ConsumerBench measured
under greedy sharing; the weights are the workloads' ``kernel_ms``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator
from typing import Any

EPS = 1e-9


class Sim:
    """Virtual clock and event queue."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        """The clock, for the ledger and the simulated device."""
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), action))

    def event(self) -> Event:
        return Event(self)

    def timeout(self, delay: float, value: Any = None) -> Event:
        event = Event(self)
        self.at(self.now + max(0.0, delay), lambda: event.fire(value))
        return event

    def start(self, process: Generator) -> Event:
        """Run a generator process; the returned event fires with its return value."""
        return Process(self, process).done

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, action = heapq.heappop(self._queue)
            self.now = when
            action()
        self.now = max(self.now, until)


class Event:
    """Fires once with a value; waiting processes resume at the same virtual instant."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.fired = False
        self.value: Any = None
        self._callbacks: list[Callable[[Any], None]] = []

    def fire(self, value: Any = None) -> None:
        if self.fired:
            return
        self.fired, self.value = True, value
        for callback in self._callbacks:
            self.sim.at(self.sim.now, lambda cb=callback: cb(value))
        self._callbacks.clear()

    def then(self, callback: Callable[[Any], None]) -> None:
        if self.fired:
            self.sim.at(self.sim.now, lambda: callback(self.value))
        else:
            self._callbacks.append(callback)


def first_of(sim: Sim, *events: Event) -> Event:
    """Fires with the value of whichever event fires first."""
    out = sim.event()
    for event in events:
        event.then(out.fire)
    return out


class Process:
    def __init__(self, sim: Sim, generator: Generator) -> None:
        self.generator = generator
        self.done = sim.event()
        sim.at(sim.now, lambda: self._resume(None))

    def _resume(self, value: Any) -> None:
        try:
            event = self.generator.send(value)
        except StopIteration as stop:
            self.done.fire(stop.value)
            return
        event.then(self._resume)


class _Kernel:
    __slots__ = ("remaining", "weight", "event")

    def __init__(self, remaining: float, weight: float, event: Event) -> None:
        self.remaining, self.weight, self.event = remaining, weight, event


class Gpu:
    """Weighted processor sharing: ``run(work_s, kernel_ms)`` takes ``work_s`` when alone."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self._running: list[_Kernel] = []
        self._last = 0.0
        self._version = 0
        self.busy_s = 0.0

    def run(self, work_s: float, kernel_ms: float) -> Event:
        self._advance()
        event = self.sim.event()
        self._running.append(_Kernel(max(work_s, EPS), kernel_ms, event))
        self._plan()
        return event

    def _advance(self) -> None:
        dt = self.sim.now - self._last
        self._last = self.sim.now
        if dt <= 0 or not self._running:
            return
        self.busy_s += dt
        total = sum(k.weight for k in self._running)
        for kernel in self._running:
            kernel.remaining -= dt * kernel.weight / total

    def _plan(self) -> None:
        self._version += 1
        if not self._running:
            return
        total = sum(k.weight for k in self._running)
        delay = min(k.remaining * total / k.weight for k in self._running)
        version = self._version
        self.sim.at(self.sim.now + max(delay, 0.0), lambda: self._finish(version))

    def _finish(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done = [k for k in self._running if k.remaining <= 1e-7]
        self._running = [k for k in self._running if k.remaining > 1e-7]
        for kernel in done:
            kernel.event.fire()
        self._plan()
