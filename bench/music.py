"""Music benchmark: Hearth's music job vs plain transformers MusicGen ``generate`` on the same weights.

Each variant runs in a fresh process (so its peak memory is its own, measured after the model is
loaded), pinned to one thread, and reports the median over repeats of the real-time factor
(seconds of audio per second of compute) and its peak memory. Hearth's path is the worker's
``workers.jobs.music.run``: request validation, window planning, the per-token hook that reports
progress and checks cancel (events encoded as on the wire), and the tagged WAV + sidecar write.
The baseline is what a user would otherwise write: ``model.generate`` then ``soundfile.write``.
Both use the same seed and sampling settings, so their audio must be identical, or the run fails.

    python bench/music.py --quick    # demo MusicGen on CPU, under 2 minutes
    python bench/music.py            # the same, longer clip and more repeats
    python bench/music.py --gpu      # MusicGen-small-sized random weights, only where CUDA is available
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process, measure_from_here, median_time  # noqa: E402

PROMPT = "upbeat electronic music with drums"
SEED = 7
GUIDANCE = 3.0
TOP_K = 250


# --------------------------------------------------------------------------- children: one variant each


class _Runtime:
    """The bits of a worker runtime a handler touches when no arbiter or pipe is involved."""

    def __init__(self) -> None:
        from workers.runtime import WarmCache

        self.cache = WarmCache()

    def honour_revokes(self, ctx) -> None:
        return None

    def lease_memory(self, ctx, key, tiers, on_release):
        tiers[0].apply()
        return tiers[0]


def _context(runtime: _Runtime):
    from workers.codec import encode
    from workers.context import CancelToken, JobContext
    from workers.protocol import Priority

    return JobContext(
        job_id="bench",
        priority=Priority.single_shot,
        send=encode,
        cancel_token=CancelToken(),
        runtime=runtime,
    )


def ours(model: str, seconds: float, repeats: int, out: str) -> dict:
    """Hearth's music job, warm model cache (the first run loads; it is not timed)."""
    from workers.jobs.music import run
    from workers.protocol import MusicRequest

    runtime = _Runtime()
    request = MusicRequest(
        prompt=PROMPT, seconds=seconds, seed=SEED, guidance=GUIDANCE, model=model, out_path=out
    )
    run(_context(runtime), request)  # load + warm up
    measure_from_here()
    elapsed, _ = median_time(lambda: run(_context(runtime), request), repeats=repeats, warmup=0)
    return {"seconds_of_audio": seconds, "compute_s": elapsed, "rtf": seconds / elapsed, "out": out}


