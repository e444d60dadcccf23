"""Image-to-image at a strength, and a tiled 2x-4x upscale made of it, on the cached pipeline's
own components (``AutoPipelineForImage2Image.from_pipe``: no second copy of any weight).

Strength follows diffusers' rule: ``int(steps * strength)`` of the schedule's last steps run, from
the init image noised to where they start. Its two ends are exact here, where diffusers' are not:
- no step to run (strength 0, or a strength too small for the step count): the init image
  through the VAE and back, which is what "keep it" means for a latent model (diffusers would
  fail on an empty schedule);
- every step (strength 1): text-to-image with the same seed at the image's size, bit for bit
  (diffusers would still leak the init image into the first, not fully noised latent, and draw
  its noise after the VAE's sample, so the same seed would give another picture).

The upscale (A1111's "SD upscale"): the init image enlarged with Lanczos, then repainted tile by
tile at the model's native size, each tile with its own seed (seed, seed+1, ...), and the tiles
cross-faded over their overlap so no seam shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.errors import BadInput

MIN_TILE_OVERLAP = 8
"""Pixels two neighbouring upscale tiles share at least (one latent cell is 8 pixels in SD)."""


def steps_run(steps: int, strength: float) -> int:
    """How many denoising steps an img2img run takes (diffusers' ``get_timesteps`` rule)."""
    return min(int(steps * strength), steps)


def load_init_image(path: str, factor: int = 1):
    """The init image as RGB, sized to multiples of 8 (times ``factor``); read as a hostile file:
    its header is checked against Hearth's pixel limit before a pixel is decoded."""
    from PIL import Image

    from workers.safe_images import image_size

    width, height = image_size(Path(path), f"init image {Path(path).name}")
    target = (_multiple_of_8(width * factor), _multiple_of_8(height * factor))
    from workers.protocol import MAX_SIDE

    if max(target) > MAX_SIDE:
        raise BadInput(
            f"init image {Path(path).name} at {width}x{height} times {factor} is over {MAX_SIDE} pixels a side",
            field="init_image",
        )
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BadInput(
            f"init image {Path(path).name} could not be decoded ({exc})", field="init_image"
        ) from None
    return rgb if rgb.size == target else rgb.resize(target, Image.Resampling.LANCZOS)


def _multiple_of_8(side: int) -> int:
    return max(8, side // 8 * 8)


def repaint(text2img, img2img, image, *, strength: float, steps: int, generator, **call):
    """``image`` repainted at ``strength`` (see the module's docstring for 0 and 1)."""
    run = steps_run(steps, strength)
    if run == 0:
        return vae_round_trip(img2img, image)
    if run == steps:
        return text2img(
            width=image.width, height=image.height, num_inference_steps=steps, generator=generator, **call
        ).images[0]
    return img2img(
        image=image, strength=strength, num_inference_steps=steps, generator=generator, **call
    ).images[0]


def vae_round_trip(pipe, image):
    """``image`` encoded to its latent (the posterior's mode, no randomness) and decoded again."""
    import torch

    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(pipe._execution_device, vae.dtype)  # (1, 3, H, W)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mode()
        decoded = vae.decode(latents).sample
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``length`` so that neighbours share at
    least ``overlap`` pixels: evenly spread, on multiples of 8, the last one flush with the end."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    return [min(span, round(i * span / (count - 1) / 8) * 8) for i in range(count)]


def tiled_upscale(image, tile: int, repaint_tile: Callable) -> Any:
    """``image`` (already enlarged) repainted tile by tile: ``repaint_tile(crop, index)`` returns
    each crop repainted at its size; overlaps are cross-faded linearly."""
    import numpy as np
    from PIL import Image

    width, height = image.size
    tile_w, tile_h = min(tile, width), min(tile, height)
    overlap = max(MIN_TILE_OVERLAP, tile // 8)
    xs, ys = tile_starts(width, tile_w, overlap), tile_starts(height, tile_h, overlap)
    total = np.zeros((height, width, 3), dtype=np.float64)
    weight = np.zeros((height, width, 1), dtype=np.float64)
    index = 0
    for y in ys:
        for x in xs:
            crop = image.crop((x, y, x + tile_w, y + tile_h))
            painted = np.asarray(repaint_tile(crop, index).convert("RGB"), dtype=np.float64)
            w = _tile_weight(
                tile_w,
                tile_h,
                overlap,
                left=x > 0,
                top=y > 0,
                right=x + tile_w < width,
                bottom=y + tile_h < height,
            )
            total[y : y + tile_h, x : x + tile_w] += painted * w
            weight[y : y + tile_h, x : x + tile_w] += w
            index += 1
    return Image.fromarray(np.clip(np.rint(total / weight), 0, 255).astype(np.uint8))


def tile_count(size: tuple[int, int], tile: int) -> int:
    width, height = size
    overlap = max(MIN_TILE_OVERLAP, tile // 8)
    return len(tile_starts(width, min(tile, width), overlap)) * len(
        tile_starts(height, min(tile, height), overlap)
    )


def _tile_weight(width: int, height: int, ramp: int, *, left: bool, top: bool, right: bool, bottom: bool):
    """(h, w, 1): 1 inside, rising linearly over ``ramp`` pixels on each side that meets another tile."""
    import numpy as np

    def axis(n: int, low: bool, high: bool):
        i = np.arange(n, dtype=np.float64) + 0.5
        w = np.ones(n)
        if low:
            w = np.minimum(w, i / ramp)
        if high:
            w = np.minimum(w, (n - i) / ramp)
        return w

    return (axis(height, top, bottom)[:, None] * axis(width, left, right)[None, :])[..., None]
