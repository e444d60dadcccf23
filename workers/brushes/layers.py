"""Brush layers: the data a layer carries and the rule for stacking them.

Masks are kept at IMAGE resolution (H, W), float32 in [0, 1], because that is what the user
paints and what the ``.hearth`` file stores as PNG; ``render.latent_mask`` feathers a mask and
area-averages it down to latent resolution only when a layer is rendered.

Stacking rule. Every layer regenerates from the ORIGINAL cached latents, never from another
layer's result, so a layer's own branch does not depend on the others. The branches merge into
the composite bottom to top with ``lerp(composite, branch, opacity * mask)``:
- where masks do not overlap, each latent is written by at most one layer, so layers commute
  bit-exactly and hiding a layer gives exactly the composite without it;
- where masks overlap, the upper layer covers the lower one like paint (a fully opaque upper
  mask hides the lower layer there; a soft or translucent one lets part of it through), so
  reordering the stack matters only where masks overlap.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, replace
from typing import Any

from workers.errors import BadInput
from workers.protocol import BrushLayer
from workers.schema import default_of


@dataclass(frozen=True, eq=False)
class Layer:
    """A layer as the renderer sees it; ``mask`` is (H, W) float32 in [0, 1] at image resolution."""

    id: str
    mask: Any
    name: str = ""
    prompt: str = default_of(BrushLayer, "prompt")
    strength: float = default_of(BrushLayer, "strength")
    regen_step: int = default_of(BrushLayer, "regen_step")
    seed: int = default_of(BrushLayer, "seed")
    visible: bool = True
    opacity: float = default_of(BrushLayer, "opacity")
    feather: float = default_of(BrushLayer, "feather")

    @classmethod
    def from_message(cls, message: BrushLayer) -> Layer:
        return cls(
            id=message.id,
            mask=mask_from_png(message.mask_png),
            name=message.name,
            prompt=message.prompt,
            strength=message.strength,
            regen_step=message.regen_step,
            seed=message.seed,
            visible=message.visible,
            opacity=message.opacity,
            feather=message.feather,
        )

    def to_message(self) -> BrushLayer:
        return BrushLayer(
            id=self.id,
            mask_png=mask_to_png(self.mask),
            name=self.name,
            prompt=self.prompt,
            strength=self.strength,
            regen_step=self.regen_step,
            seed=self.seed,
            visible=self.visible,
            opacity=self.opacity,
            feather=self.feather,
        )

    def with_changes(self, **changes: Any) -> Layer:
        return replace(self, **changes)

    def branch_key(self) -> str:
        """What the layer's own denoising branch depends on (not opacity, visibility or name)."""
        digest = hashlib.sha256(self.mask.tobytes())
        fields = [self.prompt, self.strength, self.regen_step, self.seed, self.feather, list(self.mask.shape)]
        digest.update(json.dumps(fields).encode())
        return digest.hexdigest()


def visible_stack(layers: list[Layer] | tuple[Layer, ...]) -> list[Layer]:
    """The layers that contribute, bottom to top."""
    return [layer for layer in layers if layer.visible and layer.opacity > 0]


def mask_from_png(data: bytes):
    """8-bit grayscale PNG -> (H, W) float32 in [0, 1]."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError, ValueError):
        raise BadInput("a layer mask is not a readable PNG image") from None
    return np.asarray(gray, dtype=np.float32) / 255.0


def mask_to_png(mask) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = (np.clip(mask, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
