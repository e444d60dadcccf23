"""One run of the trace under one policy: the device, the GPU, the four apps and what they saw."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.arbiter_sim.clients import ArbiterClient, Client, GreedyClient, StaticClient
from bench.arbiter_sim.engine import Gpu, Sim
from bench.arbiter_sim.workloads import (
    BRUSH,
    CHAT,
    CONTEXT_BYTES,
    DEVICE_TOTAL,
    EDIT_TARGET_S,
    FOREIGN_START,
    FOREIGN_STEP,
    READING_LAG_S,
    TPOT_TARGET_S,
    TTFT_TARGET_S,
    WORKLOADS,
    Render,
    Trace,
)
from workers.arbiter.device import SimulatedDevice
from workers.arbiter.ledger import DEFAULT_HEADROOM, Ledger
from workers.arbiter.records import RANK, Send

POLICIES = ("ours", "greedy", "static")
PREFILL_KERNEL_MS = 0.5
"""Prefill runs large GEMMs: its kernels are long, unlike decode's."""
TICK_S = 0.1
RETRY_S = 10.0
RENDER_ATTEMPTS = 3


@dataclass
class Stats:
    ooms: list[tuple[float, str, str]] = field(default_factory=list)
    chat: list[tuple[float, float, float]] = field(default_factory=list)
    """(time to first token, time per token, whole answer) per request; inf when it failed."""
    edits: list[float] = field(default_factory=list)
    renders: dict[str, float] = field(default_factory=dict)
    """label -> seconds from submission to completion (inf if it never completed)."""
    bytes_reloaded: int = 0
    overdue: int = 0
    peak_used: int = 0
    gpu_work: list[tuple[float, str, float]] = field(default_factory=list)
    """(when it finished, app, solo seconds of GPU work) for every kernel batch run."""


