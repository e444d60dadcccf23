"""Random-weight building blocks shared by the demo SD and AnimateDiff pipelines (docs/FIELD-NOTES.md §4).

Callers seed torch first and build in a fixed order, so each demo model is reproducible."""

from __future__ import annotations

import tempfile
from pathlib import Path

from models.tiny_tokenizers import clip_tokenizer


def tiny_sd_vae():
    """A 0.66M-parameter SD-style VAE: 4 latent channels, 8x downsampling."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )


def tiny_clip_text_encoder():
    """A 32-wide CLIP text encoder (cross-attention dim 32)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    )


def tiny_clip_tokenizer():
    """The byte-level CLIP tokenizer, its vocab written to a scratch folder and loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        return clip_tokenizer(Path(tmp))
