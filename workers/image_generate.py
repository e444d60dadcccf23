"""One image job on a loaded pipeline: each image of the batch from its own seed, text-to-image or
image-to-image (optionally a tiled upscale), with the request's sampler and LoRAs, a preview at
every step, and every image saved with its parameters as soon as it is done.

Image ``i`` of a batch uses seed ``seed + i`` and is exactly the image a single job with that seed
gives, so each PNG records its own seed with a batch count of 1: "use these settings" on any of
them makes that image again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from workers.context import JobContext
from workers.outputs import request_parameters, save_png, write_sidecar
from workers.protocol import SEED_MAX, ImageRequest


def batch_paths(first: Path, count: int) -> list[Path]:
    """Where each image of a batch goes: the job's path, then ``NAME-2.png``, ``NAME-3.png``..."""
    return [first] + [first.with_name(f"{first.stem}-{i + 1}{first.suffix}") for i in range(1, count)]


def batch_seed(seed: int, index: int) -> int:
    return (seed + index) % (SEED_MAX + 1)


def native_tile(pipe) -> int:
    """The side, in pixels, the model was trained at (SD 1.x 512, SDXL/SD3/Flux 1024, the demo model
    64): upscale tiles. SD3 and Flux have a transformer, not a UNet; their pipelines know the size."""
    unet = getattr(pipe, "unet", None)
    latent = unet.config.sample_size if unet is not None else getattr(pipe, "default_sample_size", 128)
    return int(latent) * int(pipe.vae_scale_factor)


def generate_images(
    ctx: JobContext, pipe, request: ImageRequest, first: Path, init, preview: Callable, loras=()
) -> None:
    """Run ``request`` on ``pipe``; ``init``: the loaded init image (already at the output size) or
    None; ``loras``: the request's LoRAs as ``image_lora.resolve_loras`` checked them."""
    from workers.image_lora import applied_loras

    job = _ImageJob(ctx, pipe, request, init, preview)
    try:
        with applied_loras(job.text2img, loras):
            for index, path in enumerate(batch_paths(first, request.batch_count)):
                job.make(index, path)
    finally:
        # The views hold no offload hooks of their own: put the cached pipeline's modules back
        # where its model CPU offload wants them (what diffusers does at the end of every call).
        pipe.maybe_free_model_hooks()


class _ImageJob:
    """The views, step accounting and call arguments shared by every image of one request."""

    def __init__(self, ctx: JobContext, pipe, request: ImageRequest, init, preview: Callable) -> None:
        from workers.image_samplers import job_pipelines
        from workers.img2img import steps_run, tile_count

        self.ctx, self.request, self.init, self.preview = ctx, request, init, preview
        self.text2img, self.img2img = job_pipelines(pipe, request.sampler, img2img=init is not None)
        self.tile = native_tile(pipe)
        self.upscaling = init is not None and request.upscale > 1
        self.run = steps_run(request.steps, request.strength) if init is not None else request.steps
        self.units = tile_count(init.size, self.tile) if self.upscaling else 1  # repaints per image
        self.total = request.batch_count * self.units * max(self.run, 1)
        self.done = 0
        self.label = ""

    def make(self, index: int, path: Path) -> None:
        """Image ``index`` of the batch, saved to ``path`` with its parameters and announced."""
        from workers.image_samplers import sampler_name
        from workers.img2img import tiled_upscale

        request = self.request
        seed = batch_seed(request.seed, index)
        label = f"image {index + 1} of {request.batch_count}" if request.batch_count > 1 else ""
        start = time.perf_counter()
        if self.upscaling:
            image = tiled_upscale(
                self.init,
                self.tile,
                lambda crop, i: self.paint(crop, batch_seed(seed, i), _tile_label(label, i, self.units)),
            )
        else:
            image = self.paint(self.init, seed, label)
        elapsed = time.perf_counter() - start
        params = request_parameters(
            request,
            sampler=sampler_name(self.text2img.scheduler),
            seed=seed,
            batch_count=1,
            width=image.width,
            height=image.height,
            seconds=round(elapsed, 3),
        )
        save_png(image, path, params)
        write_sidecar(path, params)
        self.ctx.metric("seconds", elapsed)
        self.ctx.output(str(path), "image/png")

    def paint(self, image, seed: int, label: str):
        """One text-to-image (``image`` None) or one repaint of ``image`` (a whole init image or a tile)."""
        import torch

        from workers.img2img import repaint

        request = self.request
        self.label = label
        generator = torch.Generator("cpu").manual_seed(seed)
        call = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "guidance_scale": request.guidance,
            "generator": generator,
            "callback_on_step_end": self._on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        if image is None:
            size = {"width": request.width, "height": request.height}
            result = self.text2img(num_inference_steps=request.steps, **size, **call).images[0]
        else:
            result = repaint(
                self.text2img, self.img2img, image, strength=request.strength, steps=request.steps, **call
            )
            if self.run == 0:
                self.ctx.step(self.done + 1, self.total, label)  # a VAE round trip has no denoising step
        self.done += max(self.run, 1)
        return result

    def _on_step_end(self, pipeline, step, timestep, kwargs):
        self.ctx.step(self.done + step + 1, self.total, self.label, preview=self.preview(kwargs["latents"]))
        return kwargs


def _tile_label(label: str, index: int, count: int) -> str:
    tile = f"tile {index + 1} of {count}"
    return f"{label}, {tile}" if label else tile
