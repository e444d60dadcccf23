"""Video diffusion memory: Hearth's Feature Slicer + Operator Grouping (+ Step Rehash) against the
stock diffusers AnimateDiff pipeline and diffusers' own split inference, same seed, each variant in
a fresh process (see docs/BENCHMARKS.md).

    .venv/bin/python bench/video_memory.py --quick     # CPU, under ~2 minutes on an idle machine
    .venv/bin/python bench/video_memory.py --gpu       # AnimateDiff size: SD1.5 UNet + motion adapter,
                                                       # random weights, 16 frames, 512x512, fp16

CPU peak = VmHWM after resetting it (``/proc/self/clear_refs``) minus the RSS before the measured run
(denoising + VAE decode); CUDA peak = ``max_memory_allocated`` minus the memory allocated before.
The CPU model is the demo AnimateDiff architecture with spatial attention at the low-resolution
level only and 32-wide attention heads: the CPU flash-attention kernel with 4-wide heads at 4096
tokens would otherwise take ~90% of the time while adding nothing to the activation memory story.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process, rss_bytes, vmhwm_bytes  # noqa: E402

MODES = ("stock", "diffusers_split", "ours", "ours_rehash")
QUICK = {
    "frames": 16,
    "size": 128,
    "steps": 2,
    "guidance": 1.0,
    "slices": 8,
    "repeats": 1,
    "rehash_interval": 2,
}
GPU = {
    "frames": 16,
    "size": 512,
    "steps": 3,
    "guidance": 7.5,
    "slices": 8,
    "repeats": 3,
    "rehash_interval": 2,
}
TOLERANCE = 1e-4


# --------------------------------------------------------------------------- CPU: the whole pipeline


def build_bench_pipeline(seed: int = 0):
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    from models.video import build_demo_animatediff

    demo = build_demo_animatediff(seed)
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
        attention_head_dim=32,
    )
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
        motion_max_seq_length=32,
    )
    pipe = AnimateDiffPipeline(
        unet=unet,
        motion_adapter=adapter,
        vae=demo.vae,
        text_encoder=demo.text_encoder,
        tokenizer=demo.tokenizer,
        scheduler=demo.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cpu_variant(mode: str, config: dict, latents_out: str) -> dict:
    """One variant in this (fresh) process: peak of the first render, median denoise time, latents saved."""
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    pipe = build_bench_pipeline()
    render = _cpu_render(pipe, mode, config)
    base = rss_bytes()
    _reset_hwm()
    start = time.perf_counter()
    latents = render()
    first = time.perf_counter() - start
    peak = vmhwm_bytes() - base
    times = [first] + [_timed(render) for _ in range(config["repeats"] - 1)]
    save_file({"latents": latents.contiguous()}, latents_out)
    return {"peak_bytes": peak, "denoise_s": statistics.median(times), "times": times}


def _cpu_render(pipe, mode: str, config: dict):
    import torch

    from workers.video.decode import decode_frames
    from workers.video.memory_plan import VideoPlan
    from workers.video.rehash import StepRehash, uniform_key_steps
    from workers.video.slicer import VideoSlicer

    n, frames = config["slices"], config["frames"]
    if mode == "diffusers_split":
        rows = frames * (2 if config["guidance"] > 1 else 1)
        positions = rows // frames * (config["size"] // pipe.vae_scale_factor) ** 2
        pipe.enable_free_noise_split_inference(
            spatial_split_size=max(1, positions // n), temporal_split_size=max(1, rows // n)
        )

    def render():
        generator = torch.Generator().manual_seed(0)
        call = dict(
            prompt="a cat playing piano",
            num_frames=frames,
            height=config["size"],
            width=config["size"],
            num_inference_steps=config["steps"],
            guidance_scale=config["guidance"],
            generator=generator,
            output_type="latent",
        )
        with torch.no_grad():
            if mode.startswith("ours"):
                with VideoSlicer(pipe.unet, n, n) as slicer:
                    keys = uniform_key_steps(
                        config["steps"], config["rehash_interval"] if "rehash" in mode else 1
                    )
                    with StepRehash(pipe.unet, keys, slicer=slicer):
                        latents = pipe(**call).frames
                decode_frames(pipe, "animatediff", latents, VideoPlan("lean", n, n, decode_chunk=1))
            else:
                latents = pipe(**call).frames
                chunk = frames if mode == "stock" else 1  # stock: diffusers' default decode_chunk_size=16
                pipe.decode_latents(latents, decode_chunk_size=chunk)
        return latents

    return render


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- GPU: the UNet at AnimateDiff size


def build_sd15_motion_unet(device: str, dtype_name: str, tiny: bool = False):
    """SD1.5's UNet config + a default AnimateDiff motion adapter, random weights, built on ``device``."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    torch.manual_seed(0)
    channels = (32, 64, 64, 64) if tiny else (320, 640, 1280, 1280)
    with torch.device(device):
        unet2d = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=channels,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=32 if tiny else 768,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        adapter = MotionAdapter(
            block_out_channels=channels,
            motion_layers_per_block=2,
            motion_num_attention_heads=8,
            motion_max_seq_length=32,
            motion_norm_num_groups=32,
        )
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    return unet.to(device=device, dtype=getattr(torch, dtype_name)).eval()


