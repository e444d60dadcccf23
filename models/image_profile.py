"""The settings an image model is made for, read from its configs or headers, never its weights.

SD 1.5 draws at 512², SDXL at 1024² in about 30 steps, Flux schnell in 4 steps without guidance.
The request schema's own defaults suit the demo model; each front end (CLI, API, window) fills the
size, steps and guidance the user did not set from here, so ``hearth run image --model
sdxl.safetensors`` draws at the size the model was trained for. Torch-free: the window calls it.
"""

from __future__ import annotations

from pathlib import Path

from models.checkpoint_families import recognise_checkpoint
from models.folder_families import read_config, recognise_folder
from models.identity import FoundKind, Recognition
from models.image_families import ImageFamily, profile_for
from models.safetensors_header import read_safetensors_header
from models.sources import SourceKind, classify
from workers.errors import HearthError

RECOMMENDED_FIELDS = ("width", "height", "steps", "guidance")
"""The request fields a model's family recommends values for."""


def recommended_profile(spec: str) -> ImageFamily | None:
    """The family profile of image model ``spec``; None for the demo model, or when the files do
    not say (the loader then explains why the model cannot run)."""
    try:
        source = classify(spec)
        if source.kind is SourceKind.local_folder and source.path is not None:
            return _profile(recognise_folder(source.path, source.path.name), source.path.name, source.path)
        if source.kind is SourceKind.single_file and source.path is not None:
            if source.path.suffix != ".safetensors":
                return None  # a pickle's tensor names need it unpickled: only a worker does that
            shapes, metadata = safetensors_shapes(source.path)
            return _profile(recognise_checkpoint(shapes, metadata), source.path.name, None)
        if source.kind is SourceKind.hub_id:
            folder = _cached_hub_configs(spec)
            return None if folder is None else _profile(recognise_folder(folder, spec), spec, folder)
    except (HearthError, OSError, ValueError):
        return None
    return None


def recommended_settings(profile: ImageFamily) -> dict[str, int | float]:
    """``width``, ``height``, ``steps`` and ``guidance`` as request fields, as ``profile`` recommends."""
    return {name: getattr(profile, name) for name in RECOMMENDED_FIELDS}


def describe_settings(profile: ImageFamily) -> str:
    """ "SDXL: made for 1024×1024, 30 steps, CFG 5.0"."""
    guidance = "no guidance" if profile.guidance <= 1 else f"CFG {profile.guidance:g}"
    return f"{profile.name}: made for {profile.width}×{profile.height}, {profile.steps} steps, {guidance}"


def folder_hints(folder: Path) -> dict:
    """What the configs say beyond the family: a few-step schedule, a Flux guidance embedding."""
    hints = {}
    scheduler = folder / "scheduler" / "scheduler_config.json"
    if scheduler.is_file():
        hints["few_step"] = read_config(scheduler).get("timestep_spacing") == "trailing"
    transformer = folder / "transformer" / "config.json"
    if transformer.is_file():
        hints["guidance_embeds"] = bool(read_config(transformer).get("guidance_embeds", False))
    return hints


def safetensors_shapes(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor names and shapes, and the string ``__metadata__``, from a safetensors header."""
    header = read_safetensors_header(path)
    metadata = header.get("__metadata__")
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)} if isinstance(metadata, dict) else {}
    return {name: t["shape"] for name, t in header.items() if name != "__metadata__"}, strings


def _profile(recognition: Recognition, name_hint: str, folder: Path | None) -> ImageFamily | None:
    if recognition.kind is not FoundKind.image or recognition.reason:
        return None
    return profile_for(recognition.family, name_hint, **(folder_hints(folder) if folder else {}))


def _cached_hub_configs(repo: str) -> Path | None:
    """A hub repo's snapshot folder when the huggingface_hub cache holds it; never downloads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json"], local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a half-written cache, no such repo: unknown
        return None
