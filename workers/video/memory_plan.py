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
DIT_STOCK_UNITS = 6.0
"""A transformer block's peak beyond its feed-forward, in units of the token tensor (B, N, D): its
input, the modulated norm, Q, K, V and the attention output (flash/memory-efficient attention
never holds the N x N scores); the feed-forward adds 2 x its width ratio (hidden layer + GELU)."""
DIT_SLICED_UNITS = 4.0
"""What stays full size while a block runs token slice by token slice: input, output, K, V."""
UNET_FAMILIES = ("animatediff", "animatediff-sdxl")


@dataclass(frozen=True, slots=True)
class VideoShape:
    """What decides a render's activation memory."""

    family: str  # "animatediff", "animatediff-sdxl", "wan" or "ltx"
    batch: int  # 2 with classifier-free guidance when the pipeline batches it (AnimateDiff, LTX), else 1
    frames: int
    height: int
    width: int
    latent_scale: int
    base_channels: int
    vae_channels: int
    dtype_bytes: int
    weights_bytes: int
    tokens: int = 0
    """Transformers: the token sequence length N (latent frames x rows x columns after patching)."""
    ffn_ratio: float = 4.0
    """Transformers: feed-forward width / token width."""
    decode_frames: int = 1
    """Transformers: frames the VAE decodes at once (Wan: one latent frame at a time; LTX: all)."""

    @property
    def is_unet(self) -> bool:
        return self.family in UNET_FAMILIES

    @property
    def activation_unit(self) -> int:
        """One top-level UNet activation (B*F, C0, h, w), or a transformer's tokens (B, N, D)."""
        if not self.is_unet:
            return self.batch * self.tokens * self.base_channels * self.dtype_bytes
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
    from models.video import denoisers, frame_grid

    weights = sum(
        p.numel() * p.element_size()
        for m in pipe.components.values()
        if hasattr(m, "parameters")
        for p in m.parameters()
    )
    denoiser = denoisers(pipe)[0]
    config = denoiser.config
    base = getattr(config, "block_out_channels", None)
    base_channels = base[0] if base else config.num_attention_heads * config.attention_head_dim
    vae_channels = max(
        getattr(pipe.vae.config, "block_out_channels", None) or [getattr(pipe.vae.config, "base_dim", 96) * 4]
    )
    temporal, spatial = frame_grid(pipe)
    dtype_bytes = next(denoiser.parameters()).element_size()
    shape = dict(
        family=family,
        batch=2 if guidance > 1 and family != "wan" else 1,  # Wan runs its two CFG passes one by one
        frames=frames,
        height=height,
        width=width,
        latent_scale=spatial if family in UNET_FAMILIES else spatial // _patch(config),
        base_channels=base_channels,
        vae_channels=vae_channels,
        dtype_bytes=dtype_bytes,
        weights_bytes=weights,
    )
    if family in UNET_FAMILIES:
        return VideoShape(**shape)
    latent_frames = (frames - 1) // temporal + 1
    ffn = getattr(config, "ffn_dim", None)
    # A video VAE's widest layers run at low resolution; at full resolution Wan's decoder is
    # base_dim wide (96) and LTX's its first decoder block. Wan decodes causally, one latent frame
    # at a time; LTX decodes the whole clip at once.
    vae = pipe.vae.config
    full_width = (
        getattr(vae, "base_dim", None) or (getattr(vae, "decoder_block_out_channels", None) or [128])[0]
    )
    shape["vae_channels"] = int(full_width)
    return VideoShape(
        **shape,
        tokens=latent_frames * (height // spatial) * (width // spatial),
        ffn_ratio=ffn / base_channels if ffn else 4.0,  # LTX's FeedForward is 4x wide
        decode_frames=frames if family == "ltx" else 1,
    )


def _patch(config) -> int:
    patch = config.patch_size
    return int(patch[1] if isinstance(patch, list | tuple) else patch)


def estimate_bytes(shape: VideoShape, plan: VideoPlan) -> int:
    """Device bytes a render needs under ``plan``: weights + denoiser activations, or decode if larger."""
    unit = shape.activation_unit
    if not shape.is_unet:
        transients = DIT_STOCK_UNITS - DIT_SLICED_UNITS + 2 * shape.ffn_ratio  # what slicing divides
        if plan.sliced:
            activations = unit * (DIT_SLICED_UNITS + transients / plan.frame_slices)
        else:
            activations = unit * (DIT_STOCK_UNITS + 2 * shape.ffn_ratio)
    elif plan.sliced:
        slices = max(1, min(plan.frame_slices, plan.spatial_slices))
        activations = unit * (SKIP_UNITS + GROUPED_UNITS + STOCK_UNITS / slices)
    else:
        activations = unit * STOCK_UNITS
    frames = plan.decode_chunk if shape.is_unet else shape.decode_frames
    decode = shape.decode_frame_bytes * frames * (TILE_FRACTION if plan.vae_tiling else 1.0)
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
    if not shape.is_unet:
        # frame_slices counts token slices. The VAE decodes in its own way (Wan causally, one latent
        # frame at a time; LTX the whole clip), so only tiling changes its memory: decode_chunk 1.
        tokens = max(1, shape.tokens)
        resident = replace(resident, decode_chunk=1)
        sliced = replace(sliced, frame_slices=min(4, tokens), spatial_slices=1, decode_chunk=1)
        lean = replace(lean, frame_slices=min(16, tokens), spatial_slices=1, forward_chunking=False)
    return [replace(p, bytes=estimate_bytes(shape, p)) for p in (resident, sliced, lean)]


def manual_plan(shape: VideoShape, slices: int) -> VideoPlan:
    """``memory_mode = "slices:N"``: N frame slices and N spatial slices (a transformer: N token
    slices), decode two frames at a time."""
    chunk = min(2, shape.frames) if shape.is_unet else 1
    plan = VideoPlan("manual", slices, slices, decode_chunk=chunk, est_step_s=1.2)
    return replace(plan, bytes=estimate_bytes(shape, plan))


def plan_for_budget(shape: VideoShape, budget: int) -> VideoPlan:
    """The fastest plan that fits ``budget``; between sliced and lean, the fewest slices that fit."""
    candidates = plans(shape)
    if candidates[0].bytes <= budget:
        return candidates[0]
    for slices in (2, 4, 8, 16, 32, 64):
        spatial = slices if shape.is_unet else 1
        plan = replace(candidates[1], frame_slices=slices, spatial_slices=spatial, tier=f"sliced:{slices}")
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
