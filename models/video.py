"""Video model loaders (workers only): the demo AnimateDiff and Wan pipelines, and real ones.

Families: AnimateDiff on SD1.5 and on SDXL (a UNet with motion modules), Wan 2.1 and 2.2
(diffusion transformers; 2.2 A14B splits the steps between two transformers at a boundary
timestep), text-to-video and image-to-video, and LTX-Video (text- and image-to-video).

Demo models are tiny random-weight pipelines built from configs on first run (docs/FIELD-NOTES.md
§4(b),(c)), saved once with ``save_pretrained`` into the models folder and loaded back through
the same ``from_pretrained`` path a real local model takes. Real models come from a hub id (cache
first), a local diffusers folder, or a single-file checkpoint (AnimateDiff only).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.demo_store import TINY_T5, ensure_saved
from models.sources import SourceKind, classify
from models.tiny_parts import tiny_clip_text_encoder, tiny_clip_tokenizer, tiny_sd_vae
from models.tiny_tokenizers import fast_tokenizer
from workers.errors import MissingModel

DEMO_ANIMATEDIFF_ID = "demo-animatediff"
DEMO_WAN_ID = "demo-wan"
ANIMATEDIFF_DEFAULT_MAX_FRAMES = 32
"""AnimateDiff motion modules learn positional embeddings for this many frames (motion_max_seq_length)."""
WAN_DEFAULT_MAX_FRAMES = 81
"""Wan 2.1 and 2.2 are trained on clips of up to 81 frames (4k+1)."""
LTX_DEFAULT_MAX_FRAMES = 257
"""LTX-Video makes clips of up to 257 frames (8k+1)."""

PIPELINES = {
    "AnimateDiffPipeline": ("animatediff", False),
    "AnimateDiffSDXLPipeline": ("animatediff-sdxl", False),
    "WanPipeline": ("wan", False),
    "WanImageToVideoPipeline": ("wan", True),
    "LTXPipeline": ("ltx", False),
    "LTXImageToVideoPipeline": ("ltx", True),
}
"""Pipeline class -> (family, takes a first-frame image)."""
UNET_FAMILIES = ("animatediff", "animatediff-sdxl")
SUPPORTED = "AnimateDiff (SD1.5 or SDXL), Wan 2.1/2.2 (text- or image-to-video) or LTX-Video"


def build_demo_animatediff(seed: int = 0):
    """Tiny AnimateDiff (UNet + motion adapter, random weights) from configs; docs/FIELD-NOTES.md §4(b)."""
    import torch
    from diffusers import (
        AnimateDiffPipeline,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    channels = (32, 64)
    unet = UNet2DConditionModel(
        block_out_channels=channels,
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    motion_adapter = MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=2,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
        motion_max_seq_length=ANIMATEDIFF_DEFAULT_MAX_FRAMES,
    )
    vae = tiny_sd_vae()
    text_encoder = tiny_clip_text_encoder()
    tokenizer = tiny_clip_tokenizer()
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, steps_offset=1
    )
    return AnimateDiffPipeline(
        unet=unet,
        motion_adapter=motion_adapter,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        feature_extractor=None,
        image_encoder=None,
    )


def build_demo_wan(seed: int = 0):
    """Tiny Wan text-to-video (transformer, causal 3D VAE, UMT5) from configs; docs/FIELD-NOTES.md §4(c)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    text_encoder = UMT5EncoderModel(UMT5Config(**TINY_T5))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    return WanPipeline(
        tokenizer=fast_tokenizer(vocab_size=300),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer,
    )


DEMO_BUILDERS = {DEMO_ANIMATEDIFF_ID: build_demo_animatediff, DEMO_WAN_ID: build_demo_wan}


def ensure_demo(model_id: str) -> Path:
    """A demo video model's folder, built and saved on first use."""
    return ensure_saved(model_id, lambda folder: DEMO_BUILDERS[model_id]().save_pretrained(folder))


