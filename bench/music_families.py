"""Music engines at their real sizes: MusicGen-medium through Hearth's music render against plain
``generate``, and one Stable Audio Open denoising step (see docs/BENCHMARKS.md).

    .venv/bin/python bench/music_families.py --quick   # CPU: tiny stereo MusicGen, tiny Stable Audio
    .venv/bin/python bench/music_families.py --gpu     # MusicGen-medium (real config: T5-base, 32 kHz
                                                       # EnCodec, 48-layer 1536-wide decoder) and the
                                                       # Stable Audio Open 1.0 DiT, random weights, fp16

Each variant runs in a fresh process with the model built there from its config (random weights,
on the device: no checkpoint to read). MusicGen: seconds of audio, time per decoder token and peak
memory above the weights, Hearth's ``MusicRender`` (windows, per-token progress hook) against plain
``model.generate`` with the same seed and sampling; Stable Audio: one CFG step of the DiT over
its full 47.55 s latent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process, measure_from_here, median_time  # noqa: E402

PROMPT = "upbeat electronic music with drums"
SEED = 7
GUIDANCE = 3.0
MUSICGEN_MEDIUM_DECODER = dict(
    vocab_size=2048,
    hidden_size=1536,
    num_hidden_layers=48,
    num_attention_heads=24,
    ffn_dim=6144,
    num_codebooks=4,
    max_position_embeddings=2048,
    pad_token_id=2048,
    bos_token_id=2048,
    audio_channels=1,
)
"""facebook/musicgen-medium config.json, decoder."""
STABLE_AUDIO_OPEN_DIT = dict(
    sample_size=1024,
    in_channels=64,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    num_key_value_attention_heads=12,
    out_channels=64,
    cross_attention_dim=768,
    time_proj_dim=256,
    global_states_input_dim=1536,
    cross_attention_input_dim=768,
)
"""stabilityai/stable-audio-open-1.0 transformer/config.json."""


def _musicgen(gpu: bool):
    """(MusicModel, dtype): MusicGen-medium on CUDA, or the tiny stereo MusicGen on the CPU."""
    import torch

    from models.music import _describe
    from models.tiny_tokenizers import fast_tokenizer

    torch.manual_seed(0)
    if not gpu:
        from models.tiny_music import build_tiny_musicgen_stereo

        model, tokenizer = build_tiny_musicgen_stereo()
        return _describe("tiny-musicgen-stereo", model, tokenizer, demo=True)
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    text = T5Config(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    audio = EncodecConfig(
        sampling_rate=32000, audio_channels=1, codebook_size=2048, num_filters=64, hidden_size=128,
        upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=2, num_residual_layers=1, target_bandwidths=[2.2],
        normalize=False, use_causal_conv=False, compress=2,
    )  # fmt: skip
    config = MusicgenConfig(
        text_encoder=text, audio_encoder=audio, decoder=MusicgenDecoderConfig(**MUSICGEN_MEDIUM_DECODER)
    )
    with torch.device("cuda"):
        model = MusicgenForConditionalGeneration(config).half().eval()
    for layer in model.audio_encoder.quantizer.layers:  # zero codebooks would make every code sound alike
        layer.codebook.embed.normal_()
    model.generation_config.update(decoder_start_token_id=2048, pad_token_id=2048)
    return _describe("musicgen-medium", model, fast_tokenizer(), demo=False)


def musicgen(variant: str, gpu: bool, seconds: float, repeats: int) -> dict:
    """One variant in this (fresh) process: "ours" (Hearth's render) or "plain" (``generate``)."""
    import torch

    from workers.music.render import TOP_K, MusicRender, new_tokens, plan_music
    from workers.protocol import MusicRequest

    music = _musicgen(gpu)
    request = MusicRequest(prompt=PROMPT, seconds=seconds, seed=SEED, guidance=GUIDANCE)
    plan = plan_music(music, request)
    tokens = sum(new_tokens(music, window) for window in plan.windows)
    inputs = music.tokenizer([plan.text], return_tensors="pt", padding=True).to(music.model.device)

    def once():
        if variant == "ours":
            return MusicRender(music, request, plan).run()
        torch.manual_seed(SEED)
        with torch.inference_mode():
            return music.model.generate(
                **inputs, max_new_tokens=tokens, do_sample=True, top_k=TOP_K, guidance_scale=GUIDANCE
            )

    once()  # warm-up: kernels, caches
    measure_from_here()
    elapsed, audio = median_time(once, repeats=repeats, warmup=0)
    return {
        "seconds_of_audio": seconds,
        "tokens": tokens,
        "token_ms": round(1000 * elapsed / tokens, 3),
        "rtf": round(seconds / elapsed, 3),
        "channels": int(audio.shape[-2]),
        "parameters": sum(p.numel() for p in music.model.parameters()),
    }


def stable_audio_step(gpu: bool, repeats: int) -> dict:
    """One classifier-free-guided DiT step over the model's whole latent (its longest clip)."""
    import torch
    from diffusers import StableAudioDiTModel

    torch.manual_seed(0)
    if gpu:
        with torch.device("cuda"):
            dit = StableAudioDiTModel(**STABLE_AUDIO_OPEN_DIT).half().eval()
        device, dtype = "cuda", torch.float16
    else:
        from models.tiny_music import build_tiny_stable_audio

        dit, device, dtype = build_tiny_stable_audio().transformer.eval(), "cpu", torch.float32
    config = dit.config
    generator = torch.Generator(device).manual_seed(0)
    latents = torch.randn(
        (2, config.in_channels, config.sample_size), generator=generator, device=device, dtype=dtype
    )
    text = torch.randn(
        (2, 130, config.cross_attention_input_dim), generator=generator, device=device, dtype=dtype
    )
    global_states = torch.randn(
        (2, 1, config.global_states_input_dim), generator=generator, device=device, dtype=dtype
    )
    rope_dim = config.attention_head_dim // 2
    rotary = (
        torch.ones((config.sample_size + 1, rope_dim), device=device),
        torch.zeros((config.sample_size + 1, rope_dim), device=device),
    )

    def step():
        with torch.no_grad():
            return dit(
                latents, torch.tensor([0.5], device=device), encoder_hidden_states=text,
                global_hidden_states=global_states, rotary_embedding=rotary, return_dict=False,
            )[0]  # fmt: skip

    measure_from_here()
    seconds, _ = median_time(step, repeats=repeats, warmup=1)
    return {"step_s": round(seconds, 4), "parameters": sum(p.numel() for p in dit.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny stereo MusicGen and Stable Audio on the CPU"
    )
    parser.add_argument(
        "--gpu", action="store_true", help="MusicGen-medium and the Stable Audio Open DiT on CUDA"
    )
    args = parser.parse_args()
    seconds, repeats = (2.0, 1) if args.gpu else (1.0, 1)  # gpu.sh gives each benchmark 150 s at most
    start = time.perf_counter()
    kwargs = dict(gpu=args.gpu, seconds=seconds, repeats=repeats)
    ours = in_fresh_process("bench.music_families:musicgen", timeout=300, variant="ours", **kwargs)
    plain = in_fresh_process("bench.music_families:musicgen", timeout=300, variant="plain", **kwargs)
    diffusion = in_fresh_process(
        "bench.music_families:stable_audio_step", timeout=300, gpu=args.gpu, repeats=3
    )
    peak = "peak_cuda_bytes" if args.gpu else "peak_rss_bytes"
    config = {
        "musicgen": "MusicGen-medium (real config, random weights, fp16)"
        if args.gpu
        else "tiny stereo MusicGen",
        "stable_audio": "Stable Audio Open 1.0 DiT (real config, fp16)" if args.gpu else "tiny Stable Audio",
        "seconds": seconds,
        "repeats": repeats,
        "guidance": GUIDANCE,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    emit(
        "music_families",
        config,
        {"musicgen": ours, "stable_audio_step": diffusion},
        {"musicgen_plain_generate": plain},
        {
            "token_time_vs_plain": round(ours["token_ms"] / plain["token_ms"], 3),
            "peak_vs_plain": round(ours[peak] / max(1, plain[peak]), 3),
        },
    )


if __name__ == "__main__":
    main()
