"""Never lose a long render: the final latents are checkpointed (atomically, safetensors) before the
VAE decode, and a decode that runs out of memory retries with smaller chunks, then tiles, resuming
from the checkpoint rather than from the first denoising step.

VAE slicing (frames per ``vae.decode`` call) and tiling are diffusers' own; the checkpoint, the
retry ladder and resuming from the file are ours.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path

from workers.atomic import atomic_path
from workers.errors import OutOfMemory
from workers.paths import data_dir
from workers.safe_names import path_inside, safe_name
from workers.video.memory_plan import VideoPlan, smaller_decode


def checkpoint_path(job_id: str) -> Path:
    """Where a render's latents wait for the decode; ``workers.leftovers`` clears orphans."""
    folder = data_dir() / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return path_inside(folder, f"video-{safe_name('job id', job_id)}.safetensors")


def save_checkpoint(latents, path: Path, info: dict | None = None) -> Path:
    """Write the latents (B, C, F, h, w) atomically; ``info`` (generation parameters) goes in the header."""
    from safetensors.torch import save_file

    metadata = {"hearth": json.dumps(info or {}, default=str)}
    with atomic_path(path) as tmp:
        save_file({"latents": latents.detach().contiguous().cpu()}, str(tmp), metadata=metadata)
    return path


def load_checkpoint(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path))["latents"]


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's 'can't allocate'."""
    torch = sys.modules.get("torch")
    oom_type = getattr(torch, "OutOfMemoryError", None) if torch else None
    if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def decode_with_checkpoint(
    pipe,
    family: str,
    latents,
    plan: VideoPlan,
    checkpoint: Path,
    info: dict | None = None,
    on_status: Callable[[str], None] = lambda _: None,
):
    """Checkpoint ``latents``, then decode to uint8 frames (F, H, W, 3); returns (frames, plan used).

    On an out-of-memory error the in-memory latents are dropped, the decode settings shrink
    (``smaller_decode``) and the latents are read back from the checkpoint.
    """
    save_checkpoint(latents, checkpoint, info)
    while True:
        try:
            return decode_frames(pipe, family, latents, plan), plan
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            smaller = smaller_decode(plan)
            if smaller is None:
                raise OutOfMemory(
                    f"the VAE decode does not fit even one tiled frame at a time; the render is "
                    f"kept at {checkpoint}; free memory and decode it again"
                ) from None
            on_status(f"decode ran out of memory; retrying {describe_decode(smaller)} from the checkpoint")
            latents = None
            _free_memory()
            latents, plan = load_checkpoint(checkpoint), smaller


def describe_decode(plan: VideoPlan) -> str:
    tiles = ", in tiles" if plan.vae_tiling else ""
    return f"{plan.decode_chunk} frame(s) at a time{tiles}"


def decode_frames(pipe, family: str, latents, plan: VideoPlan):
    """VAE decode under ``plan`` -> uint8 numpy frames (F, H, W, 3) of the first video.

    ``latents``: (B, C, F, h, w) for every family (LTX's packed tokens are unpacked before)."""
    import numpy as np
    import torch

    vae = pipe.vae
    if plan.vae_tiling:
        vae.enable_tiling()
    try:
        with torch.no_grad():
            if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
                vae.to(torch.float32)  # SDXL's VAE overflows in fp16 (black frames)
            latents = latents.to(device=vae.device, dtype=vae.dtype)
            if family == "wan":
                video = _decode_wan(vae, latents)
            elif family == "ltx":
                video = _decode_ltx(pipe, latents)
            else:
                video = _decode_sd(vae, latents, plan.decode_chunk)
        frames = pipe.video_processor.postprocess_video(video=video.float().cpu(), output_type="np")[0]
    finally:
        if plan.vae_tiling:
            vae.disable_tiling()
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def _decode_sd(vae, latents, chunk: int):
    """AnimateDiff (SD1.5 or SDXL VAE): ``chunk`` frames per ``vae.decode`` call, as diffusers'
    ``AnimateDiffPipeline.decode_latents`` does (the SDXL pipeline has no chunking of its own)."""
    import torch

    batch, channels, frames, height, width = latents.shape
    flat = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).reshape(-1, channels, height, width)
    images = torch.cat(
        [vae.decode(flat[i : i + chunk]).sample for i in range(0, flat.shape[0], max(1, chunk))]
    )
    return images.reshape(batch, frames, *images.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, 3, F, H, W)


def _decode_wan(vae, latents):
    """What ``WanPipeline`` does after its loop: undo the latent normalisation, decode causally."""
    import torch

    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(
        latents.device, latents.dtype
    )
    return vae.decode(latents / inv_std + mean, return_dict=False)[0]


def _decode_ltx(pipe, latents):
    """What ``LTXPipeline`` does after its loop with its default decode timestep (0: no added noise)."""
    import torch

    vae = pipe.vae
    latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    timestep = None
    if vae.config.timestep_conditioning:
        timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    return vae.decode(latents, timestep, return_dict=False)[0]


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
