"""Memory-driven configuration of a video render: from a byte budget to slice counts, VAE decode
chunking and weight offloading, and the tier list (fast/large -> slow/small) the arbiter grants from.

The estimates are coarse on purpose (a constant per kind of tensor, calibrated on the demo model
with ``bench/video_memory.py``); they only need to order the tiers and keep a render inside its
lease with some headroom. Sizes are in bytes.

Ours: the estimates, the tiers and the budget search. Diffusers': the levers a plan switches on
(``enable_group_offload`` of the weights, ``enable_forward_chunking`` of feed-forward layers,
``vae.enable_tiling`` and chunked ``decode_latents``); the slicing itself is ``slicer.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

STOCK_UNITS = 12.0
"""Stock UNet peak in units of one top-level activation (B*F, C0, h, w): skips (about 4) plus the
transients of a resnet on a concatenated skip (about 8)."""
SKIP_UNITS = 4.0
"""Skip connections a UNet holds at its deepest point; no slicing removes them."""
GROUPED_UNITS = 2.0
"""A group's input and its output, both full size, while the group runs slice by slice."""
DECODE_UNITS = 8.0
"""VAE decoder transients per decoded frame, in units of (C_vae_max, H, W)."""
TILE_FRACTION = 0.3
"""Share of a frame's decode memory left when the VAE decodes in tiles."""
OFFLOAD_FRACTION = 0.25
"""Share of the weights resident on the device with leaf-level group offloading."""


