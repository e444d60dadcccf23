"""Rendering layers from a cached trajectory (the Layered Diffusion Brushes algorithm).

For a schedule of N steps (DDIM, or the flow-matching Euler ODE for SD3/Flux: ``schedule.py``)
whose latents z[0] = z_T .. z[N] = z_0 are cached:

1. Branch, per layer: take the ORIGINAL z[n] (n = the layer's regeneration step), re-noise it
   inside the feathered mask m with eps from the layer's seed and s its strength (DDIM:
   ``sqrt(1 - s^2) z + s eps``, a variance-preserving mix; flow matching: the same mix applied
   to the trajectory's noise end and carried to sigma_n, ``schedule.FlowSchedule.renoise``; s = 1
   is fresh noise and s = 0 keeps the latent), then denoise steps n .. N-3 with the layer's
   prompt: N-2-n denoiser (UNet or transformer) calls. The result is cached
   under the layer's ``branch_key``; changing only opacity or visibility reruns nothing.
2. Merge at step N-2 (as in the paper): starting from the original z[N-2], each visible layer,
   bottom to top, is blended in with ``lerp(composite, branch, opacity * m)`` (see ``layers``).
3. Finish: the last 2 steps run on the composite with the base prompt. After each step, latents
   outside the union of visible masks are put back to the original trajectory, so they end
   bit-identical to the base image's z_0.
4. Decode, and blend the decoded pixels with the base image by the feathered image-resolution
   mask: the VAE decoder would otherwise shift every pixel a little.

An edit of one layer therefore costs (N-2-n) + 2 = N-n UNet calls, never the whole trajectory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from workers.brushes.layers import Layer, visible_stack
from workers.brushes.trajectory import Trajectory, brush_scheduler, decode, denoise_step, encode_prompt
from workers.protocol import BRUSH_MERGE_STEPS

BRANCH_CACHE_SIZE = 64
COMPOSITE_CACHE_SIZE = 8
MASK_FLOOR = 1 / 255
"""Feathered mask values below one 8-bit level count as outside: keeps the feather's reach finite."""

RenderStep = Callable[[int, int, Any], None]
"""on_step(step, total, preview PIL image or None) after every UNet call."""


@dataclass
class RenderResult:
    latents: Any
    """(1, C, h, w) final composite latent z_0."""
    image: Any
    """PIL RGB image at the base image's size."""
    unet_calls: int