def gpu_variant(
    mode: str,
    config: dict,
    latents_out: str,
    device: str = "cuda",
    dtype: str = "float16",
    tiny: bool = False,
) -> dict:
    """A DDIM denoising loop over the bare UNet (CFG batch 2) with random text embeddings."""
    import torch
    from diffusers import DDIMScheduler
    from safetensors.torch import save_file

    unet = build_sd15_motion_unet(device, dtype, tiny)
    frames, latent = config["frames"], config["size"] // 8
    generator = torch.Generator("cpu").manual_seed(0)
    start_latents = torch.randn((1, 4, frames, latent, latent), generator=generator).to(device, unet.dtype)
    text = torch.randn((2, 77, unet.config.cross_attention_dim), generator=generator).to(device, unet.dtype)
    text = text.repeat_interleave(frames, dim=0)
    scheduler = DDIMScheduler(
        beta_schedule="linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, clip_sample=False
    )
    loop = _unet_loop(unet, scheduler, start_latents, text, mode, config)
    loop()  # warm-up: kernels, allocator
    _sync(device)
    base = _allocated(device)
    _reset_peak(device)
    times = [_timed_sync(loop, device) for _ in range(config["repeats"])]
    peak = _peak(device) - base
    latents = loop()
    save_file({"latents": latents.float().cpu().contiguous()}, latents_out)
    return {"peak_bytes": peak, "denoise_s": statistics.median(times), "times": times}


