"""Step previews through TAESD (madebyollin's tiny distilled VAE, diffusers' ``AutoencoderTiny``)
when its weights are already in the huggingface_hub cache: a real decode of each step's latents,
about 1 MB of weights and a few milliseconds a step, instead of the linear latent-to-RGB guess.

Nothing is downloaded for it: without the weights the job keeps the latent projection. SD 1.x/2.x
use ``madebyollin/taesd``, SDXL ``madebyollin/taesdxl``; other families (16-channel latents)
keep the projection. A preview only changes what is shown while the image forms, never the image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

TAESD_REPOS = {"sd": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}
"""The TAESD weights for each latent space, by their hub ids."""


def taesd_folder(pipe) -> Path | None:
    """The cached TAESD folder matching ``pipe``'s latents, or None when it is not on this machine."""
    from huggingface_hub import try_to_load_from_cache

    vae = getattr(pipe, "vae", None)
    if vae is None or getattr(vae.config, "latent_channels", 0) != 4:
        return None
    repo = TAESD_REPOS["sdxl" if "XL" in type(pipe).__name__ else "sd"]
    found = [
        try_to_load_from_cache(repo, name) for name in ("config.json", "diffusion_pytorch_model.safetensors")
    ]
    if not all(isinstance(path, str) for path in found):
        return None
    return Path(found[0]).parent


def taesd_previewer(cache, pipe) -> Callable | None:
    """A ``latents -> PIL image`` preview through TAESD, kept warm in the worker's ``cache``; None
    without its weights."""
    folder = taesd_folder(pipe)
    if folder is None:
        return None
    taesd = cache.get_or_load(f"taesd:{folder}", lambda: _load(folder))

    def preview(latents):
        import torch
        from PIL import Image

        taesd.to(latents.device)
        with torch.no_grad():
            pixels = taesd.decode(latents[:1].to(taesd.dtype)).sample  # (1, 3, H, W) in [-1, 1]
        pixels = ((pixels[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())

    return preview


def _load(folder: Path):
    from diffusers import AutoencoderTiny

    return AutoencoderTiny.from_pretrained(folder, use_safetensors=True).eval()
