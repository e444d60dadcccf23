"""Tiny random-weight music models of the families Hearth runs beyond the demos, built offline.

- ``build_tiny_musicgen_stereo``: the musicgen-stereo layout (two audio channels, their codebooks
  interleaved in one decoder: 2 per channel here), on the demo MusicGen's tiny configs.
- ``build_tiny_stable_audio``: a ``StableAudioPipeline`` (DiT + Oobleck VAE + T5 + the seconds
  projection), the shapes of diffusers' fast tests (docs/FIELD-NOTES.md §5) with a 2048 Hz stereo
  VAE and 512 latent frames, so it makes up to 2 s, as the real one makes up to 47.55 s.

Tests and ``bench/`` save them and load them back through ``models.music.load_music_model``.
"""

from __future__ import annotations

from models.demo_store import TINY_T5
from models.tiny_tokenizers import fast_tokenizer

TINY_STABLE_AUDIO_RATE = 2048
TINY_STABLE_AUDIO_LATENTS = 512
"""Latent frames of the tiny DiT: x 8 (the VAE's hop) / 2048 Hz = 2 s at most."""


def build_tiny_musicgen_stereo(seed: int = 0):
    """(model, tokenizer) of a stereo MusicGen: decoder ``audio_channels=2`` with 4 codebooks."""
    import torch
    from transformers import MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration

    from models.music import DEMO_CODEBOOK_SIZE, _tiny_configs

    torch.manual_seed(seed)
    text, audio, decoder = _tiny_configs()
    decoder = MusicgenDecoderConfig(**dict(decoder, num_codebooks=4, audio_channels=2))
    model = MusicgenForConditionalGeneration(
        MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    ).eval()
    for layer in model.audio_encoder.quantizer.layers:  # EnCodec's zero codebooks: see build_demo_music
        layer.codebook.embed.normal_()
        layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.generation_config.decoder_start_token_id = DEMO_CODEBOOK_SIZE
    model.generation_config.pad_token_id = DEMO_CODEBOOK_SIZE
    return model, fast_tokenizer()


def build_tiny_stable_audio(seed: int = 0):
    """A tiny ``StableAudioPipeline`` (stereo, 2048 Hz, up to 2 s)."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(
        sample_size=TINY_STABLE_AUDIO_LATENTS,
        in_channels=3,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=2,
        num_key_value_attention_heads=2,
        out_channels=3,
        cross_attention_dim=4,
        time_proj_dim=8,
        global_states_input_dim=8,
        cross_attention_input_dim=4,
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=6,
        downsampling_ratios=[2, 4],
        decoder_channels=3,
        decoder_input_channels=3,
        audio_channels=2,
        channel_multiples=[2, 4],
        sampling_rate=TINY_STABLE_AUDIO_RATE,
    )
    return StableAudioPipeline(
        vae=vae,
        text_encoder=T5EncoderModel(T5Config(**TINY_T5)),
        projection_model=StableAudioProjectionModel(
            text_encoder_dim=32, conditioning_dim=4, min_value=0, max_value=512
        ),
        tokenizer=fast_tokenizer(),
        transformer=transformer,
        scheduler=CosineDPMSolverMultistepScheduler(
            solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
        ),
    )
