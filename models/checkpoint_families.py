"""What a single-file safetensors checkpoint is, told from its tensor names and a few shapes.

Single files carry no config, so the names are the evidence. The markers are the ones the
ecosystem's loaders key on (ComfyUI's ``model_detection.py``, diffusers' ``single_file_utils.py``,
kohya's LoRA naming): an SD 1.x checkpoint holds ``cond_stage_model.transformer...`` (CLIP ViT-L),
SD 2.x ``cond_stage_model.model...`` (OpenCLIP), SDXL ``conditioner.embedders.1.model...``, SD3
``joint_blocks``, Flux ``double_blocks`` and ``single_blocks``, Wan ``blocks.N.self_attn`` beside
``patch_embedding``, LTX-Video ``patchify_proj`` and ``adaln_single``, an AnimateDiff motion
module ``down_blocks.N.motion_modules``, a LoRA ``lora_unet_``/``lora_down``/``lora_A``, a VAE
alone ``encoder.down.``/``decoder.up.`` without a UNet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from models.identity import FoundKind, Recognition

WAN_REASON = (
    "Wan single-file checkpoints are not supported yet: use a diffusers Wan folder "
    "(e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)"
)
LTX_REASON = "LTX-Video single-file checkpoints are not supported yet: use a diffusers LTX-Video folder"
UNET_ONLY_REASON = "a UNet alone, without its text encoder and VAE: Hearth needs a whole checkpoint"
INPAINT_REASON = "an inpainting checkpoint (9 input channels): Hearth's image tab runs text-to-image models"
LORA_REASON = (
    "a LoRA alone: it runs on top of its base model (the Image tab's LoRA list, or "
    "`hearth run image --loras ID`)"
)
VAE_REASON = "a VAE alone: Hearth cannot swap an image model's VAE yet"
MOTION_REASON = (
    "a motion module alone: Hearth cannot pair one with a Stable Diffusion model yet "
    "(use a diffusers AnimateDiff folder)"
)
TEXT_ENCODER_REASON = "a text encoder alone is part of a model, not one Hearth can run"
CHAT_SHARD_REASON = "a chat model's weights without their folder: Hearth needs config.json and the tokenizer"

_MOTION = re.compile(r"(?:^|\.)(?:down_blocks|up_blocks)\.\d+\.motion_modules\.|mid_block\.motion_modules\.")
_LORA = re.compile(r"\.lora_(?:down|up|A|B)\.|^lora_(?:unet|te\d?)_|\.(?:lokr|hada)_w|_lora\.(?:down|up)\.")
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
_KOHYA_BASES = (("sdxl", "SDXL"), ("sd_v1", "SD1.5"), ("sd_v2", "SD2"), ("sd3", "SD3"), ("flux", "Flux"))
_CROSS_ATTENTION_FAMILIES = {768: "SD1.5", 1024: "SD2", 2048: "SDXL"}


def recognise_checkpoint(shapes: Mapping[str, list[int]], metadata: Mapping[str, str]) -> Recognition:
    """Kind and family of a single-file checkpoint from its tensor ``shapes`` and ``__metadata__``."""
    names = list(shapes)
    keys = CheckpointKeys(names)
    if any(_LORA.search(name) for name in names):
        return Recognition(FoundKind.lora, lora_family(keys, shapes, metadata), LORA_REASON)
    if any(_MOTION.search(name) for name in names) and not keys.has("input_blocks."):
        return Recognition(FoundKind.motion_adapter, "AnimateDiff motion module", MOTION_REASON)
    for recognise in (_transformer_family, _stable_diffusion_family, _part_family):
        found = recognise(keys, shapes)
        if found is not None:
            return found
    example = names[0][:60] if names else "no tensors"
    return Recognition(
        FoundKind.unknown, "", f"not a model Hearth recognises ({len(names)} tensors, e.g. {example!r})"
    )


class CheckpointKeys:
    """Tensor names with the wrappers checkpoints put around a denoiser (``model.diffusion_model.``)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.bare = [_strip(name) for name in names]

    def has(self, fragment: str) -> bool:
        return any(fragment in name for name in self.names)

    def starts(self, prefix: str) -> bool:
        """A bare name (wrapper removed) starts with ``prefix``."""
        return any(name.startswith(prefix) for name in self.bare)

    def shape(self, shapes: Mapping[str, list[int]], bare_name: str) -> list[int]:
        for name, bare in zip(self.names, self.bare, strict=True):
            if bare == bare_name:
                return shapes[name]
        return []


