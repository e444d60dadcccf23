"""The brushes' deterministic schedules: DDIM (eta 0) and the flow-matching Euler ODE.

A brush edit starts at an arbitrary step n, so the update must be a pure function of the step
index, never of a scheduler's internal counter (diffusers' ``FlowMatchEulerDiscreteScheduler``
keeps one). Each schedule also knows how to re-noise a cached latent at step n inside a mask,
which is where the two families differ:

- DDIM (variance preserving): ``z' = sqrt(1 - s^2) z + s eps``, the Layered Diffusion Brushes
  paper's mix, so s = 1 is fresh noise at z's scale and s = 0 keeps the latent.
- Flow matching: the forward process is ``z_t = (1 - sigma_t) x0 + sigma_t noise``
  (``FlowMatchEulerDiscreteScheduler.scale_noise``). The cached trajectory's noise end is
  ``z[0]`` (sigma_0 = 1: the schedule starts at pure noise). Mixing fresh noise into that noise
  keeps unit variance, ``noise' = sqrt(1 - s^2) z[0] + s eps``, and putting ``noise'`` in place
  of ``z[0]`` at sigma_n gives ``z' = z[n] + sigma_n (noise' - z[0])``: exactly ``z[n]`` at
  s = 0, and ``(1 - sigma_n) x0 + sigma_n noise'`` (the scheduler's own ``scale_noise`` of the
  same x0 with the new noise) wherever ``z[n]`` lies on the straight path the flow was trained
  on. ``tests/test_brushes_families.py`` checks both against the scheduler.
"""

from __future__ import annotations

import math
from typing import Any


class BrushSchedule:
    """N steps: ``timesteps[k]`` for the network, ``step(k, output, z)`` for the update."""

    timesteps: Any
    init_noise_sigma: float = 1.0

    def step(self, k: int, output, z):
        raise NotImplementedError

    def step_back(self, k: int, output, z):
        """Inversion: the latent before step k from the one after it."""
        raise NotImplementedError

    def renoise(self, k: int, z, first, noise, strength: float):
        """The cached latent ``z`` at step k with ``strength`` of its noise replaced by ``noise``."""
        raise NotImplementedError


class DdimSchedule(BrushSchedule):
    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps
        self.init_noise_sigma = float(scheduler.init_noise_sigma)

    def step(self, k: int, output, z):
        return self.scheduler.step(output, int(self.timesteps[k]), z, eta=0.0).prev_sample

    def step_back(self, k: int, output, z):
        steps, alphas = len(self.timesteps), self.scheduler.alphas_cumprod
        alpha_now = alphas[self.timesteps[k + 1]] if k + 1 < steps else self.scheduler.final_alpha_cumprod
        alpha_next = alphas[self.timesteps[k]]
        x0 = (z - (1 - alpha_now).sqrt() * output) / alpha_now.sqrt()
        return alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * output

    def renoise(self, k: int, z, first, noise, strength: float):
        return math.sqrt(1 - strength * strength) * z + strength * noise


class FlowSchedule(BrushSchedule):
    def __init__(self, scheduler) -> None:
        self.timesteps = scheduler.timesteps.float()
        self.sigmas = scheduler.sigmas.float()  # N + 1 values: the last is 0 (clean)

    def step(self, k: int, output, z):
        return z + (self.sigmas[k + 1] - self.sigmas[k]) * output

    def step_back(self, k: int, output, z):
        return z + (self.sigmas[k] - self.sigmas[k + 1]) * output

    def renoise(self, k: int, z, first, noise, strength: float):
        mixed = math.sqrt(1 - strength * strength) * first + strength * noise
        return z + self.sigmas[k] * (mixed - first)


def brush_schedule(pipe, steps: int, latent_size: tuple[int, int] | None) -> BrushSchedule:
    """The family's schedule for ``steps``, as its pipeline would set it for this latent size."""
    from models.image import image_family

    family = image_family(pipe)
    if not family.flow_matching:
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps)
        return DdimSchedule(scheduler)
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(**_flow_timestep_args(pipe, family, steps, latent_size))
    return FlowSchedule(scheduler)


def _flow_timestep_args(pipe, family, steps: int, latent_size) -> dict:
    """What SD3's and Flux's pipelines pass to ``set_timesteps`` (Flux: sigmas 1..1/N and its mu)."""
    import numpy as np

    config = pipe.scheduler.config
    args: dict = {"num_inference_steps": steps}
    if family.packed:
        args["sigmas"] = np.linspace(1.0, 1 / steps, steps)
    if config.get("use_dynamic_shifting"):
        h, w = latent_size or (128, 128)
        tokens = (h // 2) * (w // 2)  # Flux packs 2x2 patches; SD3's transformer patches 2x2 too
        base, top = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        low, high = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        args["mu"] = low + (tokens - base) * (high - low) / (top - base)
    return args
