"""The image worker's jobs: text-to-image here; layered brush requests go to ``workers.brushes``."""

from __future__ import annotations

from models.image_families import SD15_RGB
from workers.context import JobContext, MemoryTier
from workers.outputs import output_path
from workers.protocol import ImageRequest

LATENT_RGB_FACTORS = SD15_RGB
"""SD 1.x latent -> RGB (the video worker's AnimateDiff previews use it too); every image
family's own fit is in ``models.image_families``."""


def warm_up() -> None:
    """Pay diffusers' import cost (7-10 s on a small machine) before saying Hello, and clear the
    temp files that saves killed mid-write left in Hearth's folders."""
    import diffusers

    from workers.launch import import_libraries
    from workers.leftovers import sweep_at_worker_start
    from workers.protocol import WorkerKind
    from workers.safe_images import limit_pil

    import_libraries(WorkerKind.image)

    diffusers.utils.logging.disable_progress_bar()
    limit_pil()  # photos and masks come from anywhere: no decode past Hearth's pixel limit
    sweep_at_worker_start()


def run(ctx: JobContext, request) -> None:
    if not isinstance(request, ImageRequest):
        from workers.brushes.job import run as run_brush

        run_brush(ctx, request)
        return
    text_to_image(ctx, request)


def text_to_image(ctx: JobContext, request: ImageRequest) -> None:
    """Text-to-image, image-to-image or a tiled upscale (``workers/image_generate.py``)."""
    from dataclasses import replace

    from workers.devices import compute_device
    from workers.image_generate import generate_images, native_tile
    from workers.image_lora import resolve_loras
    from workers.img2img import load_init_image
    from workers.taesd_preview import taesd_previewer

    path = output_path(request.out_path, ctx.job_id, ".png")
    init = load_init_image(request.init_image, request.upscale) if request.init_image else None
    loras = resolve_loras(request.loras)  # a bad file is named before minutes of model loading
    ctx.status(f"loading {request.model}")
    pipe = ctx.cache.get_or_load(f"sd:{request.model}", lambda: _load(request.model))
    device = compute_device()
    sized = request
    if init is not None:  # activations follow what the UNet sees: the init image, or one upscale tile
        width, height = init.size
        if request.upscale > 1:
            width, height = min(width, native_tile(pipe)), min(height, native_tile(pipe))
        sized = replace(request, width=width, height=height)
    ctx.lease_memory(f"sd:{request.model}", _tiers(pipe, sized, device), on_release=lambda: pipe.to("cpu"))
    # TAESD when its weights are cached, else the latent projection at the size the UNet sees
    preview = taesd_previewer(ctx.cache, pipe) or previewer(pipe, sized.width, sized.height)
    generate_images(ctx, pipe, request, path, init, preview=preview, loras=loras)


def _load(model: str):
    from models.image import load_image_pipeline
    from workers.devices import compute_device

    return load_image_pipeline(model, device=compute_device())


def _tiers(pipe, request: ImageRequest, device: str) -> list[MemoryTier]:
    """Resident, VAE-tiled, model CPU offload, group offload (``workers/image_tiers.py``)."""
    from workers.image_tiers import image_tiers

    return image_tiers(pipe, request.width, request.height, device)


def previewer(pipe, width: int, height: int):
    """``latent_preview`` for this pipeline's family and image size (the step callback passes latents only)."""
    from models.image import image_family

    family = image_family(pipe)
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    return lambda latents: latent_preview(latents, family, width, height, factor)


def latent_preview(latents, family=None, width: int = 0, height: int = 0, vae_scale_factor: int = 8):
    """A cheap RGB preview of a step's latents (no VAE decode), as a PIL image at about the image's size.

    ``family`` (``models.image_families``) picks the latent -> RGB fit, SD 1.x's when not given;
    Flux's packed latents are unpacked with the image's ``width`` and ``height``."""
    from PIL import Image

    from models.image_families import SD15
    from workers.latent_preview import latent_rgb, pipeline_latents

    family = family or SD15
    latents = pipeline_latents(latents, family, height, width, vae_scale_factor)
    rgb = latent_rgb(latents, family).numpy()
    scale = vae_scale_factor
    return Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
