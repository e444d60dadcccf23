"""Pause points inside a denoising step: where a render stops for a stronger job mid-step.

A video UNet step takes most of a second on a consumer GPU. Pausing only between steps would make
a brush edit or a chat token that starts mid-step wait out the rest of it, so the arbiter would
have to keep renders idle through a whole burst of edits just in case (issue 7). Instead every
resnet, attention and motion module of a UNet (every block of a transformer denoiser) gets a
diffusers ``ModelHook`` whose ``pre_forward`` calls ``pause``: ``JobContext.pause_point``, which
returns at once unless the arbiter throttles this worker or the job is cancelled.

While throttled it first waits for the GPU work already queued (``flush``, e.g.
``torch.cuda.synchronize``): CUDA runs asynchronously, so stopping only the Python side would
leave up to a step of kernels running. The memory stays held: a revoke still waits for the step's
end, where the activations are gone.

The worker declares ``pause_every_s`` (step time / pause points) with each tier, so the arbiter
knows how quickly the render yields (``workers/arbiter/policy.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from diffusers.hooks import HookRegistry, ModelHook

HOOK_NAME = "hearth_pause_point"
UNET_PARTS = ("resnets", "attentions", "motion_modules")
TRANSFORMER_BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks", "blocks")


def pause_modules(denoiser) -> list:
    """The modules a pause point goes before, in the order they run."""
    blocks = list(getattr(denoiser, "down_blocks", None) or [])
    if getattr(denoiser, "mid_block", None) is not None:
        blocks.append(denoiser.mid_block)
    blocks += list(getattr(denoiser, "up_blocks", None) or [])
    parts = [
        module for block in blocks for name in UNET_PARTS for module in (getattr(block, name, None) or [])
    ]
    if parts:
        return parts
    stacked = [module for name in TRANSFORMER_BLOCK_LISTS for module in (getattr(denoiser, name, None) or [])]
    return stacked or blocks


def pause_point_count(denoiser) -> int:
    """Pause points per denoiser call (at least one: the step boundary itself)."""
    return max(1, len(pause_modules(denoiser)))


class PausePoints:
    """Installs the pause hooks for one render; removed on exit, also on cancel or error."""

    def __init__(self, denoiser, pause: Callable[[], None]) -> None:
        self.modules = pause_modules(denoiser)
        self.pause = pause

    def __enter__(self) -> PausePoints:
        for module in self.modules:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(
                _PauseHook(self.pause), HOOK_NAME
            )
        return self

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and registry.get_hook(HOOK_NAME) is not None:
                registry.remove_hook(HOOK_NAME, recurse=False)


class _PauseHook(ModelHook):
    def __init__(self, pause: Callable[[], None]) -> None:
        super().__init__()
        self.pause = pause

    def pre_forward(self, module, *args, **kwargs):
        self.pause()
        return args, kwargs
