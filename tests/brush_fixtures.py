"""Shared helpers for the brush tests: a tiny seeded SD pipeline, a cached base and masks."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np

SIZE = 64
STEPS = 8
PROMPT = "a red apple on a wooden table"


def tiny_pipeline():
    from models.image import build_demo_sd

    pipe = build_demo_sd(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def base_session(pipe, session_id: str = "s1"):
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import decode, generate

    trajectory = generate(pipe, PROMPT, "", SIZE, SIZE, STEPS, 7.5, seed=3)
    return BrushSession(
        session_id=session_id,
        pipe=pipe,
        trajectory=trajectory,
        base_image=decode(pipe, trajectory.latents[-1:]),
        prompt=PROMPT,
    )


def fresh_session(base, session_id: str | None = None):
    """A session on ``base``'s trajectory and image with nothing cached: what ``base_session``
    would build again (the same seed gives the same base), without running the base again."""
    return dataclasses.replace(
        base,
        session_id=session_id or base.session_id,
        latest_revision=-1,
        branches=OrderedDict(),
        composites=OrderedDict(),
        _embeds={},
        _scheduler=None,
    )


class Untouched:
    """Remembers a shared base session's tensors and image; ``check`` fails if a test changed them."""

    def __init__(self, session) -> None:
        self.session = session
        self._latents = session.trajectory.latents.clone()
        self._embeds = session.trajectory.prompt_embeds.clone()
        self._image = session.base_image.tobytes()

    def check(self) -> None:
        import torch

        trajectory = self.session.trajectory
        assert torch.equal(trajectory.latents, self._latents), "a test changed the shared base latents"
        assert torch.equal(trajectory.prompt_embeds, self._embeds), "a test changed the shared embeddings"
        assert self.session.base_image.tobytes() == self._image, "a test changed the shared base image"


def box_mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


def layer(layer_id: str, mask, **changes):
    from workers.brushes.layers import Layer

    fields = {"prompt": "a cat", "strength": 0.9, "regen_step": 3, "seed": 7, "feather": 1.5}
    fields.update(changes)
    return Layer(id=layer_id, mask=mask, **fields)


class UnetCounter:
    """Counts UNet forward calls through a hook (one call per step: CFG is batched)."""

    def __init__(self, pipe) -> None:
        self.calls = 0
        self._handle = pipe.unet.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.calls += 1

    def reset(self) -> int:
        calls, self.calls = self.calls, 0
        return calls

    def close(self) -> None:
        self._handle.remove()