def plain(model: str, seconds: float, repeats: int, out: str) -> dict:
    """Plain transformers: from_pretrained, generate, soundfile.write."""
    import soundfile
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    from models.music import ensure_demo_music

    folder = ensure_demo_music(model) if not Path(model).exists() else Path(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = MusicgenForConditionalGeneration.from_pretrained(folder).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rate, frame_rate = net.config.audio_encoder.sampling_rate, net.config.audio_encoder.frame_rate
    samples = round(seconds * rate)
    steps = -(-samples * frame_rate // rate) + net.config.decoder.num_codebooks - 1
    inputs = tokenizer([PROMPT], return_tensors="pt", padding=True).to(device)

    def once():
        torch.manual_seed(SEED)
        with torch.inference_mode():
            audio = net.generate(
                **inputs,
                max_new_tokens=int(steps),
                do_sample=True,
                top_k=TOP_K,
                temperature=1.0,
                guidance_scale=GUIDANCE,
            )
        soundfile.write(out, audio[0, 0, :samples].float().cpu().numpy().clip(-1, 1), rate, subtype="PCM_16")

    once()
    measure_from_here()
    elapsed, _ = median_time(once, repeats=repeats, warmup=0)
    return {"seconds_of_audio": seconds, "compute_s": elapsed, "rtf": seconds / elapsed, "out": out}


def prepare_musicgen_small(folder: str) -> dict:
    """MusicGen-small's architecture (T5-base text encoder, 32 kHz EnCodec, 24-layer decoder), random weights."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    from models.tiny_tokenizers import fast_tokenizer

    torch.manual_seed(0)
    text = T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_heads=12,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        codebook_size=2048,
        num_filters=64,
        hidden_size=128,
        upsampling_ratios=[8, 5, 4, 4],
        num_lstm_layers=2,
        num_residual_layers=1,
        target_bandwidths=[2.2],
        normalize=False,
        use_causal_conv=False,
        compress=2,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        num_codebooks=4,
        max_position_embeddings=2048,
        pad_token_id=2048,
        bos_token_id=2048,
        audio_channels=1,
    )
    model = MusicgenForConditionalGeneration(
        MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    )
    for layer in model.audio_encoder.quantizer.layers:  # zero codebooks would make every code sound alike
        layer.codebook.embed.normal_()
    model.generation_config.update(
        decoder_start_token_id=2048,
        pad_token_id=2048,
        do_sample=True,
        guidance_scale=GUIDANCE,
        max_length=1500,
    )
    model.save_pretrained(folder)
    fast_tokenizer().save_pretrained(folder)
    return {"folder": folder, "parameters": sum(p.numel() for p in model.parameters())}


# --------------------------------------------------------------------------- parent


def compare(
    model: str, seconds: float, repeats: int, scratch: str, timeout: float = 600
) -> tuple[dict, dict]:
    ours_result = in_fresh_process(
        "bench.music:ours",
        timeout=timeout,
        model=model,
        seconds=seconds,
        repeats=repeats,
        out=f"{scratch}/ours.wav",
    )
    plain_result = in_fresh_process(
        "bench.music:plain",
        timeout=timeout,
        model=model,
        seconds=seconds,
        repeats=repeats,
        out=f"{scratch}/plain.wav",
    )
    _check_same_audio(ours_result["out"], plain_result["out"])
    return ours_result, plain_result


def _check_same_audio(a: str, b: str) -> None:
    import numpy as np
    import soundfile

    first, second = soundfile.read(a)[0], soundfile.read(b)[0]
    if first.shape != second.shape or not np.allclose(first, second, atol=2e-4):
        raise SystemExit(
            f"outputs differ: {first.shape} vs {second.shape}; Hearth's path must equal plain generate"
        )


def _summary(result: dict) -> dict:
    keys = ("rtf", "compute_s", "seconds_of_audio", "peak_rss_bytes", "peak_cuda_bytes")
    return {
        key: round(result[key], 4) if isinstance(result[key], float) else result[key]
        for key in keys
        if key in result
    }


def _ratio(ours_result: dict, plain_result: dict) -> dict:
    ratio = {"rtf_vs_plain": round(ours_result["rtf"] / plain_result["rtf"], 3)}
    for key in ("peak_rss_bytes", "peak_cuda_bytes"):
        if plain_result.get(key):
            ratio[key.removesuffix("_bytes") + "_vs_plain"] = round(ours_result[key] / plain_result[key], 3)
    return ratio


def gpu_section(scratch: str) -> None:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: the --gpu section is skipped", file=sys.stderr)
        return
    prepared = in_fresh_process("bench.music:prepare_musicgen_small", folder=f"{scratch}/musicgen-small")
    seconds, repeats = 4.0, 2
    ours_result, plain_result = compare(prepared["folder"], seconds, repeats, scratch, timeout=300)
    config = {
        "model": "musicgen-small-sized random weights",
        "parameters": prepared["parameters"],
        "seconds": seconds,
        "repeats": repeats,
        "guidance": GUIDANCE,
        "dtype": "float32",
    }
    emit("music", config, _summary(ours_result), _summary(plain_result), _ratio(ours_result, plain_result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="demo MusicGen on CPU, under two minutes")
    parser.add_argument("--gpu", action="store_true", help="MusicGen-small-sized random weights on CUDA")
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-music-") as scratch:
        os.environ.setdefault("HEARTH_MODELS_DIR", f"{scratch}/models")
        os.environ.setdefault("HEARTH_DATA_DIR", f"{scratch}/data")
        if args.gpu:
            gpu_section(scratch)
            return
        seconds, repeats = (2.0, args.repeats or 3) if args.quick else (4.0, args.repeats or 5)
        start = time.perf_counter()
        ours_result, plain_result = compare("demo-musicgen", seconds, repeats, scratch)
        config = {
            "model": "demo-musicgen",
            "seconds": seconds,
            "repeats": repeats,
            "guidance": GUIDANCE,
            "threads": 1,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        emit(
            "music", config, _summary(ours_result), _summary(plain_result), _ratio(ours_result, plain_result)
        )


if __name__ == "__main__":
    main()
