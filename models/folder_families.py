"""What a model folder is, told from its ``model_index.json`` (a diffusers pipeline) or its
``config.json`` (a transformers model, or one diffusers part saved alone)."""

from __future__ import annotations

import json
from pathlib import Path

from models.checkpoint_families import (
    MOTION_REASON,
    UNET_ONLY_REASON,
    VAE_REASON,
)
from models.identity import FoundKind, Recognition
from workers.errors import BadInput

MAX_CONFIG_BYTES = 1_000_000
"""Real configs are a few KB; a bigger one is not read."""
LTX_CONDITION_REASON = (
    "LTX-Video's condition pipeline is not supported yet: Hearth runs LTX-Video text- and image-to-video"
)
CHAT_FAMILIES = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "gemma": "Gemma",
    "gemma2": "Gemma 2",
    "gemma3": "Gemma 3",
    "gemma3_text": "Gemma 3",
    "phi3": "Phi3",
    "phi": "Phi",
    "smollm3": "SmolLM",
}
MUSIC_FAMILIES = {"musicgen": "MusicGen", "musicgen_melody": "MusicGen-Melody"}


def read_config(path: Path) -> dict:
    """A small JSON object from a model folder, or a clear error naming the file."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise BadInput(f"{path}: {size} bytes is too big for a model config (at most {MAX_CONFIG_BYTES})")
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadInput(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path} is not a JSON object")
    return config


def recognise_folder(folder: Path, name_hint: str = "") -> Recognition:
    """Kind and family of a diffusers pipeline folder or a transformers model folder."""
    if (folder / "model_index.json").is_file():
        return recognise_pipeline(folder, read_config(folder / "model_index.json"))
    if (folder / "config.json").is_file():
        config = read_config(folder / "config.json")
        if "_class_name" in config:
            return _recognise_part(config)
        return recognise_transformers(config, name_hint or folder.name)
    raise BadInput(f"folder {folder} has no config.json or model_index.json: not a model folder")


def recognise_pipeline(folder: Path, index: dict) -> Recognition:
    name = str(index.get("_class_name", ""))
    match name:
        case "StableDiffusionPipeline":
            width = _component_config(folder, "unet").get("cross_attention_dim")
            return Recognition(FoundKind.image, "SD2" if width == 1024 else "SD1.5")
        case "StableDiffusionXLPipeline":
            return Recognition(FoundKind.image, "SDXL")
        case "StableDiffusion3Pipeline":
            transformer = _component_config(folder, "transformer")
            newer = transformer.get("num_layers") == 38 or bool(transformer.get("dual_attention_layers"))
            return Recognition(FoundKind.image, "SD3.5" if newer else "SD3")
        case "FluxPipeline":
            return Recognition(FoundKind.image, "Flux")
        case "AnimateDiffPipeline":
            return Recognition(FoundKind.video, "AnimateDiff")
        case "AnimateDiffSDXLPipeline":
            return Recognition(FoundKind.video, "AnimateDiff SDXL")
        case "WanPipeline" | "WanImageToVideoPipeline":
            two = _listed(index.get("transformer_2")) or _component_config(folder, "transformer").get(
                "in_channels"
            ) in (48,)
            return Recognition(FoundKind.video, "Wan 2.2" if two else "Wan 2.1")
        case "LTXPipeline" | "LTXImageToVideoPipeline":
            return Recognition(FoundKind.video, "LTX-Video")
        case "LTXConditionPipeline":
            return Recognition(FoundKind.video, "LTX-Video", LTX_CONDITION_REASON)
        case "StableAudioPipeline":
            return Recognition(FoundKind.music, "Stable Audio")
    return Recognition(
        FoundKind.unknown, name, f"a {name or 'pipeline without a class name'}: not a pipeline Hearth runs"
    )


def recognise_transformers(config: dict, name_hint: str) -> Recognition:
    """A transformers folder: a chat model or MusicGen; anything else is named and left out."""
    model_type = str(config.get("model_type", ""))
    if model_type in MUSIC_FAMILIES:
        return Recognition(FoundKind.music, MUSIC_FAMILIES[model_type])
    if model_type in CHAT_FAMILIES:
        family = "SmolLM" if "smollm" in name_hint.lower() else CHAT_FAMILIES[model_type]
        architectures = config.get("architectures") or []
        causal = any(str(name).endswith("ForCausalLM") for name in architectures) or not architectures
        reason = "" if causal else f"a {architectures[0]}: Hearth's chat runs causal language models"
        return Recognition(FoundKind.chat, family, reason)
    what = model_type or "model without a model_type"
    return Recognition(FoundKind.unknown, model_type, f"a {what}: not a kind of model Hearth runs")


def _recognise_part(config: dict) -> Recognition:
    name = str(config.get("_class_name", ""))
    if name == "MotionAdapter":
        return Recognition(FoundKind.motion_adapter, "AnimateDiff motion module", MOTION_REASON)
    if name.startswith("AutoencoderKL"):
        latent = config.get("latent_channels", 4)
        return Recognition(FoundKind.vae, "Flux/SD3 VAE" if latent == 16 else "SD VAE", VAE_REASON)
    if name == "UNet2DConditionModel":
        sdxl = config.get("addition_embed_type") == "text_time"
        family = "SDXL" if sdxl else ("SD2" if config.get("cross_attention_dim") == 1024 else "SD1.5")
        return Recognition(FoundKind.image, family, UNET_ONLY_REASON)
    return Recognition(FoundKind.unknown, name, f"a {name} alone is part of a model, not one Hearth can run")


def _component_config(folder: Path, component: str) -> dict:
    path = folder / component / "config.json"
    return read_config(path) if path.is_file() else {}


def _listed(entry: object) -> bool:
    """A model_index.json component entry that names a class (``[null, null]`` means absent)."""
    return isinstance(entry, list) and any(item is not None for item in entry)
