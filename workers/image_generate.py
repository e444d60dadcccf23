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
    """The side, in pixels, the model was trained at (SD 1.x 512, the demo model 64): upscale tiles."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def generate_images(
    ctx: JobContext, pipe, request: ImageRequest, first: Path, init, preview: Callable
) -> None:
    """Run ``request`` on ``pipe``; ``init``: the loaded init image (already at the output size) or None."""
    import torch

    from workers.image_lora import applied_loras
    from workers.image_samplers import job_pipelines, sampler_name
    from workers.img2img import repaint, steps_run, tile_count, tiled_upscale

    text2img, img2img = job_pipelines(pipe, request.sampler, img2img=init is not None)
    tile = native_tile(pipe)
    upscaling = init is not None and request.upscale > 1
    run = steps_run(request.steps, request.strength) if init is not None else request.steps
    units = tile_count(init.size, tile) if upscaling else 1  # repaints per image
    per_image = units * max(run, 1)
    total = request.batch_count * per_image
    progress = {"done": 0, "label": ""}

    def on_step_end(pipeline, step, timestep, kwargs):
        ctx.step(progress["done"] + step + 1, total, progress["label"], preview=preview(kwargs["latents"]))
        return kwargs

    call = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or None,
        "guidance_scale": request.guidance,
        "callback_on_step_end": on_step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }

    def paint(image, seed: int, label: str):
        progress["label"] = label
        generator = torch.Generator("cpu").manual_seed(seed)
        if image is None:
            result = text2img(
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                generator=generator,
                **call,
            ).images[0]
        else:
            result = repaint(
                text2img,
                img2img,
                image,
                strength=request.strength,
                steps=request.steps,
                generator=generator,
                **call,
            )
        if image is not None and run == 0:
            ctx.step(progress["done"] + 1, total, label)  # a VAE round trip has no denoising step
        progress["done"] += max(run, 1)
        return result

    paths = batch_paths(first, request.batch_count)
    with applied_loras(text2img, request.loras):
        for index, path in enumerate(paths):
            seed = batch_seed(request.seed, index)
            label = f"image {index + 1} of {request.batch_count}" if request.batch_count > 1 else ""
            start = time.perf_counter()
            if upscaling:
                image = tiled_upscale(
                    init,
                    tile,
                    lambda crop, i, seed=seed, label=label: paint(
                        crop, batch_seed(seed, i), _tile_label(label, i, units)
                    ),
                )
            else:
                image = paint(init, seed, label)
            elapsed = time.perf_counter() - start
            params = request_parameters(
                request,
                sampler=sampler_name(text2img.scheduler),
                seed=seed,
                batch_count=1,
                width=image.width,
                height=image.height,
                seconds=round(elapsed, 3),
            )
            save_png(image, path, params)
            write_sidecar(path, params)
            ctx.metric("seconds", elapsed)
            ctx.output(str(path), "image/png")


def _tile_label(label: str, index: int, count: int) -> str:
    tile = f"tile {index + 1} of {count}"
    return f"{label}, {tile}" if label else tile