def _strip(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _transformer_family(keys: CheckpointKeys, shapes) -> Recognition | None:
    """The diffusion transformers: Flux, SD3, LTX-Video, Wan."""
    if (keys.starts("double_blocks.") and keys.starts("single_blocks.")) or keys.starts(
        "single_transformer_blocks."
    ):
        return Recognition(FoundKind.image, "Flux")
    if keys.starts("joint_blocks."):
        return Recognition(FoundKind.image, _sd3_version(keys))
    if keys.starts("patchify_proj.") and keys.starts("adaln_single."):
        return Recognition(FoundKind.video, "LTX-Video", LTX_REASON)
    wan_blocks = keys.starts("blocks.0.self_attn.") or keys.starts("blocks.0.attn1.")
    if wan_blocks and keys.starts("patch_embedding."):
        return Recognition(FoundKind.video, _wan_version(keys, shapes), WAN_REASON)
    return None


def _sd3_version(keys: CheckpointKeys) -> str:
    """SD3.5 Large has 38 joint blocks, SD3.5 Medium a second attention (MMDiT-X); SD3 Medium neither."""
    if keys.starts("joint_blocks.37.") or keys.has(".x_block.attn2."):
        return "SD3.5"
    return "SD3"


def _wan_version(keys: CheckpointKeys, shapes) -> str:
    """Wan 2.2's 5B model patches 48 latent channels; Wan 2.1 (1.3B, 14B) 16, or 36 for image-to-video."""
    embedding = keys.shape(shapes, "patch_embedding.weight")
    return "Wan 2.2" if len(embedding) > 1 and embedding[1] == 48 else "Wan 2.1"


def _stable_diffusion_family(keys: CheckpointKeys, shapes) -> Recognition | None:
    """SD 1.x, 2.x and SDXL: a whole checkpoint, or a UNet alone (ComfyUI's unet folder)."""
    if keys.has("conditioner.embedders."):
        return Recognition(FoundKind.image, "SDXL")
    if not keys.starts("input_blocks."):
        return None
    family = _unet_family(keys, shapes)
    if family == "SDXL":
        return Recognition(FoundKind.image, "SDXL")
    first = keys.shape(shapes, "input_blocks.0.0.weight")
    if len(first) > 1 and first[1] == 9:
        return Recognition(FoundKind.image, f"{family} inpainting", INPAINT_REASON)
    if keys.has("cond_stage_model.model.transformer."):
        return Recognition(FoundKind.image, "SD2", "")
    if keys.has("cond_stage_model.transformer."):
        return Recognition(FoundKind.image, family, "")
    return Recognition(FoundKind.image, family, UNET_ONLY_REASON)


def _unet_family(keys: CheckpointKeys, shapes) -> str:
    """SDXL's UNet has a label embedding (its size conditioning); 1.x and 2.x differ in cross-attention width."""
    if keys.starts("label_emb."):
        return "SDXL"
    to_k = keys.shape(shapes, "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
    width = to_k[1] if len(to_k) > 1 else 768
    return _CROSS_ATTENTION_FAMILIES.get(width, "SD1.5")


def _part_family(keys: CheckpointKeys, shapes) -> Recognition | None:
    """Parts of a model saved alone: a VAE, a text encoder, a chat model's weights."""
    if (keys.starts("encoder.down.") and keys.starts("decoder.up.")) or (
        keys.starts("encoder.down_blocks.") and keys.starts("decoder.up_blocks.")
    ):
        conv_in = keys.shape(shapes, "decoder.conv_in.weight")
        latent = conv_in[1] if len(conv_in) > 1 else 4
        return Recognition(FoundKind.vae, "Flux/SD3 VAE" if latent == 16 else "SD VAE", VAE_REASON)
    if keys.starts("text_model.encoder.layers.") or keys.has("transformer.resblocks."):
        return Recognition(FoundKind.unknown, "CLIP text encoder", TEXT_ENCODER_REASON)
    if keys.starts("encoder.block.0.layer.0.SelfAttention."):
        return Recognition(FoundKind.unknown, "T5 text encoder", TEXT_ENCODER_REASON)
    if keys.has("layers.0.self_attn.q_proj.") and keys.has("embed_tokens."):
        return Recognition(FoundKind.chat, "transformers LLM", CHAT_SHARD_REASON)
    return None


def lora_family(keys: CheckpointKeys, shapes, metadata: Mapping[str, str]) -> str:
    """The base model a LoRA was trained for: its kohya/modelspec metadata, else its key names."""
    base = str(metadata.get("ss_base_model_version", "")).lower()
    for prefix, family in _KOHYA_BASES:
        if base.startswith(prefix):
            return family
    architecture = str(metadata.get("modelspec.architecture", "")).lower()
    for marker, family in (("flux", "Flux"), ("xl", "SDXL"), ("stable-diffusion-3", "SD3"), ("v2", "SD2")):
        if marker in architecture:
            return family
    if keys.has("double_blocks") or keys.has("single_transformer_blocks") or keys.has("single_blocks"):
        return "Flux"
    if keys.has("joint_blocks"):
        return "SD3"
    if keys.has("lora_te1_") or keys.has("lora_te2_") or keys.has("text_encoder_2"):
        return "SDXL"
    if keys.has(".self_attn.q.") or keys.has(".cross_attn.k."):
        return "Wan 2.1"
    return _lora_cross_attention_family(shapes)


def _lora_cross_attention_family(shapes) -> str:
    """A UNet LoRA's cross-attention key projection takes the text encoder's width (its down matrix's columns)."""
    for name, shape in shapes.items():
        down = "lora_down" in name or "lora_A" in name or "lora.down" in name
        if down and ("attn2_to_k" in name or "attn2.to_k" in name) and len(shape) == 2:
            return _CROSS_ATTENTION_FAMILIES.get(shape[1], "SD1.5")
    return "SD1.5"


def checkpoint_part(name: str) -> str:
    """The part of a bundled checkpoint a tensor belongs to: its offloaded tier holds the largest."""
    if name.startswith(("first_stage_model.", "vae.")):
        return "vae"
    if name.startswith("cond_stage_model."):
        return "text_encoder"
    for bundle in ("conditioner.embedders.", "text_encoders."):
        if name.startswith(bundle):
            return "text_encoder_" + name[len(bundle) :].split(".")[0]
    return "denoiser"