def _unet_loop(unet, scheduler, start_latents, text, mode: str, config: dict):
    import contextlib

    import torch
    from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

    from workers.video.rehash import StepRehash, uniform_key_steps
    from workers.video.slicer import VideoSlicer

    n, steps = config["slices"], config["steps"]
    if mode == "diffusers_split":
        holder = type("Holder", (AnimateDiffFreeNoiseMixin,), {})()
        holder.unet = unet
        rows = text.shape[0]
        holder.enable_free_noise_split_inference(
            spatial_split_size=max(1, 2 * start_latents.shape[-1] ** 2 // n),
            temporal_split_size=max(1, rows // n),
        )

    def loop():
        scheduler.set_timesteps(steps)
        latents = start_latents.clone()
        with contextlib.ExitStack() as stack, torch.no_grad():
            if mode.startswith("ours"):
                slicer = stack.enter_context(VideoSlicer(unet, n, n))
                keys = uniform_key_steps(steps, config["rehash_interval"] if "rehash" in mode else 1)
                stack.enter_context(StepRehash(unet, keys, slicer=slicer))
            for t in scheduler.timesteps:
                noise = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample
                uncond, cond = noise.chunk(2)
                latents = scheduler.step(
                    uncond + config["guidance"] * (cond - uncond), t, latents
                ).prev_sample
        return latents

    return loop


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _allocated(device: str) -> int:
    import torch

    return torch.cuda.memory_allocated() if device.startswith("cuda") else rss_bytes()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_hwm()


def _peak(device: str) -> int:
    import torch

    return torch.cuda.max_memory_allocated() if device.startswith("cuda") else vmhwm_bytes()


def _timed_sync(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- driver


def run_all(target: str, config: dict, **extra) -> dict:
    """Every mode in its own fresh process; returns per-mode results plus latents diffs against stock."""
    from safetensors.torch import load_file

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            out = str(Path(tmp) / f"{mode}.safetensors")
            results[mode] = in_fresh_process(
                target, timeout=900, mode=mode, config=config, latents_out=out, **extra
            )
            print(f"{mode}: {json.dumps(results[mode])}", file=sys.stderr, flush=True)
        stock = load_file(str(Path(tmp) / "stock.safetensors"))["latents"]
        for mode in MODES[1:]:
            other = load_file(str(Path(tmp) / f"{mode}.safetensors"))["latents"]
            results[mode]["max_abs_diff"] = float((other - stock).abs().max())
            results[mode]["max_rel_diff"] = float(
                (other - stock).abs().max() / stock.abs().max().clamp_min(1e-12)
            )
    return results


def report(section: str, results: dict, config: dict, tolerance: float, device: str | None = None) -> int:
    stock, split, ours, rehash = (results[m] for m in MODES)
    ratio = {
        "peak_memory": ours["peak_bytes"] / stock["peak_bytes"],
        "time": ours["denoise_s"] / stock["denoise_s"],
        "peak_memory_vs_diffusers_split": ours["peak_bytes"] / split["peak_bytes"],
        "diffusers_split_peak_memory": split["peak_bytes"] / stock["peak_bytes"],
        "step_rehash_speed": ours["denoise_s"] / rehash["denoise_s"],
    }
    emit(
        f"video_memory{section}",
        config=config,
        device=device,
        ours={
            **ours,
            "step_rehash": {
                "denoise_s": rehash["denoise_s"],
                "peak_bytes": rehash["peak_bytes"],
                "max_abs_diff": rehash["max_abs_diff"],
            },
        },
        baseline={"stock": stock, "diffusers_split": split},
        ratio=ratio,
        step_rehash={"speed_ratio": ratio["step_rehash_speed"], "max_abs_diff": rehash["max_abs_diff"]},
    )
    measure = "max_rel_diff" if section == "_gpu" else "max_abs_diff"
    if ours[measure] > tolerance:
        print(
            f"FAIL: sliced latents differ from stock ({measure} {ours[measure]:.3g} > {tolerance})",
            file=sys.stderr,
        )
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CPU run under about two minutes")
    parser.add_argument("--gpu", action="store_true", help="AnimateDiff-size run on CUDA")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per variant (median reported)")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: skipping the GPU section", file=sys.stderr)
            return 0
        config = dict(GPU, repeats=args.repeats or GPU["repeats"])
        results = run_all("bench.video_memory:gpu_variant", config)
        # fp16, CFG 7.5: slicing reorders fp16 reductions and guidance amplifies them, so compare
        # relative to the latents' range, at fp16's resolution.
        return report("_gpu", results, config, tolerance=1e-2, device=torch.cuda.get_device_name(0))
    config = dict(QUICK, repeats=args.repeats or (1 if args.quick else 3))
    if not args.quick:
        config.update(frames=16, size=192)
    return report("", run_all("bench.video_memory:cpu_variant", config), config, tolerance=TOLERANCE)


if __name__ == "__main__":
    sys.exit(main())
