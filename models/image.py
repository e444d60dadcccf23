"""Image model loaders (workers only): the demo Stable Diffusion model and real ones.

The demo model is a tiny random-weight SD pipeline built from configs on first run and saved
with ``save_pretrained`` into the models folder, then loaded back through the same
``from_pretrained`` path a real local model takes, so the real loading code is what runs.

Real models of every family in ``models.image_families`` (SD 1.x/2.x, SDXL and its few-step
variants, SD3/3.5, Flux) load from a diffusers folder (the family from ``model_index.json``), a
hub id (the same, from the huggingface_hub cache or a download), or a single-file checkpoint
(the family from its tensor names, ``models.checkpoint_families``). A single file carries no
configs: they come from the family's base repo (``ImageFamily.base_repo``) in the hub cache, or
are downloaded once; a denoiser saved alone (most Flux files) takes its text encoders and VAE
from that repo too.
"""

from __future__ import annotations

from pathlib import Path

from models.checkpoint_families import checkpoint_part, recognise_checkpoint
from models.demo_store import ensure_saved
from models.folder_families import recognise_folder
from models.identity import FoundKind, Recognition
from models.image_families import SUPPORTED, ImageFamily, profile_for
from models.image_profile import folder_hints, safetensors_shapes
from models.sources import SourceKind, classify
from models.tiny_parts import tiny_clip_text_encoder, tiny_clip_tokenizer, tiny_sd_vae
from workers.errors import BadInput, MissingModel

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


FAMILY_ATTRIBUTE = "hearth_family"
"""The loaded pipeline's :class:`ImageFamily` is kept on it under this name."""


