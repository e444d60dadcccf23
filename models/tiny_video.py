"""Tiny random-weight video pipelines of every family Hearth runs, built offline from configs.

The shapes follow diffusers' own fast tests (``get_dummy_components``): an SDXL-style AnimateDiff
(two CLIP text encoders, text-time added conditioning, the SDXL motion adapter layout without a
motion mid block), Wan 2.1 and 2.2 text-to-video (2.2: two transformers split at a boundary
timestep), Wan 2.2 image-to-video (A14B layout: noise + mask + image latents in), Wan 2.1
image-to-video (a CLIP image encoder feeding the cross-attention), and LTX-Video text- and
image-to-video. Tokenizers are written locally (``tiny_tokenizers``). Tests and ``bench/`` save
them with ``save_pretrained`` and load them back through ``models.video.load_video_pipeline``.
Callers get the same weights for the same seed.
"""

from __future__ import annotations

from models.demo_store import TINY_T5
from models.tiny_parts import tiny_clip_tokenizer, tiny_sd_vae
from models.tiny_tokenizers import fast_tokenizer

WAN22_BOUNDARY_RATIO = 0.875
"""Wan 2.2 A14B: the first transformer denoises timesteps above 875 of 1000, the second the rest."""


def build_tiny_animatediff_sdxl(seed: int = 0):
    """AnimateDiffSDXLPipeline: SDXL-style UNet (two levels) + SDXL motion adapter (no motion mid block)."""
    import torch
    from diffusers import AnimateDiffSDXLPipeline, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    channels = (32, 64)
    unet = UNet2DConditionModel(
        block_out_channels=channels,
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
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + the pooled 32-wide text embedding
        cross_attention_dim=64,  # both text encoders' hidden states side by side
        norm_num_groups=32,
    )
    adapter = MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=2,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=1000,
        projection_dim=32,
    )
    return AnimateDiffSDXLPipeline(
        vae=tiny_sd_vae(),
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        motion_adapter=adapter,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, steps_offset=1
        ),
    )


def tiny_wan_transformer(in_channels: int = 16, image_dim: int | None = None):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
    )


def _wan_parts():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    return dict(
        vae=vae,
        text_encoder=UMT5EncoderModel(UMT5Config(**TINY_T5)),
        tokenizer=fast_tokenizer(vocab_size=300),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )


def build_tiny_wan(version: str = "2.2", seed: int = 0):
    """WanPipeline text-to-video; "2.2" has a second (low-noise) transformer and a boundary ratio."""
    import torch
    from diffusers import WanPipeline

    torch.manual_seed(seed)
    parts = _wan_parts()
    if version == "2.1":
        return WanPipeline(transformer=tiny_wan_transformer(), **parts)
    return WanPipeline(
        transformer=tiny_wan_transformer(),
        transformer_2=tiny_wan_transformer(),
        boundary_ratio=WAN22_BOUNDARY_RATIO,
        **parts,
    )


def build_tiny_wan_i2v(version: str = "2.2", seed: int = 0):
    """WanImageToVideoPipeline. 2.2 (A14B layout): 36 input channels (noise 16 + mask 4 + image
    latents 16), two transformers, no image encoder. 2.1: one transformer whose cross-attention also
    reads a CLIP image embedding (``image_dim``)."""
    import torch
    from diffusers import WanImageToVideoPipeline

    torch.manual_seed(seed)
    parts = _wan_parts()
    if version == "2.2":
        return WanImageToVideoPipeline(
            transformer=tiny_wan_transformer(in_channels=36),
            transformer_2=tiny_wan_transformer(in_channels=36),
            boundary_ratio=WAN22_BOUNDARY_RATIO,
            image_encoder=None,
            image_processor=None,
            **parts,
        )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(
        transformer=tiny_wan_transformer(in_channels=36, image_dim=4),
        image_encoder=encoder,
        image_processor=processor,
        **parts,
    )


def tiny_ltx_transformer():
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )


def build_tiny_ltx(image_to_video: bool = False, seed: int = 0):
    """LTXPipeline (or LTXImageToVideoPipeline): 8 latent channels, 4x spatial and temporal VAE."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXPipeline,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        layers_per_block=(1, 1, 1, 1, 1),
        # The decoder mirrors the encoder (its defaults upscale 8x, the encoder here compresses 4x).
        decoder_block_out_channels=(8, 8, 8, 8),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    cls = LTXImageToVideoPipeline if image_to_video else LTXPipeline
    return cls(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=T5EncoderModel(T5Config(**TINY_T5)),
        tokenizer=fast_tokenizer(vocab_size=300),
        transformer=tiny_ltx_transformer(),
    )
