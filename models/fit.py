"""Will a model fit this machine? Bytes per tier from its header, and a verdict, before any load.

Each kind gets the tiers its worker offers the arbiter, fastest first: image resident, then with
only its largest part on the device (``enable_model_cpu_offload``); video resident, sliced or
tiled, then with a quarter of its weights resident (``workers/video/memory_plan.py``); chat in
bf16, int8, nf4 on transformers, or every / half / no layer on the GPU for a GGUF on llama.cpp
(``models.chat_memory.gguf_plans``, the very tiers the chat worker leases); music resident. Each
kind also has a CPU tier, which needs system memory instead.

The estimates are weights plus the activations of one step at the family's usual size; they
only have to say which side of a budget a model falls on. Weights are counted in half precision
on the device (what every diffusion front end runs on a GPU) and in fp32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum

from models.chat_memory import (
    ChatModelShape,
    GGUFFootprint,
    est_token_seconds,
    estimate_bytes,
    gguf_context,
    gguf_plans,
)

MIB = 1024**2
GIB = 1024**3
DEVICE_WEIGHT_BYTES = 2
"""fp16/bf16 on the device."""
CPU_WEIGHT_BYTES = 4
"""fp32 on the CPU, where half precision is slower, not faster."""
CPU_SLOWDOWN = 30.0
"""A diffusion step on a desktop CPU against a mid-range GPU, roughly."""
IMAGE_OFFLOAD_SLOWDOWN = 4.0
"""The image worker's offloaded tier against its resident one (0.2 s against 0.05 s a step)."""
VIDEO_OFFLOAD_SHARE = 0.25
"""Share of the weights on the device with leaf-level group offloading (memory_plan's OFFLOAD_FRACTION)."""

IMAGE_ACTIVATIONS = {
    # One denoising step plus the VAE decode at the family's native size. SD 1.x/2.x: the image
    # worker's 4 KiB per output pixel (512x512, 768x768). SDXL, SD3 and Flux at 1024x1024: about
    # 2 KiB per pixel (no attention at the full-resolution level), the peaks their users report
    # minus the weights.
    "SD1.5": 512 * 512 * 4096,
    "SD2": 768 * 768 * 4096,
    "SDXL": 1024 * 1024 * 2048,
    "SD3": 1024 * 1024 * 2048,
    "SD3.5": 1024 * 1024 * 2048,
    "Flux": 1024 * 1024 * 2048,
}
DEFAULT_IMAGE_ACTIVATIONS = 512 * 512 * 4096

VIDEO_ACTIVATIONS = {
    # (stock, sliced or tiled). Wan at 832x480, 81 frames: its README's 8.19 GB peak for the 1.3B
    # model with the text encoder on the CPU, less the weights, is about 4 GiB with a tiled decode.
    "AnimateDiff": (6 * GIB, 2 * GIB),
    "Wan 2.1": (6 * GIB, 4 * GIB),
    "Wan 2.2": (6 * GIB, 4 * GIB),
    "LTX-Video": (4 * GIB, 2 * GIB),
}
DEFAULT_VIDEO_ACTIVATIONS = (6 * GIB, 3 * GIB)
MUSIC_ACTIVATIONS = 30 * 2 * MIB
"""A 30 s window at the music worker's 2 MiB per second (KV cache and codec decode)."""
SMALL_MODEL_ACTIVATIONS = 64 * MIB
ACTIVATIONS_PER_PARAMETER = 4
"""A cap no real model reaches (SD1.5: 1 GiB for 1.07e9 parameters; AnimateDiff: 6 GiB for 1.5e9)."""
CHAT_DEVICE_QUANTS = ("bf16", "int8", "nf4")
"""The chat worker's "auto" tiers on CUDA, fastest first (workers/jobs/chat.py auto_quants)."""


class Verdict(StrEnum):
    """What a model picker shows next to a model."""

    fits = "fits"
    """Its fastest tier fits the device."""
    fits_reduced = "fits_reduced"
    """Only a sliced, quantized or offloaded tier fits the device: it runs, slower."""
    cpu_only = "cpu_only"
    """Nothing fits the device; it runs on the CPU, from system memory, much slower."""
    wont_fit = "wont_fit"
    """Not even the CPU tier fits this machine's memory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TierEstimate:
    """One way a model can be held, with what it needs."""

    name: str
    device_bytes: int
    """Device memory (0 for the CPU tier)."""
    host_bytes: int = 0
    """System memory the CPU tier needs (unused for device tiers)."""
    slowdown: float = 1.0
    """Time per step against the model's fastest tier."""
    on_cpu: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TierEstimate:
        return cls(**{key: data[key] for key in ("name", "device_bytes", "host_bytes", "slowdown", "on_cpu")})


@dataclass(frozen=True, slots=True)
class Budget:
    """What the machine can give one model: device bytes (0 without a GPU) and system memory."""

    device_bytes: int
    host_bytes: int


@dataclass(frozen=True, slots=True)
class Fit:
    """The verdict, and the tier the model would run in (the leanest one when it won't fit)."""

    verdict: Verdict
    tier: str
    needs_bytes: int
    slowdown: float


def judge(tiers: Iterable[TierEstimate], budget: Budget) -> Fit | None:
    """The verdict for ``tiers`` (fastest first); None for a part of a model, which has none."""
    tiers = list(tiers)
    if not tiers:
        return None
    device_tiers = [tier for tier in tiers if not tier.on_cpu]
    for index, tier in enumerate(device_tiers):
        if tier.device_bytes <= budget.device_bytes:
            verdict = Verdict.fits if index == 0 else Verdict.fits_reduced
            return Fit(verdict, tier.name, tier.device_bytes, tier.slowdown)
    cpu_tiers = [tier for tier in tiers if tier.on_cpu]
    for tier in cpu_tiers:
        if tier.host_bytes <= budget.host_bytes:
            return Fit(Verdict.cpu_only, tier.name, tier.host_bytes, tier.slowdown)
    leanest = (cpu_tiers or device_tiers)[-1]
    return Fit(Verdict.wont_fit, leanest.name, leanest.host_bytes or leanest.device_bytes, leanest.slowdown)