class World:
    """The simulated machine under one policy; ``apps`` limits which apps run (for solo runs)."""

    def __init__(self, policy: str, trace: Trace, apps: tuple[str, ...], foreign: bool = True) -> None:
        self.policy, self.trace = policy, trace
        self.sim = Sim()
        self.gpu = Gpu(self.sim)
        self.device = SimulatedDevice(
            DEVICE_TOTAL,
            context_bytes_per_process=CONTEXT_BYTES,
            reading_lag_s=READING_LAG_S,
            foreign_bytes=FOREIGN_START,
            clock=self.sim,
        )
        self.stats = Stats()
        self.foreign = foreign
        self.ledger = Ledger(self.device, clock=self.sim, lease_prefix="L") if policy == "ours" else None
        self._by_name: dict[str, Client] = {}
        self.clients = {app: self._client(app, pid) for pid, app in enumerate(apps, start=101)}

    def _client(self, app: str, pid: int) -> Client:
        workload = WORKLOADS[app]
        if self.policy == "ours":
            client = self._by_name[app] = ArbiterClient(self, workload, pid)
            return client
        self.device.track_pid(pid)  # every process holds a CUDA context, arbiter or not
        if self.policy == "greedy":
            return GreedyClient(self, workload, pid)
        share = (DEVICE_TOTAL - DEFAULT_HEADROOM - FOREIGN_START - 4 * CONTEXT_BYTES) // 4
        return StaticClient(self, workload, pid, share)

    # ----------------------------------------------------------------------- plumbing

    def send(self, client: ArbiterClient, message: object) -> None:
        self._deliver(self.ledger.handle(client.workload.app, message, pid=client.pid))

    def _deliver(self, sends: list[Send]) -> None:
        for send in sends:
            client = self._by_name.get(send.client)
            if client is not None:
                client.receive(send.message)

    def _tick(self) -> None:
        self.stats.overdue += len(self.ledger.overdue())
        self._deliver(self.ledger.tick())
        self.sim.at(self.sim.now + TICK_S, self._tick)

    def allocate(self, pid: int, nbytes: int, who: str) -> bool:
        if self.device.really_used() + nbytes > self.device.total():
            self.oom(who, "allocation past the device total")
            return False
        self.device.allocate(pid, nbytes)
        self.stats.peak_used = max(self.stats.peak_used, self.device.really_used())
        return True

    def _compute(self, app: str, work_s: float, kernel_ms: float):
        done = self.gpu.run(work_s, kernel_ms)
        done.then(lambda _: self.stats.gpu_work.append((self.sim.now, app, work_s)))
        return done

    def oom(self, who: str, why: str) -> None:
        self.stats.ooms.append((round(self.sim.now, 2), who, why))

    # ----------------------------------------------------------------------- apps

    def chat_app(self):
        client, sim = self.clients["chat"], self.sim
        yield sim.timeout(self.trace.chat_open_at)
        if (yield from client.open()) is not None:  # the chat tab opens: the model loads
            client.idle()
        for turn in self.trace.chat_turns:
            yield sim.timeout(turn.think_s)
            start = sim.now
            tier = yield from client.open()
            if tier is not None:
                yield self._compute("chat", turn.prompt_tokens * tier.prefill_token_s, PREFILL_KERNEL_MS)
            first = sim.now
            for _ in range(turn.answer_tokens - 1):
                tier = (yield from client.boundary()) if tier is not None else None
                if tier is None:
                    break
                yield self._compute("chat", tier.step_s, CHAT.kernel_ms)
            if tier is None:
                self.stats.chat.append((float("inf"), float("inf"), float("inf")))
                continue
            tpot = (sim.now - first) / max(1, turn.answer_tokens - 1)
            self.stats.chat.append((first - start, tpot, sim.now - start))
            client.idle()

    def brush_app(self):
        client, sim = self.clients["image"], self.sim
        yield sim.timeout(self.trace.brush_open_at)
        if (yield from client.open()) is not None:  # the editor opens on a project
            client.idle()
        for gap in self.trace.brush_gaps:
            yield sim.timeout(gap)
            start = sim.now
            tier = yield from client.open()
            for _ in range(self.trace.brush_steps):
                tier = (yield from client.boundary()) if tier is not None else None
                if tier is None:
                    break
                yield self._compute("image", tier.step_s, BRUSH.kernel_ms)
            self.stats.edits.append(sim.now - start if tier is not None else float("inf"))
            client.idle()

    def render_app(self, render: Render):
        client, sim = self.clients[render.app], self.sim
        yield sim.timeout(render.at)
        start = sim.now
        for _ in range(RENDER_ATTEMPTS):
            tier = yield from client.open()
            if tier is not None:
                break
            yield sim.timeout(RETRY_S)  # the person clicks render again
        for _ in range(render.steps if tier is not None else 0):
            tier = yield from client.boundary()
            if tier is None:
                break
            for point in range(tier.pause_points):  # the denoiser's blocks, a pause point before each
                if point:
                    yield from client.pause_point()
                yield self._compute(
                    render.app, tier.step_s / tier.pause_points, WORKLOADS[render.app].kernel_ms
                )
        client.close()
        self.stats.renders[render.label] = sim.now - start if tier is not None else float("inf")

    def foreign_app(self):
        for when in self.trace.foreign_at:
            yield self.sim.timeout(when - self.sim.now)
            if self.device.really_used() + FOREIGN_STEP > self.device.total():
                self.oom("foreign program", "its allocation found the device full")
            else:
                self.device.grow_foreign(FOREIGN_STEP)

    def run(self, renders: list[Render]) -> Stats:
        if self.ledger is not None:
            self.sim.at(0.0, self._tick)
        if "chat" in self.clients:
            self.sim.start(self.chat_app())
        if "image" in self.clients:
            self.sim.start(self.brush_app())
        for render in renders:
            self.sim.start(self.render_app(render))
        if self.foreign:
            self.sim.start(self.foreign_app())
        self.sim.run(self.trace.horizon_s)
        for render in renders:
            self.stats.renders.setdefault(render.label, float("inf"))
        return self.stats


def run_policy(policy: str, trace: Trace) -> Stats:
    """The whole mixed trace under ``policy``."""
    return World(policy, trace, ("chat", "image", "video", "music")).run(trace.renders)


def solo_seconds(policy: str, trace: Trace, render: Render) -> float:
    """How long ``render`` takes alone on the device under ``policy`` (no other app, no growth).

    Alone it gets all the time it needs (a static split's offloaded video outlasts the trace).
    """
    world = World(policy, replace(trace, horizon_s=trace.horizon_s * 10), (render.app,), foreign=False)
    solo = Render(render.app, 0.0, render.steps, render.label)
    return world.run([solo]).renders[render.label]


def work_conserving_bound(stats: Stats, render: Render, solo: float) -> float:
    """The best throughput ``render`` could have had in this mix under strict priority.

    The GPU never idles for nothing in the best case, and every second of GPU work that stronger
    apps did while the render ran was a second it could not run: solo / (solo + that work).
    """
    end = render.at + stats.renders[render.label]
    rank = RANK[WORKLOADS[render.app].priority]
    stronger = sum(
        work
        for when, app, work in stats.gpu_work
        if render.at <= when <= end and RANK[WORKLOADS[app].priority] < rank
    )
    return min(1.0, solo / (solo + stronger))


def slo_met(stats: Stats) -> tuple[int, int, int]:
    """(chat requests on target, edits on target, interactive requests in all)."""
    chat = sum(1 for ttft, tpot, _ in stats.chat if ttft <= TTFT_TARGET_S and tpot <= TPOT_TARGET_S)
    edits = sum(1 for latency in stats.edits if latency <= EDIT_TARGET_S)
    return chat, edits, len(stats.chat) + len(stats.edits)
