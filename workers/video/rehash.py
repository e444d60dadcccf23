"""Step Rehash (Streamlined Inference, NeurIPS 2024, §3.3) for UNet video models. Ours.

Adjacent denoising steps produce nearly the same deep features (the low-resolution blocks of the
UNet), while the shallow blocks at full resolution carry the detail that changes. On a *key* step
the whole UNet runs and the output of the deep part (the hidden state entering the last up block)
is cached; on any other step the deep blocks (``down_blocks[1:]``, ``mid_block``,
``up_blocks[:-1]``) are not run at all and the cached output is replayed, while ``conv_in``,
``down_blocks[0]`` and ``up_blocks[-1]`` run fresh with the current step's inputs and skips.

Which steps are key (the paper's key-step search, made explicit):

- ``uniform_key_steps(total, interval)``: every ``interval``-th step, starting at step 0 — the
  default, known before the run (the first step is always key: there is nothing to replay yet).
- ``search_key_steps(similarities, threshold)``: from a calibration run that computed every step,
  a step is key when the cosine similarity of its deep feature to the last key step's feature
  drops below ``threshold``; ``calibrate_key_steps`` records those similarities.

Switched off (``StepRehash`` not installed, or every step key) the UNet runs unchanged, so the
output is bit-identical to a run without it. Diffusers' FirstBlockCache/TaylorSeer hooks serve the
same purpose for transformer models (Wan) but do not apply to ``UNetMotionModel``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

HOOK_NAME = "hearth_step_rehash"


def uniform_key_steps(total: int, interval: int = 2) -> frozenset[int]:
    """Every ``interval``-th step is key (interval 1: all steps, i.e. rehash off)."""
    interval = max(1, int(interval))
    return frozenset(i for i in range(total) if i % interval == 0)


def search_key_steps(similarities: Iterable[float], threshold: float = 0.95) -> frozenset[int]:
    """Key steps from calibration: ``similarities[i]`` is step i's deep feature compared (cosine)
    with the deep feature of the last key step before it; step 0 is always key."""
    keys = {0}
    for step, similarity in enumerate(similarities):
        if step and similarity < threshold:
            keys.add(step)
    return frozenset(keys)


class StepRehash:
    """Skips the deep blocks of a ``UNetMotionModel`` on non-key steps (one UNet call per step).

    ``calls`` counts, per block name, how often the block really ran; ``skipped`` how often its
    cached output was replayed instead. ``slicer`` (a ``VideoSlicer``) is told when a replayed
    output still owes its upsampler.
    """

    def __init__(
        self, unet, key_steps: Iterable[int], slicer=None, on_feature: Callable | None = None
    ) -> None:
        self.unet = unet
        self.key_steps = frozenset(key_steps)
        self.slicer = slicer
        self.on_feature = on_feature
        self.step = -1
        self.calls: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self._cached: tuple[Any, Any] | None = None  # (deep output, its owed upsampler or None)
        self.installed = False

    @property
    def is_key(self) -> bool:
        return self.step in self.key_steps or self._cached is None

    def deep_blocks(self) -> list[tuple[str, object]]:
        unet = self.unet
        blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks) if i > 0]
        if unet.mid_block is not None:
            blocks.append(("mid_block", unet.mid_block))
        return blocks + [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks[:-1])]

    def install(self) -> StepRehash:
        from diffusers.hooks import HookRegistry

        if self.installed:
            return self
        if len(self.unet.up_blocks) < 2 or len(self.unet.down_blocks) < 2:
            raise ValueError("Step Rehash needs a UNet with at least two resolution levels")
        HookRegistry.check_if_exists_or_initialize(self.unet).register_hook(
            _hook(pre=self._begin_step), HOOK_NAME
        )
        last_deep = len(self.unet.up_blocks) - 2
        for name, block in self.deep_blocks():
            replay = self._replay_output if name == f"up_blocks.{last_deep}" else _placeholder(block)
            registry = HookRegistry.check_if_exists_or_initialize(block)
            registry.register_hook(_hook(forward=self._deep_forward(name, replay)), HOOK_NAME)
        self.installed = True
        return self

    def remove(self) -> None:
        if not self.installed:
            return
        for _, module in [("unet", self.unet), *self.deep_blocks()]:
            module._diffusers_hook.remove_hook(HOOK_NAME, recurse=False)
        self.installed = False
        self._cached = None

    def __enter__(self) -> StepRehash:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _begin_step(self, args, kwargs):
        self.step += 1
        return args, kwargs

    def _deep_forward(self, name: str, replay: Callable) -> Callable:
        last_deep = name == f"up_blocks.{len(self.unet.up_blocks) - 2}"

        def forward(hook, block, *args, **kwargs):
            if not self.is_key:
                self.skipped[name] += 1
                return replay(*args, **kwargs)
            self.calls[name] += 1
            output = hook.fn_ref.original_forward(*args, **kwargs)
            if last_deep:
                self._remember(output)
            return output

        return forward

    def _remember(self, output) -> None:
        owed = self.slicer.deferred_upsample(output) if self.slicer is not None else None
        if self.on_feature is not None and self._cached is not None:
            self.on_feature(self.step, output, self._cached[0])
        self._cached = (output, owed)

    def _replay_output(self, *args, **kwargs):
        output, owed = self._cached
        if self.slicer is not None:
            self.slicer.defer_upsample(output, owed)
        return output


def _placeholder(block) -> Callable:
    """What a skipped deep block returns: its input again, as many times as the UNet expects.
    Only skipped up blocks would read these, so no new memory and no compute."""
    outputs = len(getattr(block, "resnets", ())) + (1 if getattr(block, "downsamplers", None) else 0)
    is_down = hasattr(block, "downsamplers")

    def replay(*args, **kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        return (hidden, (hidden,) * outputs) if is_down else hidden

    return replay


def _hook(pre: Callable | None = None, forward: Callable | None = None):
    from diffusers.hooks import ModelHook

    class RehashHook(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            return pre(args, kwargs) if pre else (args, kwargs)

    if forward is not None:
        RehashHook.new_forward = lambda self, module, *a, **k: forward(self, module, *a, **k)
    return RehashHook()


def calibrate_key_steps(run: Callable[[StepRehash], None], unet, threshold: float = 0.95) -> frozenset[int]:
    """The paper's key-step search: run every step once (``run(rehash)`` drives the pipeline), compare
    each step's deep feature with the last key step's, and return the steps where it drifted."""
    import torch

    similarities: dict[int, float] = {}
    last_key: list = []

    def record(step, feature, previous):
        if not last_key:  # step 0 is key
            last_key.append(previous)
        reference = last_key[0]
        similarity = torch.nn.functional.cosine_similarity(
            feature.flatten().float(), reference.flatten().float(), 0
        )
        similarities[step] = float(similarity)
        if similarity < threshold:
            last_key[:] = [feature]

    rehash = StepRehash(unet, key_steps=range(10_000), on_feature=record)
    with rehash:
        run(rehash)
    return search_key_steps([similarities.get(i, 1.0) for i in range(rehash.step + 1)], threshold)
