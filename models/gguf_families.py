"""What a GGUF file is, told from its metadata: a chat model for llama.cpp, or a diffusion model
quantized for ComfyUI-GGUF (which Hearth does not run)."""

from __future__ import annotations

from collections.abc import Mapping

from models.chat_memory import GGUFFootprint
from models.identity import FoundKind, Recognition

LLM_FAMILIES = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "qwen2moe": "Qwen2 MoE",
    "qwen3moe": "Qwen3 MoE",
    "gemma": "Gemma",
    "gemma2": "Gemma 2",
    "gemma3": "Gemma 3",
    "phi2": "Phi2",
    "phi3": "Phi3",
    "smollm3": "SmolLM",
    "granite": "Granite",
    "olmo2": "OLMo 2",
    "deepseek2": "DeepSeek",
}
"""llama.cpp architectures Hearth has a family name for; SmolLM2 ships as ``llama``."""
DIFFUSION_FAMILIES = {
    # ComfyUI-GGUF's architecture names (city96/ComfyUI-GGUF, loader.py).
    "flux": (FoundKind.image, "Flux"),
    "sd1": (FoundKind.image, "SD1.5"),
    "sdxl": (FoundKind.image, "SDXL"),
    "sd3": (FoundKind.image, "SD3"),
    "aura": (FoundKind.image, "AuraFlow"),
    "hidream": (FoundKind.image, "HiDream"),
    "lumina2": (FoundKind.image, "Lumina 2"),
    "qwen_image": (FoundKind.image, "Qwen-Image"),
    "ltxv": (FoundKind.video, "LTX-Video"),
    "hyvid": (FoundKind.video, "HunyuanVideo"),
    "wan": (FoundKind.video, "Wan 2.1"),
    "cosmos": (FoundKind.video, "Cosmos"),
}
DIFFUSION_GGUF_REASON = "GGUF diffusion models (ComfyUI-GGUF) are not supported: Hearth runs GGUF chat models"
NO_TEMPLATE_REASON = (
    "it has no chat template (tokenizer.chat_template): a base model, or converted without one; "
    "Hearth's chat needs an instruct/chat GGUF"
)


def recognise_gguf(
    metadata: Mapping[str, object], footprint: GGUFFootprint, name_hint: str = ""
) -> Recognition:
    arch = footprint.architecture
    if arch in DIFFUSION_FAMILIES:
        kind, family = DIFFUSION_FAMILIES[arch]
        return Recognition(kind, family, DIFFUSION_GGUF_REASON)
    if footprint.layers <= 0 or not any(footprint.block_bytes):
        return Recognition(FoundKind.unknown, arch, "it holds no transformer layers: not a chat model GGUF")
    names = " ".join(str(metadata.get(key, "")) for key in ("general.name", "general.basename"))
    family = "SmolLM" if "smollm" in f"{names} {name_hint}".lower() else LLM_FAMILIES.get(arch, "")
    if not family:
        return Recognition(
            FoundKind.chat,
            arch,
            f"its architecture {arch!r} is not one Hearth knows; llama.cpp may not load it",
        )
    return Recognition(FoundKind.chat, family, "" if footprint.chat_template.strip() else NO_TEMPLATE_REASON)
