"""One network call per step, for each image family: the prompt's conditioning and the model's output.

- SD 1.x/2.x: a UNet on the CLIP hidden states (epsilon or v, the DDIM scheduler reads which).
- SDXL: the same plus ``added_cond_kwargs``: the pooled text embedding and the six size/crop ids
  ``(H, W, 0, 0, H, W)`` its pipeline builds (the image size, no crop).
- SD3/3.5: an MMDiT on [CLIP-L, CLIP-G | T5] tokens and the pooled CLIP embeddings; it predicts
  the flow velocity at timestep ``t = 1000 sigma``.
- Flux: a transformer on 2x2 patches packed into tokens, the T5 tokens and the pooled CLIP-L
  embedding, at ``t / 1000``; dev adds its distilled guidance as an embedding (no CFG batch).
  Latents stay unpacked (1, C, h, w) everywhere else, so masks apply to them unchanged.

Classifier-free guidance (SD, SDXL, SD3) batches [negative, positive], so a guided step is still
one call: the brushes' "one call per step" count holds for every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.image import image_family


@dataclass
class Conditioning:
    """What a prompt gives the network, float32 on the CPU."""

    embeds: Any
    """(2, L, D) [negative, positive] with a CFG batch, else (1, L, D)."""
    pooled: Any = None
    """(2, P) or (1, P); None for SD 1.x/2.x."""


def denoiser(pipe):
    """The network a step calls: the UNet or the transformer."""
    return getattr(pipe, image_family(pipe).denoiser)


def uses_cfg_batch(pipe, guidance: float) -> bool:
    return guidance > 1 and image_family(pipe).negative_prompt


def encode_conditioning(pipe, prompt: str, negative_prompt: str, guidance: float) -> Conditioning:
    import torch

    family = image_family(pipe)
    cfg = uses_cfg_batch(pipe, guidance)
    negative = negative_prompt or None
    device = pipe._execution_device
    pooled = negative_pooled = None
    with torch.no_grad():
        if family.pipeline == "StableDiffusionPipeline":
            positive, negative_embeds = pipe.encode_prompt(prompt, device, 1, cfg, negative)
        elif family.pipeline == "FluxPipeline":
            positive, pooled, _text_ids = pipe.encode_prompt(prompt, prompt_2=None, device=device)
            negative_embeds = None
        elif family.pipeline == "StableDiffusion3Pipeline":
            positive, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
                prompt, None, None, device=device, do_classifier_free_guidance=cfg, negative_prompt=negative
            )
        else:  # StableDiffusionXLPipeline
            positive, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
                prompt, device=device, do_classifier_free_guidance=cfg, negative_prompt=negative
            )
    embeds = torch.cat([negative_embeds, positive]) if cfg else positive
    if pooled is not None and cfg:
        pooled = torch.cat([negative_pooled, pooled])
    return Conditioning(embeds.float().cpu(), None if pooled is None else pooled.float().cpu())


def model_output(pipe, latents, timestep, conditioning: Conditioning, guidance: float):
    """The network's guided output for (1, C, h, w) ``latents`` at ``timestep``, float32 on the CPU."""
    import torch

    family = image_family(pipe)
    network = denoiser(pipe)
    device, dtype = pipe._execution_device, network.dtype
    embeds = conditioning.embeds.to(device, dtype)
    batch = embeds.shape[0]
    z = torch.cat([latents] * batch).to(device, dtype)
    pooled = None if conditioning.pooled is None else conditioning.pooled.to(device, dtype)
    with torch.no_grad():
        if family.pipeline == "FluxPipeline":
            output = _flux(pipe, network, z, timestep, embeds, pooled, guidance)
        elif family.pipeline == "StableDiffusion3Pipeline":
            t = timestep.float().expand(batch).to(device)
            output = network(
                hidden_states=z,
                timestep=t,
                encoder_hidden_states=embeds,
                pooled_projections=pooled,
                return_dict=False,
            )[0]
        else:
            added = _sdxl_added_conditions(pipe, z, pooled) if pooled is not None else None
            output = network(
                z,
                timestep.to(device),
                encoder_hidden_states=embeds,
                added_cond_kwargs=added,
                return_dict=False,
            )[0]
    output = output.float().cpu()
    if batch == 2:
        uncond, cond = output.chunk(2)
        output = uncond + guidance * (cond - uncond)
    return output


def _sdxl_added_conditions(pipe, z, pooled) -> dict:
    import torch

    height, width = (side * pipe.vae_scale_factor for side in z.shape[-2:])
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=z.dtype, device=z.device)
    return {"text_embeds": pooled, "time_ids": time_ids.repeat(z.shape[0], 1)}


def _flux(pipe, network, z, timestep, embeds, pooled, guidance: float):
    """Pack (B, C, h, w) into (B, h/2 * w/2, 4C) tokens, call, unpack."""
    import torch

    from workers.latent_preview import unpack

    batch, channels, h, w = z.shape
    packed = z.reshape(batch, channels, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    packed = packed.reshape(batch, (h // 2) * (w // 2), channels * 4)
    image_ids = torch.zeros(h // 2, w // 2, 3)
    image_ids[..., 1] += torch.arange(h // 2)[:, None]
    image_ids[..., 2] += torch.arange(w // 2)[None, :]
    image_ids = image_ids.reshape(-1, 3).to(z.device, z.dtype)
    text_ids = torch.zeros(embeds.shape[1], 3, device=z.device, dtype=z.dtype)
    embedded = None
    if network.config.guidance_embeds:
        embedded = torch.full([batch], guidance, device=z.device, dtype=torch.float32)
    t = (timestep.float() / 1000).expand(batch).to(z.device, z.dtype)
    output = network(
        hidden_states=packed,
        timestep=t,
        guidance=embedded,
        pooled_projections=pooled,
        encoder_hidden_states=embeds,
        txt_ids=text_ids,
        img_ids=image_ids,
        return_dict=False,
    )[0]
    factor = pipe.vae_scale_factor
    return unpack(output, h * factor, w * factor, factor)
