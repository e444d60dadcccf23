"""The image worker's jobs: text-to-image here; layered brush requests go to ``workers.brushes``."""

from __future__ import annotations

from workers.context import JobContext, MemoryTier
from workers.outputs import output_path
from workers.protocol import ImageRequest

# SD 1.x latent -> RGB, a linear fit used by several SD front ends for free step previews.
LATENT_RGB_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
ACTIVATION_BYTES_PER_PIXEL = 4 * 1024  # rough SD-UNet activation cost per output pixel at fp16


def warm_up() -> None:
    """Pay diffusers' import cost (7-10 s on a small machine) before saying Hello, and clear the
    temp files that saves killed mid-write left in Hearth's folders."""
    import diffusers
    import torch  # noqa: F401

    from workers.leftovers import sweep_at_worker_start
    from workers.safe_images import limit_pil

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
    from workers.img2img import load_init_image

    path = output_path(request.out_path, ctx.job_id, ".png")
    init = load_init_image(request.init_image, request.upscale) if request.init_image else None
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
    generate_images(ctx, pipe, request, path, init, preview=latent_preview)


def _load(model: str):
    from models.image import load_image_pipeline

    return load_image_pipeline(model)


def _tiers(pipe, request: ImageRequest, device: str) -> list[MemoryTier]:
    weights = sum(
        p.numel() * p.element_size()
        for m in pipe.components.values()
        if hasattr(m, "parameters")
        for p in m.parameters()
    )
    activations = request.width * request.height * ACTIVATION_BYTES_PER_PIXEL
    unet = sum(p.numel() * p.element_size() for p in pipe.unet.parameters())
    return [
        MemoryTier(
            name="resident", bytes=weights + activations, est_step_s=0.05, apply=lambda: pipe.to(device)
        ),
        MemoryTier(
            name="offloaded", bytes=unet + activations, est_step_s=0.2, apply=lambda: _offload(pipe, device)
        ),
    ]


def _offload(pipe, device: str) -> None:
    """Only the UNet stays on the device; text encoder and VAE move in when used."""
    if device == "cpu":
        return
    pipe.enable_model_cpu_offload(device=device)


def latent_preview(latents):
    """A cheap RGB preview of SD latents (no VAE decode), as a PIL image."""
    import torch
    from PIL import Image

    factors = torch.tensor(LATENT_RGB_FACTORS, dtype=latents.dtype, device=latents.device)
    rgb = torch.einsum("chw,cr->hwr", latents[0].float(), factors.float())
    rgb = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(rgb).resize((rgb.shape[1] * 8, rgb.shape[0] * 8), Image.NEAREST)
