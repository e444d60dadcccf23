"""``project.json`` of a ``.hearth`` file: what it must hold, checked field by field.

A project may come from anyone, so nothing in it is used before it has the type and range Hearth
itself would have written. Fields this Hearth does not know are dropped (a later version may add
some; they are never acted on); a known field with a wrong type or value refuses the project
with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from workers.errors import BadInput
from workers.protocol import (
    BRUSH_MERGE_STEPS,
    MAX_BRUSH_LAYERS,
    MAX_GUIDANCE,
    MAX_SIDE,
    MAX_STEPS,
    SEED_MAX,
    BrushLayer,
)
from workers.safe_names import safe_name

FORMAT = "hearth-brushes"
VERSION = 1
MAX_LAYERS = MAX_BRUSH_LAYERS
"""The limits are the protocol's: a project holds what a brush request may carry, no more."""
SOURCES = ("generated", "photo")
PARAMETER_TYPES = {
    "session_id": "str",
    "model": "str",
    "prompt": "str",
    "negative_prompt": "str",
    "width": "int",
    "height": "int",
    "steps": "int",
    "guidance": "float",
    "seed": "int",
    "source": "str",
}
PARAMETER_KEYS = tuple(PARAMETER_TYPES)
# The layer's fields and their types come from the protocol's BrushLayer (declared once).
LAYER_TYPES = {f.name: str(f.type) for f in dataclasses.fields(BrushLayer) if f.name != "mask_png"}
LAYER_KEYS = tuple(LAYER_TYPES)
_PYTHON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def checked_manifest(manifest: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(params, layer fields) of a decoded ``project.json``; ``BadInput`` naming the first bad field."""
    if not isinstance(manifest, dict):
        raise BadInput("project.json is not an object")
    if manifest.get("format") != FORMAT:
        raise BadInput("not a brush project")
    if manifest.get("version") != VERSION:
        raise BadInput(f"version {manifest.get('version')!r}; this Hearth reads version {VERSION}")
    return checked_params(manifest.get("params")), checked_layers(manifest.get("layers", []))


def checked_params(params: Any) -> dict[str, Any]:
    """The session parameters, typed and in range; unknown keys are left out."""
    if not isinstance(params, dict):
        raise BadInput("project.json has no parameters")
    checked = {key: _typed(f"parameter {key!r}", params, key, kind) for key, kind in PARAMETER_TYPES.items()}
    safe_name("session id", checked["session_id"])
    for side in ("width", "height"):
        value = checked[side]
        if not 8 <= value <= MAX_SIDE or value % 8:
            raise BadInput(f"parameter {side!r} must be a multiple of 8 from 8 to {MAX_SIDE}, got {value}")
    if not BRUSH_MERGE_STEPS < checked["steps"] <= MAX_STEPS:
        raise BadInput(f"parameter 'steps' must be from {BRUSH_MERGE_STEPS + 1} to {MAX_STEPS}")
    if not (math.isfinite(checked["guidance"]) and 0 <= checked["guidance"] <= MAX_GUIDANCE):
        raise BadInput(f"parameter 'guidance' must be between 0 and {MAX_GUIDANCE:g}")
    if not 0 <= checked["seed"] <= SEED_MAX:
        raise BadInput(f"parameter 'seed' must be from 0 to {SEED_MAX}")
    if checked["source"] not in SOURCES:
        raise BadInput(f"parameter 'source' must be one of {', '.join(SOURCES)}")
    return checked


def checked_layers(layers: Any) -> list[dict[str, Any]]:
    """Each layer's fields (without its mask), typed, with a valid id used by no other layer."""
    if not isinstance(layers, list):
        raise BadInput("project.json's layers are not a list")
    if len(layers) > MAX_LAYERS:
        raise BadInput(f"{len(layers)} layers; at most {MAX_LAYERS}")
    checked, seen = [], set()
    for index, entry in enumerate(layers):
        if not isinstance(entry, dict):
            raise BadInput(f"layer {index} is not an object")
        fields = {
            key: _typed(f"layer {index} field {key!r}", entry, key, kind)
            for key, kind in LAYER_TYPES.items()
            if key in entry or key == "id"
        }
        layer_id = safe_name("layer id", fields["id"])
        if layer_id in seen:
            raise BadInput(f"two layers share the id {layer_id!r}")
        seen.add(layer_id)
        checked.append(fields)
    return checked


def _typed(where: str, data: dict, key: str, kind: str) -> Any:
    if key not in data:
        raise BadInput(f"{where} is missing")
    value = data[key]
    bool_where_number = isinstance(value, bool) and kind != "bool"
    if bool_where_number or not isinstance(value, _PYTHON_TYPES[kind]):
        raise BadInput(f"{where} must be {kind}, got {type(value).__name__}")
    return float(value) if kind == "float" and isinstance(value, int | float) else value
