"""Image model families: what each one needs to run well, as data (no torch here).

A family profile says which diffusers pipeline runs it, its recommended size, steps and guidance,
its latent space (channels, packing, the linear latent -> RGB fit used for free step previews),
the schedule the brushes use on it (DDIM for the epsilon/v-prediction UNets, the flow-matching
Euler ODE for SD3 and Flux), the hub repo a single-file checkpoint takes its configs (and, for a
denoiser saved alone, its other parts) from, and a rough activation cost per pixel for the
arbiter's tiers.

Families are told apart by ``models.folder_families`` (a folder's ``model_index.json``) and
``models.checkpoint_families`` (a single file's tensor names); this module only maps their
family names, plus a few-step variant read from the model's name or scheduler config, onto a
profile.

Latent -> RGB factors: the linear fits ComfyUI publishes in ``comfy/latent_formats.py``
(SDXL, SD3, Flux), applied to the scaled latents the pipelines denoise, then ``(rgb + 1) / 2``.
The SD 1.x fit is the one Hearth's previews used before (several SD front ends share it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SD15_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
SDXL_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_RGB_BIAS = (0.1084, -0.0175, -0.0011)
SD3_RGB = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
SD3_RGB_BIAS = (0.2394, 0.2135, 0.1925)
FLUX_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

SDXL_FP16_VAE = "madebyollin/sdxl-vae-fp16-fix"
"""SDXL's own VAE overflows in fp16 (NaN/black images); this fine-tune of it does not."""


@dataclass(frozen=True, slots=True)
class ImageFamily:
    """How Hearth runs one family of text-to-image models."""

    name: str
    """As ``models.identify`` names it: "SD1.5", "SDXL", "SD3.5", "Flux"; a variant adds a word."""
    pipeline: str
    """The diffusers pipeline class."""
    denoiser: str
    """The pipeline attribute holding the network the brushes count calls of: unet or transformer."""
    denoiser_class: str
    """Its diffusers class, which loads a denoiser saved alone as a single file."""
    sampler: str
    """The brushes' schedule: "ddim" (epsilon / v-prediction UNets) or "flow" (flow matching)."""
    width: int
    height: int
    steps: int
    guidance: float
    latent_channels: int
    rgb_factors: tuple[tuple[float, float, float], ...]
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    packed: bool = False
    """Flux's pipeline denoises 2x2 patches packed into tokens: (B, h/2 * w/2, 4C)."""
    negative_prompt: bool = True
    """The pipeline takes a negative prompt (classifier-free guidance batch)."""
    base_repo: str = ""
    """Configs for a single-file checkpoint; the other parts of a denoiser saved alone."""
    fp16_vae: str = ""
    """A VAE that stays finite in fp16, used instead of the model's own at half precision."""
    activation_bytes_per_pixel: int = 4 * 1024
    """Peak activations per output pixel at fp16, for the arbiter's tiers (rough)."""
    trailing: bool = False
    """Few-step distillations are sampled with "trailing" timesteps (the first step at t = 999)."""

    @property
    def flow_matching(self) -> bool:
        return self.sampler == "flow"


