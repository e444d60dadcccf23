"""Free step previews: latents -> RGB by the family's linear fit, no VAE decode.

``rgb = latents . factors + bias``, then ``(rgb + 1) / 2`` to 8 bits, as ComfyUI's latent
previewer does with the same published factors (``models.image_families``). Flux's pipeline
hands its step callback packed latents (B, h/2 * w/2, 4C); they are unpacked first.
"""

from __future__ import annotations

from models.image_families import ImageFamily


def latent_rgb(latents, family: ImageFamily):
    """(1, C, h, w) latents -> (h, w, 3) uint8 CPU tensor."""
    import torch

    factors = torch.tensor(family.rgb_factors, dtype=torch.float32)
    bias = torch.tensor(family.rgb_bias, dtype=torch.float32)
    z = latents[0].float().cpu()
    channels = min(z.shape[0], factors.shape[0])  # a model with more channels previews its first ones
    rgb = torch.einsum("chw,cr->hwr", z[:channels], factors[:channels]) + bias
    return ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8)


def unpack(latents, height: int, width: int, vae_scale_factor: int):
    """Flux's packed (B, h/2 * w/2, 4C) tokens back to (B, C, h, w) latents (image size height x width)."""
    batch, _, packed = latents.shape
    h, w = 2 * (height // (vae_scale_factor * 2)), 2 * (width // (vae_scale_factor * 2))
    latents = latents.reshape(batch, h // 2, w // 2, packed // 4, 2, 2)
    return latents.permute(0, 3, 1, 4, 2, 5).reshape(batch, packed // 4, h, w)


def pipeline_latents(latents, family: ImageFamily, height: int, width: int, vae_scale_factor: int):
    """The step callback's latents as (B, C, h, w), whatever the family's pipeline denoises."""
    if family.packed and latents.ndim == 3:
        return unpack(latents, height, width, vae_scale_factor)
    return latents