def tier_fits(tier: TierEstimate, budget: Budget) -> bool:
    return tier.host_bytes <= budget.host_bytes if tier.on_cpu else tier.device_bytes <= budget.device_bytes


# --------------------------------------------------------------------------- estimates per kind


def image_tiers(family: str, parts: Mapping[str, int]) -> tuple[TierEstimate, ...]:
    """Resident; offloaded (one part on the device at a time); CPU. ``parts``: parameters per part."""
    total, largest = sum(parts.values()), max(parts.values(), default=0)
    activations = _scaled(IMAGE_ACTIVATIONS.get(family, DEFAULT_IMAGE_ACTIVATIONS), total)
    return (
        TierEstimate(name="resident", device_bytes=total * DEVICE_WEIGHT_BYTES + activations),
        TierEstimate(
            name="offloaded",
            device_bytes=largest * DEVICE_WEIGHT_BYTES + activations,
            slowdown=IMAGE_OFFLOAD_SLOWDOWN,
        ),
        _cpu_tier(total, activations),
    )


def video_tiers(family: str, parts: Mapping[str, int]) -> tuple[TierEstimate, ...]:
    """Resident; sliced (AnimateDiff) or tiled decode (a transformer); offloaded weights; CPU."""
    weights = sum(parts.values()) * DEVICE_WEIGHT_BYTES
    stock, reduced = (
        _scaled(size, sum(parts.values()))
        for size in VIDEO_ACTIVATIONS.get(family, DEFAULT_VIDEO_ACTIVATIONS)
    )
    middle = "sliced" if family == "AnimateDiff" else "tiled"
    return (
        TierEstimate(name="resident", device_bytes=weights + stock),
        TierEstimate(name=middle, device_bytes=weights + reduced, slowdown=1.1),
        TierEstimate(
            name="offloaded", device_bytes=int(weights * VIDEO_OFFLOAD_SHARE) + reduced, slowdown=2.5
        ),
        _cpu_tier(sum(parts.values()), reduced),
    )


def music_tiers(parameters: int) -> tuple[TierEstimate, ...]:
    """Resident only, as the music worker leases it; or the CPU."""
    return (
        TierEstimate(name="resident", device_bytes=parameters * DEVICE_WEIGHT_BYTES + MUSIC_ACTIVATIONS),
        _cpu_tier(parameters, MUSIC_ACTIVATIONS),
    )


def chat_tiers(shape: ChatModelShape) -> tuple[TierEstimate, ...]:
    """A transformers chat model: the chat worker's CUDA quantizations, then fp32 on the CPU."""
    fastest = est_token_seconds(shape, CHAT_DEVICE_QUANTS[0], on_gpu=True)
    tiers = [
        TierEstimate(
            name=quant,
            device_bytes=estimate_bytes(shape, quant),
            slowdown=round(est_token_seconds(shape, quant, on_gpu=True) / fastest, 2),
        )
        for quant in CHAT_DEVICE_QUANTS
    ]
    cpu_s = est_token_seconds(shape, "fp32", on_gpu=False)
    tiers.append(
        TierEstimate(
            name="cpu",
            device_bytes=0,
            host_bytes=estimate_bytes(shape, "fp32"),
            slowdown=round(cpu_s / fastest, 1),
            on_cpu=True,
        )
    )
    return tuple(tiers)


def gguf_tiers(footprint: GGUFFootprint) -> tuple[TierEstimate, ...]:
    """A GGUF on llama.cpp: the chat worker's own plans (every layer, half, none on the GPU)."""
    n_ctx = gguf_context(footprint)
    plans = gguf_plans(footprint, n_ctx, offload=True)
    fastest = plans[0].est_step_s
    tiers = []
    for plan in plans:
        on_cpu = plan.gpu_layers == 0
        tiers.append(
            TierEstimate(
                name=plan.name,
                device_bytes=0 if on_cpu else plan.bytes,
                host_bytes=footprint.host_bytes(n_ctx) if on_cpu else 0,
                slowdown=round(plan.est_step_s / fastest, 1),
                on_cpu=on_cpu,
            )
        )
    return tuple(tiers)


def catalog_tiers(memory_bytes: Mapping[str, int]) -> tuple[TierEstimate, ...]:
    """A built-in catalog entry's own estimates (fastest first); the leanest also runs on the CPU."""
    tiers = [TierEstimate(name=name, device_bytes=size) for name, size in memory_bytes.items()]
    if tiers:
        leanest = min(memory_bytes.values())
        tiers.append(
            TierEstimate(name="cpu", device_bytes=0, host_bytes=leanest, slowdown=CPU_SLOWDOWN, on_cpu=True)
        )
    return tuple(tiers)


def _scaled(activations: int, parameters: int) -> int:
    """A family's activations, for a model far smaller than that family's real ones (a demo, a
    test model): activations grow with a model's width, so they are capped by its weights."""
    return min(activations, max(SMALL_MODEL_ACTIVATIONS, parameters * ACTIVATIONS_PER_PARAMETER))


def _cpu_tier(parameters: int, activations: int) -> TierEstimate:
    return TierEstimate(
        name="cpu",
        device_bytes=0,
        host_bytes=parameters * CPU_WEIGHT_BYTES + activations,
        slowdown=CPU_SLOWDOWN,
        on_cpu=True,
    )