@dataclass
class BrushSession:
    """A base image, its cached trajectory and the per-layer results, kept warm between edits."""

    session_id: str
    pipe: Any
    trajectory: Trajectory
    base_image: Any
    prompt: str
    negative_prompt: str = ""
    model: str = "demo-sd"
    latest_revision: int = -1
    branches: OrderedDict = field(default_factory=OrderedDict)
    composites: OrderedDict = field(default_factory=OrderedDict)
    _embeds: dict = field(default_factory=dict)
    _scheduler: Any = None

    @property
    def steps(self) -> int:
        return self.trajectory.steps

    @property
    def merge_step(self) -> int:
        return self.steps - BRUSH_MERGE_STEPS

    @property
    def scheduler(self):
        if self._scheduler is None:
            latent_size = tuple(self.trajectory.latents.shape[-2:])
            self._scheduler = brush_scheduler(self.pipe, self.steps, latent_size)
        return self._scheduler

    def render(
        self, layers: list[Layer] | tuple[Layer, ...], on_step: RenderStep | None = None
    ) -> RenderResult:
        """The composite of ``layers``; only layers whose branch is not cached run the UNet."""
        stack = visible_stack(layers)
        if not stack:
            return RenderResult(self.trajectory.latents[-1:].clone(), self.base_image.copy(), 0)
        key = tuple((layer.branch_key(), layer.opacity) for layer in stack)
        if key in self.composites:
            self.composites.move_to_end(key)
            latents, image = self.composites[key]
            return RenderResult(latents.clone(), image.copy(), 0)
        progress = _Progress(on_step, self._unet_calls_needed(stack))
        masks = [self.latent_mask(layer) for layer in stack]
        branches = [self._branch(layer, mask, progress) for layer, mask in zip(stack, masks, strict=True)]
        latents = self._finish(stack, masks, branches, progress)
        image = self._decode_over_base(stack, latents)
        _remember(self.composites, key, (latents, image), COMPOSITE_CACHE_SIZE)
        return RenderResult(latents.clone(), image.copy(), progress.done)

    def _unet_calls_needed(self, stack: list[Layer]) -> int:
        branches = {layer.branch_key(): self.merge_step - layer.regen_step for layer in stack}
        return sum(n for key, n in branches.items() if key not in self.branches) + BRUSH_MERGE_STEPS

    # -- 1. branch ------------------------------------------------------------------------

    def _branch(self, layer: Layer, mask, progress: _Progress):
        key = layer.branch_key()
        if key in self.branches:
            self.branches.move_to_end(key)
            return self.branches[key]
        import torch

        z = self.trajectory.latents[layer.regen_step : layer.regen_step + 1]  # (1, C, h, w)
        generator = torch.Generator("cpu").manual_seed(layer.seed)
        noise = torch.randn(z.shape, generator=generator)
        first = self.trajectory.latents[:1]  # the trajectory's noise end (flow matching re-noises along it)
        mixed = self.scheduler.renoise(layer.regen_step, z, first, noise, float(layer.strength))
        z = torch.where(mask > 0, torch.lerp(z, mixed, mask), z)
        conditioning = self._conditioning(layer.prompt or self.prompt)
        for k in range(layer.regen_step, self.merge_step):
            z = denoise_step(self.pipe, self.scheduler, z, k, conditioning, self.trajectory.guidance)
            progress.advance(partial(region_preview, z, mask, self.family))
        _remember(self.branches, key, z, BRANCH_CACHE_SIZE)
        return z

    @property
    def family(self):
        from models.image import image_family

        return image_family(self.pipe)

    def _conditioning(self, prompt: str):
        if prompt == self.prompt:
            return self.trajectory.conditioning
        if prompt not in self._embeds:
            self._embeds[prompt] = encode_prompt(
                self.pipe, prompt, self.negative_prompt, self.trajectory.guidance
            )
        return self._embeds[prompt]

    # -- 2. merge and 3. finish -----------------------------------------------------------

    def _finish(self, stack: list[Layer], masks: list, branches: list, progress: _Progress):
        import torch

        original = self.trajectory.latents
        composite = original[self.merge_step : self.merge_step + 1].clone()
        union = torch.zeros_like(masks[0], dtype=torch.bool)
        for layer, mask, branch in zip(stack, masks, branches, strict=True):
            weight = mask * float(layer.opacity)
            composite = torch.where(weight > 0, torch.lerp(composite, branch, weight), composite)
            union |= weight > 0
        preview_mask = union.float()
        for k in range(self.merge_step, self.steps):
            stepped = denoise_step(
                self.pipe,
                self.scheduler,
                composite,
                k,
                self.trajectory.conditioning,
                self.trajectory.guidance,
            )
            composite = torch.where(union, stepped, original[k + 1 : k + 2])
            progress.advance(partial(region_preview, composite, preview_mask, self.family))
        return composite

    # -- 4. decode ------------------------------------------------------------------------

    def _decode_over_base(self, stack: list[Layer], latents):
        import numpy as np
        from PIL import Image

        decoded = np.asarray(decode(self.pipe, latents), dtype=np.float32)
        base = np.asarray(self.base_image.convert("RGB"), dtype=np.float32)
        weight = np.zeros(base.shape[:2], dtype=np.float32)
        for layer in stack:
            weight = np.maximum(weight, feathered_mask(layer).numpy() * float(layer.opacity))
        blended = np.where(weight[..., None] > 0, base + weight[..., None] * (decoded - base), base)
        return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))

    # -- masks ----------------------------------------------------------------------------

    def latent_mask(self, layer: Layer):
        """(1, 1, h, w) float32: the feathered mask, area-averaged down to latent resolution."""
        import torch.nn.functional as F  # noqa: N812

        h, w = self.trajectory.latents.shape[-2:]
        mask = feathered_mask(layer)[None, None]
        factor = mask.shape[-1] // w
        mask = F.avg_pool2d(mask, factor) if factor > 1 else mask
        if mask.shape[-2:] != (h, w):
            mask = F.interpolate(mask, size=(h, w), mode="area")
        return mask.where(mask >= MASK_FLOOR, 0.0)


def feathered_mask(layer: Layer):
    """(H, W) float32 torch tensor: the mask blurred by a Gaussian of radius ``feather`` (image pixels)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    mask = torch.from_numpy(layer.mask.astype("float32"))
    sigma = float(layer.feather)
    if sigma <= 0:
        return mask
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(mask[None, None], kernel.view(1, 1, 1, -1), padding=(0, radius))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(radius, 0))[0, 0]
    # The blur softens the edge outward but never weakens what was painted.
    blurred = torch.maximum(blurred, mask)
    return blurred.where(blurred >= MASK_FLOOR, 0.0).clamp(0, 1)


def region_preview(latents, mask=None, family=None):
    """A cheap RGBA preview (no VAE decode) of the latents; outside ``mask`` it is transparent.

    Full-frame rather than cropped, so the editor can lay it exactly over the image. ``family``
    (``models.image_families``) gives the latent -> RGB fit; SD 1.x's when not given.
    """
    import torch
    from PIL import Image

    from models.image_families import SD15
    from workers.latent_preview import latent_rgb

    rgb = latent_rgb(latents, family or SD15)
    alpha = torch.full(rgb.shape[:2], 255, dtype=torch.uint8)
    if mask is not None:
        alpha = torch.where(mask[0, 0] > 0, alpha, 0)
    image = Image.fromarray(torch.cat([rgb, alpha[..., None]], dim=-1).numpy(), mode="RGBA")
    return image.resize((image.width * 4, image.height * 4), Image.NEAREST)


class _Progress:
    def __init__(self, on_step: RenderStep | None, total: int) -> None:
        self.on_step, self.total, self.done = on_step, total, 0

    def advance(self, preview: Callable[[], Any]) -> None:
        self.done += 1
        if self.on_step:
            self.on_step(self.done, self.total, preview())


def _remember(cache: OrderedDict, key, value, capacity: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > capacity:
        cache.popitem(last=False)