def load_image_pipeline(spec: str, allow_pickle: bool = False, device: str = "cpu"):
    """Load a text-to-image pipeline of any supported family, on the CPU, in the dtype ``device`` runs.

    Raises ``MissingModel`` naming what was found and what Hearth runs when it is not runnable.
    """
    source = classify(spec, allow_pickle=allow_pickle)
    try:
        if source.kind is SourceKind.catalog:
            if spec != DEMO_SD_ID:
                raise MissingModel(f"{spec} is not an image model")
            pipe = _from_folder(ensure_demo_sd(), device)
        elif source.kind is SourceKind.local_folder and source.path is not None:
            pipe = _from_folder(source.path, device, allow_pickle=allow_pickle)
        elif source.kind is SourceKind.single_file and source.path is not None:
            pipe = _from_single_file(source.path, device)
        elif source.kind is SourceKind.hub_id:
            pipe = _from_folder(_hub_folder(spec, configs_only=True), device, hub_id=spec)
        else:
            raise MissingModel(f"{spec} is a {source.kind.value} file, not an image model")
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, BadInput):
            raise
        raise MissingModel(f"could not load image model {spec!r}: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_family(pipe) -> ImageFamily:
    """The family a pipeline was loaded as (one built directly, as tests do: told from its configs,
    as ``models.folder_families`` tells a saved folder's)."""
    family = getattr(pipe, FAMILY_ATTRIBUTE, None)
    if family is not None:
        return family
    name = type(pipe).__name__
    few_step = pipe.scheduler.config.get("timestep_spacing") == "trailing"
    match name:
        case "StableDiffusionPipeline":
            found = "SD2" if pipe.unet.config.cross_attention_dim == 1024 else "SD1.5"
        case "StableDiffusionXLPipeline":
            found = "SDXL"
        case "StableDiffusion3Pipeline":
            config = pipe.transformer.config
            found = "SD3.5" if config.num_layers == 38 or config.dual_attention_layers else "SD3"
        case "FluxPipeline":
            found = "Flux"
        case _:
            raise MissingModel(
                f"a {name} is not a pipeline Hearth's image tab runs (it runs {', '.join(SUPPORTED)})"
            )
    family = profile_for(found, few_step=few_step, guidance_embeds=_guidance_embeds(pipe))
    assert family is not None  # every name matched above has a profile
    return family


def family_dtype(family: ImageFamily, device: str):
    """float32 on the CPU; on a GPU bf16 for the flow-matching transformers (trained in bf16), fp16 for UNets."""
    import torch

    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if family.flow_matching else torch.float16


# --------------------------------------------------------------------------- folders and hub ids


def _from_folder(folder: Path, device: str, *, allow_pickle: bool = False, hub_id: str = ""):
    recognition = recognise_folder(Path(folder), hub_id)
    family = _runnable(recognition, str(hub_id or Path(folder).name), folder_hints(Path(folder)))
    pipeline_class = _pipeline_class(family)
    dtype = family_dtype(family, device)
    if hub_id:
        pipe = _hub(lambda local: pipeline_class.from_pretrained(hub_id, dtype=dtype, local_files_only=local))
    else:
        pipe = pipeline_class.from_pretrained(folder, use_safetensors=not allow_pickle, dtype=dtype)
    return _finish(pipe, family, device)


def _hub_folder(repo: str, *, configs_only: bool) -> Path:
    """A hub repo's snapshot: from the huggingface_hub cache first (works offline), else downloaded."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model"] if configs_only else None

    def fetch(local: bool) -> Path:
        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=local))

    return _hub(fetch)


def _hub(fetch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return fetch(True)
    except (OSError, LocalEntryNotFoundError):
        return fetch(False)


# --------------------------------------------------------------------------- single files


def _from_single_file(path: Path, device: str):
    shapes, metadata = _checkpoint_shapes(path)
    recognition = recognise_checkpoint(shapes, metadata)
    family = _runnable(recognition, path.name, {})
    parts = {checkpoint_part(name) for name in shapes}
    dtype = family_dtype(family, device)
    pipeline_class = _pipeline_class(family)
    try:
        if {"vae"} <= parts and any(part.startswith("text_encoder") for part in parts):
            config = _hub_folder(family.base_repo, configs_only=True)
            pipe = pipeline_class.from_single_file(str(path), config=str(config), dtype=dtype)
        else:  # a denoiser alone (Flux, SD3.5 as shipped without encoders): the rest from the base repo
            base = _hub_folder(family.base_repo, configs_only=False)
            denoiser_class = _diffusers_class(family.denoiser_class)
            denoiser = denoiser_class.from_single_file(
                str(path), config=str(base), subfolder=family.denoiser, dtype=dtype
            )
            pipe = pipeline_class.from_pretrained(base, dtype=dtype, **{family.denoiser: denoiser})
    except OSError as exc:
        raise MissingModel(
            f"{path.name} is a {family.name} checkpoint; a single file carries no configs, and those of "
            f"{family.base_repo} are neither in the Hugging Face cache nor downloadable now ({exc}). "
            "Connect once to fetch them, or use a diffusers folder of the model"
        ) from None
    return _finish(pipe, family, device)


def _checkpoint_shapes(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor names and shapes from the header (safetensors) or the loaded state dict (an allowed pickle)."""
    if path.suffix == ".safetensors":
        return safetensors_shapes(path)
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    checkpoint = load_single_file_checkpoint(str(path))
    return {name: list(getattr(t, "shape", ())) for name, t in checkpoint.items()}, {}


# --------------------------------------------------------------------------- shared


_KIND_WORDS = {
    FoundKind.chat: "a chat model",
    FoundKind.video: "a video model",
    FoundKind.music: "a music model",
    FoundKind.lora: "a LoRA",
    FoundKind.vae: "a VAE",
    FoundKind.motion_adapter: "a motion module",
    FoundKind.image: "an image model",
}


def _runnable(recognition: Recognition, name_hint: str, hints: dict) -> ImageFamily:
    """The profile of a recognised model, or ``MissingModel`` naming what it is and what Hearth runs."""
    family = (
        profile_for(recognition.family, name_hint, **hints) if recognition.kind is FoundKind.image else None
    )
    if family is not None and not recognition.reason:
        return family
    what = " ".join(part for part in (_KIND_WORDS.get(recognition.kind, ""), recognition.family) if part)
    why = recognition.reason or "not a family Hearth runs"
    found = f"found {what} ({why})" if what else why
    raise MissingModel(
        f"{name_hint}: {found}; Hearth's image tab runs {', '.join(SUPPORTED)} (a diffusers folder, "
        "a hub id or a single-file checkpoint)"
    )


def _pipeline_class(family: ImageFamily):
    return _diffusers_class(family.pipeline)


def _diffusers_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def _finish(pipe, family: ImageFamily, device: str):
    if family.trailing and "timestep_spacing" in pipe.scheduler.config:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")
    if family.fp16_vae and family_dtype(family, device) is not _float32():
        _swap_fp16_vae(pipe, family)
    setattr(pipe, FAMILY_ATTRIBUTE, family)
    return pipe


def _float32():
    import torch

    return torch.float32


def _swap_fp16_vae(pipe, family: ImageFamily) -> None:
    """SDXL's VAE overflows in fp16; the fp16-fixed one is used when it is cached or downloadable,
    else the pipeline's own upcast to fp32 for the decode (``force_upcast``) stays in charge."""
    import torch
    from diffusers import AutoencoderKL

    try:
        pipe.vae = _hub(
            lambda local: AutoencoderKL.from_pretrained(
                family.fp16_vae, dtype=torch.float16, local_files_only=local
            )
        )
    except OSError:
        return


def _guidance_embeds(pipe) -> bool | None:
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    embeds = getattr(config, "guidance_embeds", None)
    return None if embeds is None else bool(embeds)