def load_video_pipeline(spec: str, allow_pickle: bool = False):
    """Load a video pipeline of a supported family (``PIPELINES``) from any supported source, on CPU."""
    source = classify(spec, allow_pickle=allow_pickle)
    try:
        if source.kind is SourceKind.catalog:
            if spec not in DEMO_BUILDERS:
                raise MissingModel(f"{spec} is not a video model")
            pipe = _from_folder(ensure_demo(spec), allow_pickle)
        elif source.kind is SourceKind.local_folder and source.path is not None:
            pipe = _from_folder(source.path, allow_pickle)
        elif source.kind is SourceKind.single_file:
            from diffusers import AnimateDiffPipeline

            pipe = AnimateDiffPipeline.from_single_file(str(source.path))
        elif source.kind is SourceKind.hub_id:
            pipe = _from_hub(spec)
        else:
            raise MissingModel(f"{spec} is a {source.kind.value} file, not a video model")
    except (OSError, ValueError, KeyError) as exc:
        raise MissingModel(f"could not load video model {spec!r}: {exc}") from None
    _require_video_pipeline(spec, pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_class(folder: Path):
    import diffusers

    index = json.loads((Path(folder) / "model_index.json").read_text())
    name = index.get("_class_name", "")
    if name not in PIPELINES:
        raise MissingModel(f"{folder} holds a {name or 'unknown'} pipeline; video needs {SUPPORTED}")
    return getattr(diffusers, name)


def _from_folder(folder: Path, allow_pickle: bool):
    if not (Path(folder) / "model_index.json").exists():
        raise MissingModel(f"{folder} has no model_index.json: not a diffusers pipeline folder")
    return _pipeline_class(folder).from_pretrained(folder, use_safetensors=not allow_pickle)


def _from_hub(hub_id: str):
    """The huggingface_hub cache first (works offline), then a download when online."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(hub_id, local_files_only=True)
    except OSError:
        return DiffusionPipeline.from_pretrained(hub_id)


def _require_video_pipeline(spec: str, pipe) -> None:
    if video_family(pipe) is None:
        raise MissingModel(f"{spec} is a {type(pipe).__name__}, not a video model; Hearth runs {SUPPORTED}")


def video_family(pipe) -> str | None:
    """ "animatediff" / "animatediff-sdxl" (UNet + motion modules), "wan" or "ltx" (diffusion
    transformers), or None."""
    return PIPELINES.get(type(pipe).__name__, (None, False))[0]


def is_image_to_video(pipe) -> bool:
    """True when the pipeline animates a first-frame image (it needs ``VideoRequest.image``)."""
    return PIPELINES.get(type(pipe).__name__, (None, False))[1]


def denoisers(pipe) -> list:
    """The networks a step runs: the motion UNet, or the transformer(s) (Wan 2.2 A14B has two)."""
    if video_family(pipe) in UNET_FAMILIES:
        return [pipe.unet]
    found = [getattr(pipe, name, None) for name in ("transformer", "transformer_2")]
    return [model for model in found if model is not None]


def family_label(pipe) -> str:
    """What the UI and the output's parameters call the model: "Wan 2.2 image-to-video", say."""
    family = video_family(pipe) or type(pipe).__name__
    task = "image-to-video" if is_image_to_video(pipe) else "text-to-video"
    if family == "wan":
        two = getattr(pipe, "transformer_2", None) is not None
        expand = bool(getattr(pipe.config, "expand_timesteps", False))
        return f"Wan {'2.2' if two or expand else '2.1'} {task}"
    names = {
        "animatediff": "AnimateDiff (SD1.5)",
        "animatediff-sdxl": "AnimateDiff (SDXL)",
        "ltx": "LTX-Video",
    }
    return f"{names.get(family, family)} {task}"


def max_frames(pipe) -> int:
    """The longest clip the model can make in one window."""
    family = video_family(pipe)
    if family in UNET_FAMILIES:
        adapter_config = getattr(pipe.unet, "config", {})
        return int(adapter_config.get("motion_max_seq_length", ANIMATEDIFF_DEFAULT_MAX_FRAMES))
    return LTX_DEFAULT_MAX_FRAMES if family == "ltx" else WAN_DEFAULT_MAX_FRAMES


def frame_grid(pipe) -> tuple[int, int]:
    """(temporal, spatial): a clip has ``temporal * k + 1`` frames and sides divisible by ``spatial``
    (VAE compression times the transformer's patch); (1, VAE factor) for AnimateDiff."""
    family = video_family(pipe)
    if family in UNET_FAMILIES:
        return 1, int(pipe.vae_scale_factor)
    if family == "ltx":
        spatial = pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size
        # The pipeline itself refuses sides that are not multiples of 32, whatever the VAE.
        return int(pipe.vae_temporal_compression_ratio), max(32, int(spatial))
    transformer = denoisers(pipe)[0]
    return int(pipe.vae_scale_factor_temporal), int(
        pipe.vae_scale_factor_spatial * transformer.config.patch_size[1]
    )
