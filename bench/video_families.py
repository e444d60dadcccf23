"""Video transformers: Hearth's token Feature Slicer + Operator Grouping against the stock diffusers
forward, per memory tier, same inputs (see docs/BENCHMARKS.md).

    .venv/bin/python bench/video_families.py --quick   # CPU: the tiny Wan 2.1 and LTX transformers
    .venv/bin/python bench/video_families.py --gpu     # Wan 2.1 T2V 1.3B, its real config, random
                                                       # weights, bf16, 480x832, 81 frames

Each tier is one denoiser call (a Wan step is two: its CFG passes run one after the other) in a fresh
process: peak memory above what the weights and inputs hold (CUDA ``max_memory_allocated``, CPU
VmHWM) and the median step time. The sliced outputs are checked against the stock one (max abs
difference, relative to the output's scale). Text embeddings are random (the 5.7B UMT5 encoder runs
once per prompt, not per step); the VAE decode is not part of a step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process, measure_from_here, median_time  # noqa: E402

WAN21_1_3B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
"""Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json."""
GPU = {"frames": 81, "height": 480, "width": 832, "tiers": [0, 4, 16], "repeats": 2, "text_tokens": 512}
QUICK = {"frames": 9, "height": 64, "width": 64, "tiers": [0, 4, 16], "repeats": 2, "text_tokens": 16}
TOLERANCE = 1e-3
"""Relative to the output's largest magnitude: bf16 products of fewer rows round differently."""


def _transformer(family: str, gpu: bool):
    import torch

    from models import tiny_video

    if not gpu:
        return tiny_video.tiny_ltx_transformer() if family == "ltx" else tiny_video.tiny_wan_transformer()
    from diffusers import WanTransformer3DModel

    with torch.device("cuda"):  # random init on the device: seconds, not minutes on the CPU
        return WanTransformer3DModel(**WAN21_1_3B).to(torch.bfloat16)


def _inputs(family: str, transformer, config: dict, device: str, dtype):
    import torch

    generator = torch.Generator(device).manual_seed(0)
    frames = (config["frames"] - 1) // 4 + 1
    if family == "ltx":  # the tiny LTX VAE: 4x in space and time, tokens packed (B, N, C)
        h, w = config["height"] // 4, config["width"] // 4
        tokens = torch.randn((2, frames * h * w, 8), generator=generator, device=device, dtype=dtype)
        text = torch.randn((2, config["text_tokens"], 32), generator=generator, device=device, dtype=dtype)
        mask = torch.ones((2, config["text_tokens"]), device=device)
        shape = dict(num_frames=frames, height=h, width=w)
        return lambda: transformer(tokens, text, torch.tensor([500, 500], device=device), mask, **shape)[0]
    h, w = config["height"] // 8, config["width"] // 8
    latents = torch.randn((1, 16, frames, h, w), generator=generator, device=device, dtype=dtype)
    text_dim = transformer.config.text_dim
    text = torch.randn((1, config["text_tokens"], text_dim), generator=generator, device=device, dtype=dtype)
    return lambda: transformer(latents, torch.tensor([500], device=device), text, return_dict=False)[0]


def tier(family: str, slices: int, gpu: bool, config: dict, reference: str = "") -> dict:
    """One tier in this (fresh) process: 0 slices = stock diffusers, else the token slicer."""
    import contextlib

    import torch

    from workers.video.dit_slicer import TransformerSlicer

    torch.manual_seed(0)
    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    transformer = _transformer(family, gpu).eval()
    call = _inputs(family, transformer, config, device, dtype)
    slicer = TransformerSlicer(transformer, slices) if slices else contextlib.nullcontext()
    with torch.no_grad(), slicer:
        measure_from_here()  # weights and inputs are not the tier's
        seconds, out = median_time(call, repeats=config["repeats"], warmup=1)
    result = {"slices": slices, "step_s": round(seconds, 4), "tokens": int(out.numel() // out.shape[-1])}
    out = out.float().cpu()
    if reference:
        stock = torch.load(reference)
        result["max_rel_diff"] = float((out - stock).abs().max() / stock.abs().max())
    else:
        torch.save(out, config["scratch"] + f"/{family}-stock.pt")
    return result


def run(family: str, gpu: bool, config: dict) -> dict:
    rows = []
    reference = ""
    for slices in config["tiers"]:
        row = in_fresh_process(
            "bench.video_families:tier", timeout=300, family=family, slices=slices, gpu=gpu, config=config,
            reference=reference,
        )  # fmt: skip
        reference = reference or config["scratch"] + f"/{family}-stock.pt"
        rows.append(row)
    for row in rows[1:]:
        if row["max_rel_diff"] > TOLERANCE:
            raise SystemExit(
                f"{family} sliced:{row['slices']} differs from stock by {row['max_rel_diff']:.2e}"
            )
    return {"stock": rows[0], "sliced": rows[1:]}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny Wan and LTX transformers on the CPU")
    parser.add_argument(
        "--gpu", action="store_true", help="Wan 2.1 1.3B (real config, random weights) on CUDA"
    )
    args = parser.parse_args()
    peak = "peak_cuda_bytes" if args.gpu else "peak_rss_bytes"
    with tempfile.TemporaryDirectory(prefix="hearth-bench-video-families-") as scratch:
        start = time.perf_counter()
        config = dict(GPU if args.gpu else QUICK, scratch=scratch)
        families = ["wan"] if args.gpu else ["wan", "ltx"]
        results = {family: run(family, args.gpu, config) for family in families}
        main_result = results["wan"]
        stock, leanest = main_result["stock"], main_result["sliced"][-1]
        config.pop("scratch")
        config.update(
            model="Wan 2.1 T2V 1.3B (real config, random weights, bf16)"
            if args.gpu
            else "tiny Wan 2.1 / LTX",
            wall_s=round(time.perf_counter() - start, 1),
        )
        emit(
            "video_families",
            config,
            {f"{family}:sliced:{row['slices']}": row for family, r in results.items() for row in r["sliced"]},
            {f"{family}:stock": r["stock"] for family, r in results.items()},
            {
                "peak_vs_stock": round(leanest[peak] / max(1, stock[peak]), 3),
                "step_time_vs_stock": round(leanest["step_s"] / max(1e-9, stock["step_s"]), 3),
            },
        )


if __name__ == "__main__":
    main()
