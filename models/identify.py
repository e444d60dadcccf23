"""Identify a model file or folder from its headers alone: no weights are read, no torch.

A safetensors file by its tensor names (``models/checkpoint_families.py``), a GGUF by its
metadata (``models/gguf_families.py``), a folder by its ``model_index.json`` or ``config.json``
(``models/folder_families.py``); parameters and precision from the header shapes
(``models/tensor_counts.py``); the bytes of each tier from those (``models/fit.py``). Every
header is checked against the file's real size first (``models/safetensors_header.py``,
``models/gguf_header.py``): a damaged or hostile file is a ``BadInput`` naming it, never a crash.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from models.chat_memory import ChatModelShape, footprint_from_header, read_gguf_header, shape_from_config
from models.checkpoint_families import checkpoint_part, recognise_checkpoint
from models.fit import chat_tiers, gguf_tiers, image_tiers, music_tiers, video_tiers
from models.folder_families import read_config, recognise_folder
from models.gguf_families import recognise_gguf
from models.gguf_header import MAGIC as GGUF_MAGIC
from models.gguf_header import require_gguf
from models.identity import FoundKind, ModelIdentity, Recognition
from models.safetensors_header import read_safetensors_header
from models.sources import PICKLE_SUFFIXES
from models.tensor_counts import TensorCount, count_gguf, count_safetensors
from workers.errors import BadInput

PICKLE_REASON = (
    "a pickle checkpoint: not opened, because loading one can run code; convert it to .safetensors"
)
NO_WEIGHTS_REASON = "no weights (*.safetensors) in the folder"
PICKLE_ONLY_REASON = (
    "only pickle weights (.bin/.pt), which can run code when loaded; convert them to .safetensors"
)
MAX_CONFIG_SIZE = 1 << 32
"""No real layer count, width or vocabulary comes near it; a config claiming more is hostile."""
_VARIANT = re.compile(r"\.(?:fp16|bf16|fp32|non_ema|ema)\.safetensors$")


def identify(path: Path, name_hint: str = "") -> ModelIdentity:
    """What ``path`` is; ``BadInput`` (naming the file) when it is not a readable model.

    ``name_hint``: what the model is called where it was found (a hub id, an Ollama name), which
    tells a SmolLM from the Llama its config says it is.
    """
    path = Path(path)
    try:
        return _identify(path, name_hint)
    except OSError as exc:  # unreadable, vanished mid-read, a symlink loop
        raise BadInput(f"{path}: {exc.strerror or exc}") from None


def _identify(path: Path, name_hint: str) -> ModelIdentity:
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        return identify_folder(path, name_hint)
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{path} is not a regular file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _pickle_identity(path, info.st_size)
    match _sniff(path):
        case "gguf":
            return identify_gguf(path, name_hint)
        case "safetensors":
            return identify_safetensors(path)
    raise BadInput(f"{path.name} is not a model file (use a .safetensors or .gguf file, or a model folder)")


def _sniff(path: Path) -> str:
    """The format by the first bytes (an Ollama blob has no suffix), else by the suffix, so a
    damaged ``.safetensors`` is refused by its own checker with its own message."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "safetensors"
    return {".gguf": "gguf", ".safetensors": "safetensors", ".sft": "safetensors"}.get(
        path.suffix.lower(), ""
    )


def identify_safetensors(path: Path) -> ModelIdentity:
    header = read_safetensors_header(path)
    metadata = header.get("__metadata__")
    metadata = {k: v for k, v in metadata.items() if isinstance(v, str)} if isinstance(metadata, dict) else {}
    tensors = {name: tensor for name, tensor in header.items() if name != "__metadata__"}
    count = count_safetensors(tensors, path.name, prefix_of=checkpoint_part)
    recognition = recognise_checkpoint({name: t["shape"] for name, t in tensors.items()}, metadata)
    return _identity(path, "safetensors", recognition, count, path.stat().st_size)


def identify_gguf(path: Path, name_hint: str = "") -> ModelIdentity:
    require_gguf(path)
    metadata, tensors = read_gguf_header(path)
    footprint = footprint_from_header(metadata, tensors, path.name)
    size = path.stat().st_size
    if footprint.file_weight_bytes > size:
        raise BadInput(
            f"{path.name} is damaged or hostile: its tensors claim {footprint.file_weight_bytes} bytes "
            f"but the file holds {size}"
        )
    recognition = recognise_gguf(metadata, footprint, name_hint)
    count = count_gguf(tensors)
    count.tensor_bytes = footprint.file_weight_bytes
    if recognition.kind is FoundKind.chat:
        tiers = gguf_tiers(footprint)
    else:
        tiers = _diffusion_tiers(recognition, {"denoiser": count.parameters})
    return ModelIdentity(
        path=str(path),
        format="gguf",
        kind=recognition.kind,
        family=recognition.family,
        parameters=count.parameters,
        dtype=footprint.file_type,
        file_bytes=size,
        reason=recognition.reason,
        tiers=tiers,
    )