SD15 = ImageFamily(
    name="SD1.5",
    pipeline="StableDiffusionPipeline",
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    sampler="ddim",
    width=512,
    height=512,
    steps=30,
    guidance=7.5,
    latent_channels=4,
    rgb_factors=SD15_RGB,
    base_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
)
SD2 = ImageFamily(
    name="SD2",
    pipeline="StableDiffusionPipeline",
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    sampler="ddim",
    width=768,
    height=768,
    steps=30,
    guidance=7.5,
    latent_channels=4,
    rgb_factors=SD15_RGB,
    base_repo="stabilityai/stable-diffusion-2-1",
)
SDXL = ImageFamily(
    name="SDXL",
    pipeline="StableDiffusionXLPipeline",
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    sampler="ddim",
    width=1024,
    height=1024,
    steps=30,
    guidance=6.0,
    latent_channels=4,
    rgb_factors=SDXL_RGB,
    rgb_bias=SDXL_RGB_BIAS,
    base_repo="stabilityai/stable-diffusion-xl-base-1.0",
    fp16_vae=SDXL_FP16_VAE,
    activation_bytes_per_pixel=3 * 1024,
)
# Few-step distillations of SDXL: the same network, a schedule of 1-8 steps without guidance.
# Their DDIM schedules use "trailing" timesteps (the last step lands on t = 999), as their cards say.
SDXL_TURBO = replace(
    SDXL,
    name="SDXL Turbo",
    width=512,
    height=512,
    steps=4,
    guidance=0.0,
    trailing=True,
    base_repo="stabilityai/sdxl-turbo",
)
SDXL_LIGHTNING = replace(SDXL, name="SDXL Lightning", steps=4, guidance=0.0, trailing=True)
SD3 = ImageFamily(
    name="SD3",
    pipeline="StableDiffusion3Pipeline",
    denoiser="transformer",
    denoiser_class="SD3Transformer2DModel",
    sampler="flow",
    width=1024,
    height=1024,
    steps=28,
    guidance=7.0,
    latent_channels=16,
    rgb_factors=SD3_RGB,
    rgb_bias=SD3_RGB_BIAS,
    base_repo="stabilityai/stable-diffusion-3-medium-diffusers",
    activation_bytes_per_pixel=6 * 1024,
)
SD35 = replace(SD3, name="SD3.5", guidance=4.5, base_repo="stabilityai/stable-diffusion-3.5-medium")
FLUX_DEV = ImageFamily(
    name="Flux",
    pipeline="FluxPipeline",
    denoiser="transformer",
    denoiser_class="FluxTransformer2DModel",
    sampler="flow",
    width=1024,
    height=1024,
    steps=28,
    guidance=3.5,
    latent_channels=16,
    rgb_factors=FLUX_RGB,
    rgb_bias=FLUX_RGB_BIAS,
    packed=True,
    negative_prompt=False,
    base_repo="black-forest-labs/FLUX.1-dev",
    activation_bytes_per_pixel=8 * 1024,
)
"""Flux dev: guidance is distilled into the transformer (a guidance embedding), not a CFG batch."""
FLUX_SCHNELL = replace(
    FLUX_DEV, name="Flux schnell", steps=4, guidance=0.0, base_repo="black-forest-labs/FLUX.1-schnell"
)
"""Flux schnell: timestep-distilled, 1-4 steps, no guidance embedding."""

FAMILIES = (SD15, SD2, SDXL, SDXL_TURBO, SDXL_LIGHTNING, SD3, SD35, FLUX_DEV, FLUX_SCHNELL)
SUPPORTED = (
    "SD1.5",
    "SD2",
    "SDXL (base, Turbo, Lightning, fine-tunes)",
    "SD3",
    "SD3.5",
    "Flux (dev, schnell)",
)
"""What an error about an unsupported model lists."""
_BY_NAME = {family.name: family for family in FAMILIES}
_FEW_STEP_MARKERS = (
    ("turbo", SDXL_TURBO),
    ("lightning", SDXL_LIGHTNING),
    ("hyper", SDXL_LIGHTNING),
    ("lcm", SDXL_LIGHTNING),
)


def family_named(name: str) -> ImageFamily | None:
    """The profile of an identified family ("SDXL", "SD3.5", "Flux"...), or None."""
    return _BY_NAME.get(name)


def profile_for(
    family: str, name_hint: str = "", *, few_step: bool = False, guidance_embeds: bool | None = None
) -> ImageFamily | None:
    """The profile for ``family`` as identified, refined by what the name and configs say.

    ``name_hint``: the file, folder or hub name ("sd_xl_turbo_1.0.safetensors", "FLUX.1-schnell");
    ``few_step``: the scheduler config uses trailing timesteps (how Lightning/Hyper repos ship);
    ``guidance_embeds``: a Flux transformer's config (dev has a guidance embedding, schnell none).
    """
    base = _BY_NAME.get(family)
    if base is None:
        return None
    hint = name_hint.lower()
    if base is SDXL:
        for marker, variant in _FEW_STEP_MARKERS:
            if marker in hint:
                return variant
        return SDXL_LIGHTNING if few_step else SDXL
    if base is FLUX_DEV:
        if guidance_embeds is False or "schnell" in hint:
            return FLUX_SCHNELL
    return base
