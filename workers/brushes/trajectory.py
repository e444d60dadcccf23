"""The cached denoising trajectory of a brush session: z_T..z_0 plus the prompt embeddings.

A generated base image records every latent its DDIM loop passes through; a natural photo gets
the same record by DDIM inversion (encode, then run the deterministic DDIM update backwards).
Every layer later restarts from one of these cached latents, so this is the only full-length
denoising run a session ever pays for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StepCallback = Callable[[int, int, Any], None]
"""on_step(step, total, latents) after every UNet call."""


@dataclass
class Trajectory:
    """Everything an edit needs from the base run; tensors are kept on the CPU in float32."""

    latents: Any
    """(N+1, C, h, w): ``latents[k]`` is the latent before DDIM step k; ``latents[N]`` is z_0."""
    timesteps: Any
    """(N,) int64, descending: the timestep each step k denoises at."""
    prompt_embeds: Any
    """(2, L, D) [negative, positive] with classifier-free guidance, (1, L, D) without."""
    guidance: float

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def brush_scheduler(pipe, steps: int):
    """A private DDIM scheduler (eta 0, deterministic) so the shared pipeline's own stays untouched."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def encode_prompt(pipe, prompt: str, negative_prompt: str, guidance: float):
    """(2, L, D) [negative, positive] when guidance > 1, else (1, L, D), float32 on the CPU."""
    import torch

    with torch.no_grad():
        positive, negative = pipe.encode_prompt(prompt, pipe.device, 1, guidance > 1, negative_prompt or None)
    embeds = torch.cat([negative, positive]) if guidance > 1 else positive
    return embeds.float().cpu()


def denoise_step(pipe, scheduler, latents, timestep, prompt_embeds, guidance: float):
    """One DDIM step with classifier-free guidance: exactly one UNet call (the batch holds both halves)."""
    import torch

    device, dtype = pipe.unet.device, pipe.unet.dtype
    z = latents.to(device, dtype)
    embeds = prompt_embeds.to(device, dtype)
    model_input = torch.cat([z] * embeds.shape[0])
    with torch.no_grad():
        eps = pipe.unet(model_input, timestep.to(device), encoder_hidden_states=embeds).sample.float().cpu()
    if embeds.shape[0] == 2:
        uncond, cond = eps.chunk(2)
        eps = uncond + guidance * (cond - uncond)
    # The DDIM update itself runs in float32 on the CPU: cached latents stay exact across devices.
    return scheduler.step(eps, int(timestep), latents.float().cpu(), eta=0.0).prev_sample


def generate(
    pipe,
    prompt: str,
    negative_prompt: str,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    seed: int,
    on_step: StepCallback | None = None,
) -> Trajectory:
    """Text-to-image with DDIM, recording every intermediate latent."""
    import torch

    scheduler = brush_scheduler(pipe, steps)
    embeds = encode_prompt(pipe, prompt, negative_prompt, guidance)
    channels, factor = pipe.unet.config.in_channels, pipe.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(seed)
    z = torch.randn((1, channels, height // factor, width // factor), generator=generator)
    z = z * scheduler.init_noise_sigma
    latents = [z]
    for k, t in enumerate(scheduler.timesteps):
        z = denoise_step(pipe, scheduler, z, t, embeds, guidance)
        latents.append(z)
        if on_step:
            on_step(k + 1, steps, z)
    return Trajectory(
        latents=torch.cat(latents),
        timesteps=scheduler.timesteps.clone(),
        prompt_embeds=embeds,
        guidance=guidance,
    )


def invert(
    pipe,
    image,
    prompt: str,
    negative_prompt: str,
    steps: int,
    guidance: float,
    on_step: StepCallback | None = None,
) -> Trajectory:
    """DDIM inversion of a photo: z_0 = E(photo), then z_k from z_{k+1} with the UNet's noise estimate.

    The inversion itself runs without guidance (the usual choice: guided inversion drifts); edits
    later use ``guidance`` for the layers' prompts.
    """
    import torch

    scheduler = brush_scheduler(pipe, steps)
    conditional = encode_prompt(pipe, prompt, negative_prompt, guidance=1.0)
    z = encode_image(pipe, image)
    latents = [z]
    alphas = scheduler.alphas_cumprod
    timesteps = scheduler.timesteps
    for i, k in enumerate(range(steps - 1, -1, -1)):
        alpha_now = alphas[timesteps[k + 1]] if k + 1 < steps else scheduler.final_alpha_cumprod
        alpha_next = alphas[timesteps[k]]
        eps = _noise_estimate(pipe, z, timesteps[k], conditional)
        x0 = (z - (1 - alpha_now).sqrt() * eps) / alpha_now.sqrt()
        z = alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps
        latents.append(z)
        if on_step:
            on_step(i + 1, steps, z)
    embeds = encode_prompt(pipe, prompt, negative_prompt, guidance)
    return Trajectory(
        latents=torch.cat(latents[::-1]), timesteps=timesteps.clone(), prompt_embeds=embeds, guidance=guidance
    )


def _noise_estimate(pipe, latents, timestep, embeds):
    import torch

    device, dtype = pipe.unet.device, pipe.unet.dtype
    with torch.no_grad():
        eps = pipe.unet(
            latents.to(device, dtype), timestep.to(device), encoder_hidden_states=embeds.to(device, dtype)
        )
    return eps.sample.float().cpu()


def encode_image(pipe, image):
    """PIL RGB -> (1, C, h, w) latent (the posterior mean, so the same photo always gives the same z_0)."""
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    pixels = pixels.permute(2, 0, 1)[None].to(pipe.vae.device, pipe.vae.dtype)  # (1, 3, H, W)
    with torch.no_grad():
        posterior = pipe.vae.encode(pixels).latent_dist
    return (posterior.mean * pipe.vae.config.scaling_factor).float().cpu()


def decode(pipe, latents):
    """(1, C, h, w) latent -> PIL RGB image."""
    import torch
    from PIL import Image

    z = latents.to(pipe.vae.device, pipe.vae.dtype) / pipe.vae.config.scaling_factor
    with torch.no_grad():
        pixels = pipe.vae.decode(z).sample  # (1, 3, H, W) in [-1, 1]
    pixels = ((pixels[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())
