"""The memory tiers an image pipeline offers the arbiter, for every family (fastest first).

- ``resident``: every part on the device.
- ``vae_tiled``: the same, the VAE decoding in tiles (its activations at 1024^2 and above are
  the peak of a run otherwise).
- ``model_offload``: one part on the device at a time (diffusers' model CPU offload: the text
  encoders, then the denoiser for every step, then the VAE), decode tiled.
- ``group_offload``: the parts' blocks move in group by group (diffusers' group offloading
  hooks), so only a block of the denoiser need fit; several times slower per step. Not offered
  to brush edits, which a person waits on step by step.

Byte counts are the weights each tier keeps on the device plus the family's rough activation
cost per pixel (``ImageFamily.activation_bytes_per_pixel``); the arbiter needs an upper bound,
not an exact figure.
"""

from __future__ import annotations

from workers.context import MemoryTier

TILE_PIXELS = 512 * 512
"""Diffusers' VAE tiles are 512 px (SD) to 1024 px (SDXL) squares; the decode peak is one tile's."""


def image_tiers(pipe, width: int, height: int, device: str, *, interactive: bool = False) -> list[MemoryTier]:
    from models.image import image_family

    family = image_family(pipe)
    parts = {
        name: _bytes(module) for name, module in pipe.components.items() if hasattr(module, "parameters")
    }
    weights, largest = sum(parts.values()), max(parts.values(), default=0)
    denoiser = parts.get(family.denoiser, largest)
    pixels = width * height
    half = family.activation_bytes_per_pixel // 2  # about half is the denoiser's, half the decode's
    stock = pixels * family.activation_bytes_per_pixel
    tiled = pixels * half + min(pixels, TILE_PIXELS) * half
    tiers = [
        MemoryTier(
            name="resident",
            bytes=weights + stock,
            est_step_s=0.05,
            apply=lambda: _resident(pipe, device, False),
        ),
        MemoryTier(
            name="vae_tiled",
            bytes=weights + tiled,
            est_step_s=0.055,
            apply=lambda: _resident(pipe, device, True),
        ),
        MemoryTier(
            name="model_offload",
            bytes=largest + tiled,
            est_step_s=0.2,
            apply=lambda: _model_offload(pipe, device),
        ),
    ]
    if not interactive:
        blocks = max(1, len(getattr(getattr(pipe, family.denoiser), "down_blocks", ())) * 2)
        tiers.append(
            MemoryTier(
                name="group_offload",
                bytes=denoiser // blocks + tiled,
                est_step_s=1.0,
                apply=lambda: _group_offload(pipe, device),
            )
        )
    return tiers


def _bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _reset(pipe) -> None:
    """Undo whatever a previous tier installed: accelerate's offload hooks, diffusers' group offloading."""
    from diffusers.hooks import HookRegistry

    pipe.remove_all_hooks()
    for module in pipe.components.values():
        registry = getattr(module, "_diffusers_hook", None)
        if isinstance(registry, HookRegistry):
            for name in ("group_offloading", "lazy_prefetch_group_offloading"):
                if registry.get_hook(name) is not None:
                    registry.remove_hook(name, recurse=True)


def _tiling(pipe, on: bool) -> None:
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling() if on else vae.disable_tiling()


def _resident(pipe, device: str, tiled: bool) -> None:
    _reset(pipe)
    _tiling(pipe, tiled)
    pipe.to(device)


def _model_offload(pipe, device: str) -> None:
    _reset(pipe)
    _tiling(pipe, True)
    if device == "cpu":  # nothing to offload to: the CPU is where the weights live
        return
    pipe.enable_model_cpu_offload(device=device)


def _group_offload(pipe, device: str) -> None:
    import torch

    _reset(pipe)
    _tiling(pipe, True)
    if device == "cpu":
        return
    pipe.to("cpu")
    pipe.enable_group_offload(
        onload_device=torch.device(device),
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=device.startswith("cuda"),
    )