@dataclass(frozen=True, slots=True)
class VideoShape:
    """What decides a render's activation memory."""

    family: str  # "animatediff" or "wan"
    batch: int  # 2 with classifier-free guidance (AnimateDiff batches it), else 1
    frames: int
    height: int
    width: int
    latent_scale: int
    base_channels: int
    vae_channels: int
    dtype_bytes: int
    weights_bytes: int

    @property
    def activation_unit(self) -> int:
        """One top-level UNet activation: (B*F, C0, h, w)."""
        latent = (self.height // self.latent_scale) * (self.width // self.latent_scale)
        return self.batch * self.frames * self.base_channels * latent * self.dtype_bytes

    @property
    def decode_frame_bytes(self) -> int:
        return int(self.vae_channels * self.height * self.width * self.dtype_bytes * DECODE_UNITS)


@dataclass(frozen=True, slots=True)
class VideoPlan:
    """How one render runs. ``frame_slices == 0`` means the UNet runs unsliced (stock)."""

    tier: str
    frame_slices: int
    spatial_slices: int
    decode_chunk: int
    vae_tiling: bool = False
    offload: bool = False
    forward_chunking: bool = False
    bytes: int = 0
    est_step_s: float = 0.0

    @property
    def sliced(self) -> bool:
        return self.frame_slices > 0


def shape_of(pipe, family: str, frames: int, height: int, width: int, guidance: float) -> VideoShape:
    weights = sum(
        p.numel() * p.element_size()
        for m in pipe.components.values()
        if hasattr(m, "parameters")
        for p in m.parameters()
    )
    denoiser = pipe.unet if family == "animatediff" else pipe.transformer
    base = getattr(denoiser.config, "block_out_channels", None)
    base_channels = (
        base[0] if base else denoiser.config.num_attention_heads * denoiser.config.attention_head_dim
    )
    vae_channels = max(
        getattr(pipe.vae.config, "block_out_channels", None) or [getattr(pipe.vae.config, "base_dim", 96) * 4]
    )
    scale = getattr(pipe, "vae_scale_factor", None) or getattr(pipe, "vae_scale_factor_spatial", 8)
    dtype_bytes = next(denoiser.parameters()).element_size()
    batch = 2 if guidance > 1 and family == "animatediff" else 1
    return VideoShape(
        family=family,
        batch=batch,
        frames=frames,
        height=height,
        width=width,
        latent_scale=scale,
        base_channels=base_channels,
        vae_channels=vae_channels,
        dtype_bytes=dtype_bytes,
        weights_bytes=weights,
    )


def estimate_bytes(shape: VideoShape, plan: VideoPlan) -> int:
    """Device bytes a render needs under ``plan``: weights + denoiser activations, or decode if larger."""
    unit = shape.activation_unit
    if plan.sliced:
        slices = max(1, min(plan.frame_slices, plan.spatial_slices))
        activations = unit * (SKIP_UNITS + GROUPED_UNITS + STOCK_UNITS / slices)
    else:
        activations = unit * STOCK_UNITS
    decode = shape.decode_frame_bytes * plan.decode_chunk * (TILE_FRACTION if plan.vae_tiling else 1.0)
    weights = shape.weights_bytes * (OFFLOAD_FRACTION if plan.offload else 1.0)
    return int(weights + max(activations, decode))


def plans(shape: VideoShape) -> list[VideoPlan]:
    """Resident (stock), sliced, and lean (most slices, tiled decode, offloaded weights), fastest first."""
    rows = shape.batch * shape.frames
    latent_h = max(1, shape.height // shape.latent_scale)
    resident = VideoPlan("resident", 0, 0, decode_chunk=shape.frames, est_step_s=1.0)
    sliced = VideoPlan(
        "sliced", min(4, rows), min(4, latent_h), decode_chunk=max(1, min(4, shape.frames)), est_step_s=1.1
    )
    lean = VideoPlan(
        "lean",
        rows,
        latent_h,
        decode_chunk=1,
        vae_tiling=True,
        offload=True,
        forward_chunking=True,
        est_step_s=2.5,
    )
    if shape.family == "wan":  # the transformer is not sliced; the memory levers are decode and offload
        sliced = replace(sliced, tier="tiled", frame_slices=0, spatial_slices=0, vae_tiling=True)
        lean = replace(lean, tier="offloaded", frame_slices=0, spatial_slices=0)
    return [replace(p, bytes=estimate_bytes(shape, p)) for p in (resident, sliced, lean)]


def manual_plan(shape: VideoShape, slices: int) -> VideoPlan:
    """``memory_mode = "slices:N"``: N frame slices and N spatial slices, decode two frames at a time."""
    plan = VideoPlan("manual", slices, slices, decode_chunk=min(2, shape.frames), est_step_s=1.2)
    return replace(plan, bytes=estimate_bytes(shape, plan))


def plan_for_budget(shape: VideoShape, budget: int) -> VideoPlan:
    """The fastest plan that fits ``budget``; between sliced and lean, the fewest slices that fit."""
    candidates = plans(shape)
    if candidates[0].bytes <= budget:
        return candidates[0]
    if shape.family == "animatediff":
        for slices in (2, 4, 8, 16, 32, 64):
            plan = replace(candidates[1], frame_slices=slices, spatial_slices=slices, tier=f"sliced:{slices}")
            plan = replace(plan, bytes=estimate_bytes(shape, plan))
            if plan.bytes <= budget:
                return plan
    return next((p for p in candidates if p.bytes <= budget), candidates[-1])


def parse_memory_mode(mode: str) -> int:
    """0 for "auto", N for "slices:N"; anything else is a clear error."""
    from workers.errors import BadInput
    from workers.protocol import MAX_SLICES

    if mode == "auto":
        return 0
    prefix, _, count = mode.partition(":")
    digits = count.isascii() and count.isdigit() and len(count) <= 4  # int() refuses '²' and 4301 digits
    if prefix != "slices" or not digits or not 1 <= int(count) <= MAX_SLICES:
        raise BadInput(
            f"memory mode must be 'auto' or 'slices:N' with N from 1 to {MAX_SLICES}, got {mode!r}"
        )
    return int(count)


def tiers(
    plan_list: list[VideoPlan], apply: Callable[[VideoPlan], bool | None], pause_points: int = 1
) -> list:
    """The arbiter's tier list for ``plan_list``; each tier's ``apply`` switches the render to its plan.

    ``pause_points``: points per step where the render pauses for a stronger job
    (``workers/pause_points.py``), so the arbiter knows how soon it yields.
    """
    from workers.context import MemoryTier

    return [
        MemoryTier(
            name=p.tier,
            bytes=p.bytes,
            est_step_s=p.est_step_s,
            apply=_bind(apply, p),
            pause_every_s=p.est_step_s / max(1, pause_points),
        )
        for p in plan_list
    ]


def _bind(apply: Callable[[VideoPlan], bool | None], plan: VideoPlan) -> Callable[[], bool | None]:
    return lambda: apply(plan)


def smaller_decode(plan: VideoPlan) -> VideoPlan | None:
    """The next decode setting after an out-of-memory error: half the chunk, then tiles, then none."""
    if plan.decode_chunk > 1:
        return replace(plan, decode_chunk=math.ceil(plan.decode_chunk / 2))
    if not plan.vae_tiling:
        return replace(plan, vae_tiling=True)
    return None
