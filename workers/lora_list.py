"""The ``loras`` field of an image request: which LoRAs, at which weights, as one line of text.

``"detail.safetensors:0.8, my-style-lora, /loras/ink.safetensors:-0.5"``: entries separated by
commas, each a LoRA file or a registered model id, with its weight after the last colon (1 when
left out). One line of text travels through the CLI, the HTTP API and saved settings unchanged;
a Windows path keeps its drive colon because a weight must parse as a number. Pure: the window
reads and writes the list with it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workers.errors import BadInput

MAX_LORAS = 16
"""More LoRAs than anyone stacks; each one is read and patched into the model per job."""
MAX_LORA_WEIGHT = 4.0
"""LoRA weights beyond +-4 only burn the image; negative weights are real (slider LoRAs)."""


@dataclass(frozen=True, slots=True)
class LoraChoice:
    """One LoRA of a request: what names it (a path or a registry id) and how strongly it applies."""

    name: str
    weight: float = 1.0


def parse_loras(text: str) -> tuple[LoraChoice, ...]:
    """The LoRAs of a ``loras`` field; ``BadInput`` naming the entry that is not ``NAME[:WEIGHT]``."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if len(entries) > MAX_LORAS:
        raise BadInput(f"at most {MAX_LORAS} LoRAs at once, got {len(entries)}", field="loras")
    return tuple(_entry(part) for part in entries)


def format_loras(choices) -> str:
    """The ``loras`` text for ``LoraChoice``s (weight 1 written out, so the list reads the same)."""
    return ", ".join(f"{c.name}:{_weight_text(c.weight)}" for c in choices)


def _entry(part: str) -> LoraChoice:
    name, weight = part, 1.0
    head, sep, tail = part.rpartition(":")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            pass  # a colon inside the name (C:\loras\x.safetensors), no weight given
        else:
            name = head.strip()
    if not name:
        raise BadInput(f"LoRA entry {part!r} has a weight but no file or model id", field="loras")
    if not math.isfinite(weight) or abs(weight) > MAX_LORA_WEIGHT:
        raise BadInput(
            f"LoRA {name}: weight must be between {-MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}, got {tail}",
            field="loras",
        )
    return LoraChoice(name, weight)


def _weight_text(weight: float) -> str:
    return f"{weight:g}"
