"""Turn what the user typed in a model box into a typed source, or a clear error.

Sources: a catalog id, a local folder (diffusers/transformers layout), a single-file checkpoint,
a GGUF file, or a hub id (read from the huggingface_hub cache, downloaded when online).
Safetensors by default; pickle-based weights only when the user explicitly allows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from models.catalog import entry
from models.gguf_header import require_gguf
from models.safetensors_header import require_safetensors
from workers.errors import BadInput, MissingModel

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
SAFE_SUFFIXES = (".safetensors",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SourceKind(StrEnum):
    catalog = "catalog"
    local_folder = "local_folder"
    single_file = "single_file"
    gguf = "gguf"
    hub_id = "hub_id"


@dataclass(frozen=True, slots=True)
class ModelSource:
    kind: SourceKind
    spec: str
    path: Path | None = None


def classify(spec: str, *, allow_pickle: bool = False) -> ModelSource:
    """Classify ``spec`` without loading anything heavy; raise MissingModel/BadInput with the fix."""
    spec = (spec or "").strip()
    if not spec:
        raise BadInput("no model given")
    if entry(spec) is not None:
        return ModelSource(SourceKind.catalog, spec)
    path = Path(spec).expanduser()
    looks_like_path = spec.startswith(("/", ".", "~")) or path.suffix in (
        *PICKLE_SUFFIXES,
        *SAFE_SUFFIXES,
        ".gguf",
    )
    if path.exists():
        return _classify_path(spec, path, allow_pickle)
    if looks_like_path or not _HUB_ID.match(spec):
        raise MissingModel(
            f"model {spec!r} not found: no such file or folder, and it is not a hub id (owner/name)"
        )
    return ModelSource(SourceKind.hub_id, spec)


def _classify_path(spec: str, path: Path, allow_pickle: bool) -> ModelSource:
    if path.is_dir():
        if not any((path / name).exists() for name in ("config.json", "model_index.json")):
            raise MissingModel(f"folder {path} has no config.json or model_index.json: not a model folder")
        require_safe_weights(path)
        return ModelSource(SourceKind.local_folder, spec, path)
    if path.suffix == ".gguf":
        require_gguf(path)
        return ModelSource(SourceKind.gguf, spec, path)
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise BadInput(
                f"{path.name} is a pickle checkpoint, which can run arbitrary code when loaded; "
                "convert it to .safetensors or allow pickle checkpoints in Settings"
            )
        return ModelSource(SourceKind.single_file, spec, path)
    if path.suffix in SAFE_SUFFIXES:
        require_safetensors(path)
        return ModelSource(SourceKind.single_file, spec, path)
    raise BadInput(
        f"{path.name}: unsupported model file type {path.suffix!r} (use .safetensors, .gguf or a folder)"
    )


def require_safe_weights(folder: Path) -> None:
    """Every safetensors file of a model folder (diffusers keeps one per component, one level down)."""
    for weights in (*folder.glob("*.safetensors"), *folder.glob("*/*.safetensors")):
        require_safetensors(weights)
