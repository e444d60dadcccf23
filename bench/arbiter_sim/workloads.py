"""The four apps' cost models and the seeded ConsumerBench-style mixed trace.

Device: a 16 GiB consumer GPU (RTX 4060 Ti 16 GB class), 300 MiB of CUDA context per Hearth
worker, free-memory readings that lag 1 s, 1.5 GiB used by the desktop and a browser.

Per-step costs are solo times on that GPU at each tier, in the ranges the papers report (chat
decode 25-60 ms/token for a 3B model, a Layered Diffusion Brushes edit of a few steps well under
a second, an AnimateDiff step 0.6-0.7 s when sliced or resident and ~2.5x that when offloaded,
MusicGen-medium ~12 ms/token). Leaner tiers are slower: quantized chat decodes slower, sliced video
a few per cent slower, offloaded weights much slower. ``kernel_ms`` is the typical kernel length
that sets a job's share of the GPU under contention (see ``engine.Gpu``). Reloading a model costs
its bytes at 2 GiB/s.

The trace (``make_trace``), all times in seconds of virtual time, seeded:
- chat: the app opens at 5 s (model loads), then conversations of 3-5 turns; between turns a
  person reads the answer (0.2 s a token) and types for 8-25 s, and is away 20-60 s between
  conversations; prompts of 150-1500 tokens (with the history), answers of 60-250 tokens. Targets: time to first token 1 s, time per token 0.2 s.
- brushes: the image editor opens at 110 s; a burst of 25 edits 0.8-3 s apart, each rerunning the
  last 8 denoising steps inside a mask; target 0.5 s per edit.
- video: a long background render (24 segments x 25 steps, about 6 minutes alone) at 2 s.
- music: two 30 s clips (single-shot) at 60 s and 250 s.
- a foreign program (a game or a video call) grows by 384 MiB every 10 s from 150 s, to +1.9 GiB.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from workers.arbiter.messages import Tier
from workers.arbiter.units import GiB, MiB
from workers.protocol import Priority

DEVICE_TOTAL = 16 * GiB
CONTEXT_BYTES = 300 * MiB
READING_LAG_S = 1.0
FOREIGN_START = int(1.5 * GiB)
FOREIGN_STEP = 384 * MiB
FOREIGN_STEPS = 5
LOAD_BYTES_PER_S = 2 * GiB
TTFT_TARGET_S = 1.0
TPOT_TARGET_S = 0.2
EDIT_TARGET_S = 0.5
READING_S_PER_TOKEN = 0.2
"""About 0.75 words a token read at 4 words a second."""


@dataclass(frozen=True)
class TierCost:
    """One tier of a workload: bytes held, solo seconds per step, and per prefill token (chat)."""

    name: str
    bytes: int
    step_s: float
    prefill_token_s: float = 0.0
    pause_points: int = 1
    """Points per step where it can pause for a stronger job (the video worker's denoiser blocks)."""

    def wire(self) -> Tier:
        return Tier(
            name=self.name,
            bytes=self.bytes,
            est_step_s=self.step_s,
            reload_s=self.reload_s,
            pause_every_s=self.step_s / self.pause_points,
        )

    @property
    def reload_s(self) -> float:
        return self.bytes / LOAD_BYTES_PER_S


@dataclass(frozen=True)
class Workload:
    app: str
    priority: Priority
    tiers: tuple[TierCost, ...]
    kernel_ms: float
    keep_resident: bool = False
    switch_reloads: bool = False
    """Changing tier means loading the weights again (chat re-quantizes); video just re-slices."""
    can_grow: bool = False
    """It may take a larger tier back between steps (the video worker asks with ``can_grow``)."""

    def tier(self, name: str) -> TierCost:
        return next(t for t in self.tiers if t.name == name)

    def wire(self) -> list[Tier]:
        return [t.wire() for t in self.tiers]


CHAT = Workload(
    app="chat",
    priority=Priority.interactive,
    tiers=(
        TierCost("bf16", int(6.4 * GiB), 0.030, 0.00012),
        TierCost("int8", int(3.6 * GiB), 0.055, 0.00020),
        TierCost("nf4", int(2.2 * GiB), 0.040, 0.00016),
    ),
    kernel_ms=0.05,
    keep_resident=True,
    switch_reloads=True,
)
BRUSH = Workload(
    app="image",
    priority=Priority.interactive,
    tiers=(TierCost("resident", int(2.6 * GiB), 0.030), TierCost("offloaded", int(1.1 * GiB), 0.052)),
    kernel_ms=0.4,
)
UNET_BLOCKS = 9
"""AnimateDiff's UNet: 4 down blocks, the mid block, 4 up blocks; the worker pauses before each."""
VIDEO = Workload(
    app="video",
    priority=Priority.background,
    tiers=(
        TierCost("resident", int(8.0 * GiB), 0.60, pause_points=UNET_BLOCKS),
        TierCost("sliced-2", int(5.0 * GiB), 0.63, pause_points=UNET_BLOCKS),
        TierCost("sliced-4", int(3.4 * GiB), 0.67, pause_points=UNET_BLOCKS),
        TierCost("offloaded", int(1.8 * GiB), 1.55, pause_points=UNET_BLOCKS),
    ),
    kernel_ms=2.0,
    can_grow=True,
)
MUSIC = Workload(
    app="music",
    priority=Priority.single_shot,
    tiers=(TierCost("resident", int(3.6 * GiB), 0.012), TierCost("offloaded", int(1.5 * GiB), 0.040)),
    kernel_ms=0.05,
    keep_resident=True,
)
WORKLOADS = {w.app: w for w in (CHAT, BRUSH, VIDEO, MUSIC)}


@dataclass(frozen=True)
class ChatTurn:
    think_s: float
    prompt_tokens: int
    answer_tokens: int


@dataclass(frozen=True)
class Render:
    app: str
    at: float
    steps: int
    label: str


@dataclass
class Trace:
    seed: int
    chat_open_at: float = 5.0
    chat_turns: list[ChatTurn] = field(default_factory=list)
    brush_open_at: float = 110.0
    brush_gaps: list[float] = field(default_factory=list)
    brush_steps: int = 8
    renders: list[Render] = field(default_factory=list)
    foreign_at: list[float] = field(default_factory=list)
    horizon_s: float = 900.0

    def describe(self) -> dict:
        return {
            "seed": self.seed,
            "chat_turns": len(self.chat_turns),
            "brush_edits": len(self.brush_gaps),
            "renders": [f"{r.label} at {r.at:g}s ({r.steps} steps)" for r in self.renders],
            "foreign_growth": f"+{FOREIGN_STEPS} x 384 MiB from {self.foreign_at[0]:g}s",
        }


def make_trace(seed: int = 7, quick: bool = True) -> Trace:
    rng = random.Random(seed)
    trace = Trace(seed=seed)
    conversations = 4 if quick else 8
    answer = 0
    for _ in range(conversations):
        for index in range(rng.randint(3, 5)):
            # Between turns a person reads the last answer (about 0.2 s a token) and types;
            # between conversations they are away for a while.
            typing = rng.uniform(20, 60) if index == 0 else rng.uniform(8, 25)
            think = READING_S_PER_TOKEN * answer + typing
            answer = rng.randint(60, 250)
            trace.chat_turns.append(ChatTurn(think, rng.randint(150, 1500), answer))
    trace.brush_gaps = [rng.uniform(0.8, 3.0) for _ in range(25)]
    segments = 24 if quick else 48
    trace.renders = [
        Render("video", 2.0, segments * 25, "video render"),
        Render("music", 60.0, int(30 / 0.02), "music clip 1"),
        Render("music", 250.0, int(30 / 0.02), "music clip 2"),
    ]
    trace.foreign_at = [150.0 + 10.0 * i for i in range(FOREIGN_STEPS)]
    trace.horizon_s = 900.0 if quick else 2400.0  # long enough for every render to end
    return trace
