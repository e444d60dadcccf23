"""LoRAs on a cached image pipeline for one job, through diffusers' ``load_lora_weights`` and
``set_adapters`` (peft backend), and gone again when the job ends.

A LoRA is named by a ``.safetensors`` file or by its id in the model registry (``hearth models``).
Each file is identified from its header first (``models.identify``), so a checkpoint, a VAE, a
pickle or a damaged file is refused with a message naming it before any tensor is read. A LoRA at
weight 0 is checked but never loaded: it changes nothing, so the image stays bit-identical to the
one without it. The adapters are unloaded in ``finally``: the pipeline in the worker's cache, which
brushes and later jobs share, is left as it was loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.errors import BadInput
from workers.lora_list import LoraChoice, parse_loras


def resolve_lora(name: str) -> Path:
    """The LoRA file ``name`` stands for (a path, or a registered model's id); ``BadInput`` when it
    is not a readable LoRA."""
    from models.identify import identify
    from models.identity import FoundKind

    path = Path(name).expanduser()
    if not path.is_file():
        path = _registered(name)
    try:
        identity = identify(path)
    except BadInput as exc:  # damaged, hostile, or not a model file at all
        raise BadInput(f"LoRA {path.name}: {exc}", field="loras") from None
    if identity.kind is not FoundKind.lora:
        what = identity.kind.value if identity.kind is not FoundKind.unknown else "not a model Hearth knows"
        reason = f": {identity.reason}" if identity.reason else ""
        raise BadInput(f"{path.name} is not a LoRA ({what}{reason})", field="loras")
    return path


def _registered(name: str) -> Path:
    from models.registry import ModelRegistry

    with ModelRegistry() as registry:
        model = registry.get(name)
    if model is None:
        raise BadInput(
            f"LoRA {name}: no such file, and no registered model by that id (see `hearth models list`)"
        )
    if model.missing:
        raise BadInput(f"LoRA {name}: its file {model.path} is gone")
    return Path(model.path)


def resolve_loras(loras: str) -> tuple[tuple[LoraChoice, Path], ...]:
    """Each LoRA of a request's ``loras`` field with its checked file (before any model loads)."""
    return tuple((choice, resolve_lora(choice.name)) for choice in parse_loras(loras))


@contextmanager
def applied_loras(pipe, chosen: tuple[tuple[LoraChoice, Path], ...]) -> Iterator[None]:
    """Inside the block, ``pipe`` (and every pipeline sharing its UNet and text encoder) runs with
    the ``resolve_loras`` LoRAs at their weights."""
    active = [
        (f"hearth_lora_{i}", choice, path) for i, (choice, path) in enumerate(chosen) if choice.weight != 0
    ]
    if not active:
        yield
        return
    try:
        for adapter, choice, path in active:
            _load(pipe, adapter, choice, path)
        try:
            pipe.set_adapters([a for a, _, _ in active], adapter_weights=[c.weight for _, c, _ in active])
        except ValueError as exc:  # a file whose keys matched no layer of this model loads as nothing
            raise BadInput(f"LoRA {', '.join(c.name for _, c, _ in active)}: {_first_line(exc)}") from None
        yield
    finally:
        pipe.unload_lora_weights()


def _load(pipe, adapter: str, choice: LoraChoice, path: Path) -> None:
    try:
        with warnings.catch_warnings():
            # peft warns on every adapter after the first; several at once is what was asked for.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
    except (ValueError, KeyError, IndexError, TypeError, RuntimeError, OSError) as exc:
        # A LoRA for another base model (shapes or module names do not match), or a malformed one
        # (an A matrix without its B) that diffusers' key mapping trips over.
        raise BadInput(f"LoRA {choice.name} does not fit this model: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
