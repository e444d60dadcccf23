"""Tiny random-weight pipelines of each image family, built offline from configs.

The shapes follow diffusers' own pipeline tests (``get_dummy_components`` of the SDXL, SD3 and
Flux pipelines), with the real latent spaces (16 channels and the real scale/shift for SD3 and
Flux, Flux's 2x2 packing) so the family code paths run as on the real models. Every denoiser is
well under 2M parameters; tokenizers are written locally (``models.tiny_tokenizers``). Callers
``save_pretrained`` them and load them back through ``models.image.load_image_pipeline``.
"""

from __future__ import annotations

from collections.abc import Callable

from models.demo_store import TINY_T5
from models.tiny_parts import tiny_clip_tokenizer
from models.tiny_tokenizers import fast_tokenizer

CLIP_WIDTH = 32
SDXL_CLIP_G_WIDTH = 48
"""SDXL's second encoder is wider than its first (1280 vs 768), which is how single-file loaders tell them apart."""


def tiny_vae(latent_channels: int = 4, scaling_factor: float = 0.18215, shift_factor: float | None = None):
    """A 2x-downsampling VAE (two levels): SD's when 4 channels, SD3/Flux's latent space when 16."""
    from diffusers import AutoencoderKL

    flow = latent_channels == 16  # SD3 and Flux VAEs have no quant convs
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=not flow,
        use_post_quant_conv=not flow,
        force_upcast=not flow,
    )


def _clip(with_projection: bool, width: int = CLIP_WIDTH):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=width,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=1 if width > 64 else 2,
        pad_token_id=1,
        vocab_size=1000,
        projection_dim=CLIP_WIDTH,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _t5():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**TINY_T5)).eval()  # eval: T5's dropout would make prompts random


def build_tiny_sdxl(seed: int = 0, *, few_step: bool = False):
    """SDXL: two CLIP encoders (the second with projection), the UNet's text-time embedding."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + CLIP_WIDTH,  # 6 size/crop ids + pooled text
        cross_attention_dim=CLIP_WIDTH + SDXL_CLIP_G_WIDTH,  # both encoders' hidden states, concatenated
        norm_num_groups=32,
    )
    vae = tiny_vae(4, scaling_factor=0.13025)
    text_encoder, text_encoder_2 = _clip(False), _clip(True, SDXL_CLIP_G_WIDTH)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="trailing" if few_step else "leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
    )


def build_tiny_sd3(seed: int = 0):
    """SD3.5-style MMDiT (a dual-attention layer, QK RMS norm), two CLIPs and a T5, 16 latent channels."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=TINY_T5["d_model"],
        caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_WIDTH,
        pos_embed_max_size=32,
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(16, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=_clip(True),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=_clip(True),
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=_t5(),
        tokenizer_3=fast_tokenizer(),
    )


def build_tiny_flux(seed: int = 0, *, schnell: bool = True):
    """Flux: double- and single-stream blocks, CLIP pooled + T5 sequence, packed 16-channel latents.

    ``schnell``: no guidance embedding and a static schedule; else dev's guidance embedding and
    resolution-dependent shift."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels x a 2x2 patch
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_T5["d_model"],
        pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=not schnell,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = (
        FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
        if schnell
        else FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_image_seq_len=256,
            max_image_seq_len=4096,
            base_shift=0.5,
            max_shift=1.15,
        )
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=tiny_vae(16, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=_clip(False),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=_t5(),
        tokenizer_2=fast_tokenizer(),
    )


def build_tiny_sd15(seed: int = 0):
    from models.image import build_demo_sd

    return build_demo_sd(seed)


def build_tiny_sd2(seed: int = 0):
    """SD 2.x: the demo UNet on 1024-wide text states (OpenCLIP-H's width), v-prediction."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
    )
    text_encoder = _clip(False, 1024)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=tiny_vae(4),
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


TINY_BUILDERS: dict[str, Callable] = {
    "SD1.5": build_tiny_sd15,
    "SD2": build_tiny_sd2,
    "SDXL": build_tiny_sdxl,
    "SDXL Lightning": lambda seed=0: build_tiny_sdxl(seed, few_step=True),
    "SD3.5": build_tiny_sd3,
    "Flux schnell": build_tiny_flux,
    "Flux": lambda seed=0: build_tiny_flux(seed, schnell=False),
}
"""One tiny builder per family profile name (``models.image_families``)."""