def identify_folder(folder: Path, name_hint: str = "") -> ModelIdentity:
    recognition = recognise_folder(folder, name_hint)
    count, size = TensorCount(), 0
    for weights in weight_files(folder):
        part = weights.parent.name if weights.parent != folder else "model"
        header = read_safetensors_header(weights)
        count.add(count_safetensors(header, f"{folder.name}/{weights.name}", prefix_of=lambda _n, p=part: p))
        size += weights.stat().st_size
    recognition = _with_weights_reason(folder, recognition, count)
    fmt = "diffusers" if (folder / "model_index.json").is_file() else "transformers"
    identity = _identity(folder, fmt, recognition, count, size)
    if recognition.kind is FoundKind.chat:
        identity = replace(identity, tiers=chat_tiers(_chat_shape(folder / "config.json")))
    return identity


def _chat_shape(config_path: Path) -> ChatModelShape:
    """The decoder's shape from config.json, every number a sane positive size."""
    config = read_config(config_path)
    try:
        shape = shape_from_config(config)
    except (TypeError, ValueError, AttributeError) as exc:  # "hidden_size": "wide", a list for text_config
        raise BadInput(f"{config_path} has an unreadable model shape ({exc})") from None
    sizes = (shape.vocab, shape.hidden, shape.layers, shape.intermediate, shape.heads, shape.kv_heads)
    sane = all(0 < size <= MAX_CONFIG_SIZE for size in sizes) and shape.hidden >= shape.heads
    if not sane:
        raise BadInput(f"{config_path} describes an impossible model shape ({shape})")
    return shape


def weight_files(folder: Path) -> list[Path]:
    """The safetensors a folder's model is made of: a pipeline's parts (the subfolders its
    model_index.json names; a hub repo may also hold single-file checkpoints beside them), else
    the folder's own. A variant (``.fp16.``) counts only where its part has no plain file."""
    places = [folder]
    if (folder / "model_index.json").is_file():
        index = read_config(folder / "model_index.json")
        places = [folder / name for name, entry in sorted(index.items()) if _is_part(name, entry, folder)]
    found: list[Path] = []
    for place in places:
        files = sorted(p for p in place.glob("*.safetensors") if p.is_file())
        plain = [p for p in files if not _VARIANT.search(p.name)]
        found += plain or files
    return found


def _is_part(name: str, entry: object, folder: Path) -> bool:
    """A model_index.json entry naming a part saved in a subfolder (``"unet": ["diffusers", ...]``)."""
    named = isinstance(entry, list) and any(item is not None for item in entry)
    return named and not name.startswith((".", "_")) and "/" not in name and (folder / name).is_dir()


def _with_weights_reason(folder: Path, recognition: Recognition, count: TensorCount) -> Recognition:
    if count.parameters or recognition.reason or recognition.kind is FoundKind.unknown:
        return recognition
    pickled = any(folder.glob(f"*{suffix}") for suffix in PICKLE_SUFFIXES) or any(
        folder.glob(f"*/*{suffix}") for suffix in PICKLE_SUFFIXES
    )
    reason = PICKLE_ONLY_REASON if pickled else NO_WEIGHTS_REASON
    return Recognition(recognition.kind, recognition.family, reason)


def _identity(path: Path, fmt: str, recognition: Recognition, count: TensorCount, size: int) -> ModelIdentity:
    parts = dict(count.by_prefix) or {"model": count.parameters}
    return ModelIdentity(
        path=str(path),
        format=fmt,
        kind=recognition.kind,
        family=recognition.family,
        parameters=count.parameters,
        dtype=count.dtype,
        file_bytes=size,
        reason=recognition.reason,
        tiers=_diffusion_tiers(recognition, parts),
    )


def _diffusion_tiers(recognition: Recognition, parts: Mapping[str, int]):
    """The tiers of a model that runs alone; a part (LoRA, VAE, motion module) has none."""
    match recognition.kind:
        case FoundKind.image:
            return image_tiers(recognition.family, parts)
        case FoundKind.video:
            return video_tiers(recognition.family, parts)
        case FoundKind.music:
            return music_tiers(sum(parts.values()))
    return ()


def _pickle_identity(path: Path, size: int) -> ModelIdentity:
    return ModelIdentity(
        path=str(path),
        format="pickle",
        kind=FoundKind.unknown,
        family="",
        parameters=0,
        dtype="",
        file_bytes=size,
        reason=PICKLE_REASON,
    )
