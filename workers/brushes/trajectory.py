"""The cached denoising trajectory of a brush session: z_T..z_0 plus the prompt embeddings.

A generated base image records every latent its sampler passes through; a natural photo gets
the same record by inversion (encode, then run the deterministic sampler backwards). Every layer
later restarts from one of these cached latents, so this is the only full-length denoising run a
session ever pays for.

Two samplers, by family (``models.image_families``; the per-family network calls are in
``denoisers``):
- **DDIM** (eta 0) for the epsilon / v-prediction UNets (SD 1.x/2.x, SDXL and its few-step
  variants): inversion is DDIM inversion.
- **Flow-matching Euler** for SD3/3.5 and Flux, the update of diffusers'
  ``FlowMatchEulerDiscreteScheduler.step``: ``z_{k+1} = z_k + (sigma_{k+1} - sigma_k) v(z_k, t_k)``,
  on the sigmas its ``set_timesteps`` gives (Flux: with the resolution-dependent shift ``mu`` its
  pipeline computes). It is applied here without the scheduler's internal step counter, so an
  edit can start at any step. Inversion runs the same ODE backwards:
  ``z_k = z_{k+1} + (sigma_k - sigma_{k+1}) v(z_{k+1}, t_k)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from workers.brushes.denoisers import Conditioning, encode_conditioning, model_output
from workers.brushes.schedule import BrushSchedule, brush_schedule

StepCallback = Callable[[int, int, Any], None]
"""on_step(step, total, latents) after every denoiser call."""


@dataclass
class Trajectory:
    """Everything an edit needs from the base run; tensors are kept on the CPU in float32."""

    latents: Any
    """(N+1, C, h, w): ``latents[k]`` is the latent before step k; ``latents[N]`` is z_0."""
    timesteps: Any
    """(N,) descending: the timestep each step k denoises at (int64 for DDIM, float32 for flow)."""
    prompt_embeds: Any
    """(2, L, D) [negative, positive] with classifier-free guidance, (1, L, D) without."""
    guidance: float
    pooled_embeds: Any = None
    """(2, P) or (1, P): the pooled text embedding SDXL, SD3 and Flux also condition on; None for SD."""

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def conditioning(self) -> Conditioning:
        return Conditioning(self.prompt_embeds, self.pooled_embeds)


def brush_scheduler(pipe, steps: int, latent_size: tuple[int, int] | None = None) -> BrushSchedule:
    """The session's private schedule (the shared pipeline's own scheduler stays untouched)."""
    return brush_schedule(pipe, steps, latent_size)


def encode_prompt(pipe, prompt: str, negative_prompt: str, guidance: float) -> Conditioning:
    """[negative, positive] embeddings when the family guides with a CFG batch, else positive only."""
    return encode_conditioning(pipe, prompt, negative_prompt, guidance)


def denoise_step(pipe, schedule: BrushSchedule, latents, k: int, conditioning: Conditioning, guidance: float):
    """Step k of the schedule: exactly one denoiser call (a CFG batch holds both halves)."""
    output = model_output(pipe, latents, schedule.timesteps[k], conditioning, guidance)
    # The update itself runs in float32 on the CPU: cached latents stay exact across devices.
    return schedule.step(k, output, latents.float().cpu())


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
    """Text-to-image with the family's deterministic sampler, recording every intermediate latent."""
    import torch

    factor = pipe.vae_scale_factor
    latent_size = (height // factor, width // factor)
    schedule = brush_scheduler(pipe, steps, latent_size)
    conditioning = encode_prompt(pipe, prompt, negative_prompt, guidance)
    generator = torch.Generator("cpu").manual_seed(seed)
    z = torch.randn((1, pipe.vae.config.latent_channels, *latent_size), generator=generator)
    z = z * schedule.init_noise_sigma
    latents = [z]
    for k in range(steps):
        z = denoise_step(pipe, schedule, z, k, conditioning, guidance)
        latents.append(z)
        if on_step:
            on_step(k + 1, steps, z)
    return Trajectory(
        latents=torch.cat(latents),
        timesteps=schedule.timesteps.clone(),
        prompt_embeds=conditioning.embeds,
        guidance=guidance,
        pooled_embeds=conditioning.pooled,
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
    """Inversion of a photo: z_0 = E(photo), then z_k from z_{k+1} with the model's estimate at t_k.

    DDIM inversion for the UNet families, the flow ODE run backwards for SD3/Flux (see the module
    docstring). The inversion itself runs without guidance (the usual choice: guided inversion
    drifts); edits later use ``guidance`` for the layers' prompts.
    """
    import torch

    z = encode_image(pipe, image)
    schedule = brush_scheduler(pipe, steps, tuple(z.shape[-2:]))
    conditional = encode_prompt(pipe, prompt, negative_prompt, guidance=1.0)
    latents = [z]
    for i, k in enumerate(range(steps - 1, -1, -1)):
        output = model_output(pipe, z, schedule.timesteps[k], conditional, 1.0)
        z = schedule.step_back(k, output, z)
        latents.append(z)
        if on_step:
            on_step(i + 1, steps, z)
    conditioning = encode_prompt(pipe, prompt, negative_prompt, guidance)
    return Trajectory(
        latents=torch.cat(latents[::-1]),
        timesteps=schedule.timesteps.clone(),
        prompt_embeds=conditioning.embeds,
        guidance=guidance,
        pooled_embeds=conditioning.pooled,
    )


def _vae_shift(pipe) -> float:
    return float(getattr(pipe.vae.config, "shift_factor", None) or 0.0)


def encode_image(pipe, image):
    """PIL RGB -> (1, C, h, w) latent (the posterior mean, so the same photo always gives the same z_0)."""
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    with _vae_for_pixels(pipe) as vae:
        pixels = pixels.permute(2, 0, 1)[None].to(vae.device, vae.dtype)  # (1, 3, H, W)
        with torch.no_grad():
            posterior = vae.encode(pixels).latent_dist
        # SD3 and Flux VAEs centre their latents: z = (mean - shift) * scale, as their pipelines do.
        return ((posterior.mean.float() - _vae_shift(pipe)) * vae.config.scaling_factor).cpu()


def decode(pipe, latents):
    """(1, C, h, w) latent -> PIL RGB image."""
    import torch
    from PIL import Image

    with _vae_for_pixels(pipe) as vae:
        z = latents.float() / vae.config.scaling_factor + _vae_shift(pipe)
        with torch.no_grad():
            pixels = vae.decode(z.to(vae.device, vae.dtype)).sample  # (1, 3, H, W) in [-1, 1]
    pixels = ((pixels[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())


@contextmanager
def _vae_for_pixels(pipe):
    """The VAE, in fp32 for the call when it overflows in fp16 (``force_upcast``: SDXL's own), as
    its pipeline does; put back afterwards, since text-to-image shares the pipeline."""
    import torch

    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae
    finally:
        if upcast:
            vae.to(torch.float16)
