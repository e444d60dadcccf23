"""Image model loaders (workers only): the demo Stable Diffusion model and real ones.

The demo model is a tiny random-weight SD pipeline built from configs on first run and saved
with ``save_pretrained`` into the models folder, then loaded back through the same
``from_pretrained`` path a real local model takes, so the real loading code is what runs.
"""

from __future__ import annotations

from pathlib import Path

from models.demo_store import ensure_saved
from models.sources import SourceKind, classify
from models.tiny_parts import tiny_clip_text_encoder, tiny_clip_tokenizer, tiny_sd_vae
from workers.errors import MissingModel

DEMO_SD_ID = "demo-sd"


def build_demo_sd(seed: int = 0):
    """Tiny SD pipeline (UNet 1.4M params) from configs, random weights; see docs/FIELD-NOTES.md §4(a)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = tiny_sd_vae()
    text_encoder = tiny_clip_text_encoder()
    tokenizer = tiny_clip_tokenizer()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def ensure_demo_sd() -> Path:
    """The demo model's folder, built and saved on first use."""
    return ensure_saved(DEMO_SD_ID, lambda folder: build_demo_sd().save_pretrained(folder))


def load_image_pipeline(spec: str, allow_pickle: bool = False):
    """Load a Stable-Diffusion-style text-to-image pipeline from any supported source, on CPU."""
    source = classify(spec, allow_pickle=allow_pickle)
    from diffusers import StableDiffusionPipeline

    try:
        if source.kind is SourceKind.catalog:
            if spec != DEMO_SD_ID:
                raise MissingModel(f"{spec} is not an image model")
            pipe = StableDiffusionPipeline.from_pretrained(ensure_demo_sd())
        elif source.kind is SourceKind.local_folder:
            pipe = StableDiffusionPipeline.from_pretrained(source.path, use_safetensors=not allow_pickle)
        elif source.kind is SourceKind.single_file:
            pipe = StableDiffusionPipeline.from_single_file(str(source.path))
        elif source.kind is SourceKind.hub_id:
            pipe = _from_hub(StableDiffusionPipeline, spec)
        else:
            raise MissingModel(f"{spec} is a {source.kind.value} file, not an image model")
    except (OSError, ValueError) as exc:
        raise MissingModel(f"could not load image model {spec!r}: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_hub(pipeline_class, hub_id: str):
    """The huggingface_hub cache first (works offline), then a download when online."""
    try:
        return pipeline_class.from_pretrained(hub_id, local_files_only=True)
    except OSError:
        return pipeline_class.from_pretrained(hub_id)
