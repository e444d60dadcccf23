"""Image families at their real sizes: SDXL per memory tier and a brush edit at 1024^2, SD3.5-medium
and Flux-schnell transformer steps, all with random weights built from the real configs.

    python bench/image_families.py --quick   # the tiny families on CPU at 64x64 (proves the code runs)
    python bench/image_families.py --gpu     # real configs, 1024x1024, fp16 (SDXL) / bf16 (SD3.5, Flux)

SDXL: the UNet (2.6B), its VAE and both CLIP text encoders at their published shapes, run
through Hearth's own tiers (``workers/image_tiers.py``: resident, vae_tiled, model_offload,
group_offload), each reporting peak device memory and seconds per denoising step; then a brush
session on the same pipeline (``workers/brushes``) and one layer edit's latency (N steps, the
layer restarting at step n: (N - n) UNet calls, counted). The Layered Diffusion Brushes paper
reports 140 ms for an edit at 512^2 on SD; this is the 1024^2 SDXL figure. SD3.5-medium (MMDiT-X,
2.5B) and a Flux-schnell-size transformer (12B) are timed alone per step with CFG (SD3.5) or
without (schnell), their text-encoder outputs stood in by tensors of the real shapes.

CPU peak = VmHWM after reset minus RSS before (docs/FIELD-NOTES.md §8); CUDA peak =
``max_memory_allocated`` after ``reset_peak_memory_stats``. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit  # noqa: E402

QUICK = {"size": 64, "steps": 3, "brush_steps": 8, "regen_step": 4, "device": "cpu", "scale": "tiny"}
GPU = {"size": 1024, "steps": 3, "brush_steps": 20, "regen_step": 12, "device": "cuda", "scale": "real"}
PROMPT = "a lighthouse on a cliff at dusk"


# --------------------------------------------------------------------------- real-size builders


def sdxl_pipeline(device: str, scale: str):
    """SDXL base 1.0's component shapes (its published configs), random weights; the tiny one on CPU."""
    import torch

    if scale == "tiny":
        from models.tiny_image_families import build_tiny_sdxl

        return build_tiny_sdxl(seed=0)
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from models.tiny_parts import tiny_clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ).half()
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            latent_channels=4,
            sample_size=1024,
            scaling_factor=0.13025,
            force_upcast=False,  # stands for the fp16-fixed VAE (madebyollin/sdxl-vae-fp16-fix), same shapes
        ).half()
        clip_l = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12
            )
        ).half()
        clip_g = CLIPTextModelWithProjection(
            CLIPTextConfig(
                hidden_size=1280,
                intermediate_size=5120,
                num_attention_heads=20,
                num_hidden_layers=32,
                projection_dim=1280,
                hidden_act="gelu",
            )
        ).half()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=clip_l,
        text_encoder_2=clip_g,
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
    )


def sd35_medium_transformer(device: str, scale: str):
    import torch
    from diffusers import SD3Transformer2DModel

    if scale == "tiny":
        from models.tiny_image_families import build_tiny_sd3

        return build_tiny_sd3(seed=0).transformer, {"text": 32, "pooled": 64, "tokens": 16}
    with torch.device(device):
        model = SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            pos_embed_max_size=384,
            dual_attention_layers=tuple(range(13)),
            qk_norm="rms_norm",
        ).to(torch.bfloat16)
    return model, {"text": 4096, "pooled": 2048, "tokens": 333}  # 77 CLIP + 256 T5 tokens


def flux_schnell_transformer(device: str, scale: str):
    import torch
    from diffusers import FluxTransformer2DModel

    if scale == "tiny":
        from models.tiny_image_families import build_tiny_flux

        return build_tiny_flux(seed=0).transformer, {"text": 32, "pooled": 32, "tokens": 16}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # 12B parameters: never materialised in fp32
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                num_layers=19,
                num_single_layers=38,
                attention_head_dim=128,
                num_attention_heads=24,
                joint_attention_dim=4096,
                pooled_projection_dim=768,
                guidance_embeds=False,
                axes_dims_rope=(16, 56, 56),
            )
    finally:
        torch.set_default_dtype(previous)
    return model, {"text": 4096, "pooled": 768, "tokens": 256}


# --------------------------------------------------------------------------- measurements


class Peak:
    """Peak memory from here on: CUDA's allocator, or the process's VmHWM on the CPU."""

    def __init__(self, device: str) -> None:
        import torch

        from bench.harness import reset_peak, rss_bytes

        self.device = device
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak()
            self.base = rss_bytes()

    def bytes(self) -> int:
        import torch

        from bench.harness import vmhwm_bytes

        if self.device == "cuda":
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        return max(0, vmhwm_bytes() - self.base)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def sdxl_tiers(pipe, config: dict) -> dict:
    """Each of Hearth's tiers on the SDXL pipeline: peak memory and seconds per step."""
    from workers.image_tiers import image_tiers

    size, device, results = config["size"], config["device"], {}
    pipe.set_progress_bar_config(disable=True)
    for tier in image_tiers(pipe, size, size, device):
        try:
            results[tier.name] = _one_tier(pipe, tier, config)
        except (RuntimeError, ValueError) as exc:  # one tier failing (out of memory) still reports the rest
            results[tier.name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    image_tiers(pipe, size, size, device)[0].apply()  # back to resident for the brush edit
    return results


def _one_tier(pipe, tier, config: dict) -> dict:
    import torch

    size, device = config["size"], config["device"]
    tier.apply()
    stamps: list[float] = []

    def on_step(pipeline, step, timestep, kwargs, stamps=stamps):
        _sync(device)
        stamps.append(time.perf_counter())
        return kwargs

    peak = Peak(device)
    start = time.perf_counter()
    pipe(
        PROMPT,
        height=size,
        width=size,
        num_inference_steps=config["steps"],
        guidance_scale=6.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step,
    )
    _sync(device)
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)] or [stamps[0] - start]
    return {
        "peak_bytes": peak.bytes(),
        "tier_bytes_estimate": tier.bytes,
        "step_s": round(min(steps), 4),
        "total_s": round(time.perf_counter() - start, 3),
    }


def sdxl_brush_edit(pipe, config: dict) -> dict:
    """One layer edit on a cached SDXL trajectory: latency and UNet calls."""
    import numpy as np

    from workers.brushes.layers import Layer
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import decode, generate

    size, steps, n = config["size"], config["brush_steps"], config["regen_step"]
    trajectory = generate(pipe, PROMPT, "", size, size, steps, 6.0, seed=3)
    session = BrushSession("bench", pipe, trajectory, decode(pipe, trajectory.latents[-1:]), PROMPT)
    mask = np.zeros((size, size), dtype=np.float32)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    calls = {"n": 0}
    handle = pipe.unet.register_forward_hook(lambda *args: calls.__setitem__("n", calls["n"] + 1))
    timings = []
    try:
        for seed in range(3):  # a new layer each time: nothing cached but the trajectory
            layer = Layer(
                id=f"l{seed}", mask=mask, prompt="a red sailboat", strength=0.9, regen_step=n, seed=seed
            )
            calls["n"] = 0
            _sync(config["device"])
            start = time.perf_counter()
            session.render([layer])
            _sync(config["device"])
            timings.append(time.perf_counter() - start)
    finally:
        handle.remove()
    return {
        "steps": steps,
        "regen_step": n,
        "unet_calls": calls["n"],
        "edit_ms": round(sorted(timings)[1] * 1000, 1),
    }


def transformer_step(build, config: dict, *, cfg: bool, flux: bool) -> dict:
    """Seconds per denoising step and peak memory of a transformer alone at the bench size."""
    import torch

    device = config["device"]
    model, shapes = build(device, config["scale"])
    model.eval()
    dtype = next(model.parameters()).dtype
    parameters = sum(p.numel() for p in model.parameters())
    latent = config["size"] // (8 if config["scale"] == "real" else 2)
    batch = 2 if cfg else 1
    text = torch.randn((batch, shapes["tokens"], shapes["text"]), device=device, dtype=dtype)
    pooled = torch.randn((batch, shapes["pooled"]), device=device, dtype=dtype)
    if flux:
        tokens = (latent // 2) ** 2
        inputs = {
            "hidden_states": torch.randn((batch, tokens, 64), device=device, dtype=dtype),
            "timestep": torch.full((batch,), 0.5, device=device, dtype=dtype),
            "pooled_projections": pooled,
            "encoder_hidden_states": text,
            "txt_ids": torch.zeros((shapes["tokens"], 3), device=device, dtype=dtype),
            "img_ids": torch.zeros((tokens, 3), device=device, dtype=dtype),
        }
    else:
        inputs = {
            "hidden_states": torch.randn((batch, 16, latent, latent), device=device, dtype=dtype),
            "timestep": torch.full((batch,), 500.0, device=device),
            "encoder_hidden_states": text,
            "pooled_projections": pooled,
        }
    with torch.no_grad():
        model(**inputs, return_dict=False)  # warm-up (kernels, allocator)
        peak = Peak(device)
        timings = []
        for _ in range(config["steps"]):
            _sync(device)
            start = time.perf_counter()
            model(**inputs, return_dict=False)
            _sync(device)
            timings.append(time.perf_counter() - start)
    result = {
        "parameters": parameters,
        "step_s": round(min(timings), 4),
        "peak_bytes": peak.bytes(),
        "batch": batch,
    }
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def run(config: dict) -> None:
    import torch

    torch.set_num_threads(1 if config["device"] == "cpu" else 8)
    pipe = sdxl_pipeline(config["device"], config["scale"])
    tiers = sdxl_tiers(pipe, config)
    edit = sdxl_brush_edit(pipe, config)
    del pipe
    if config["device"] == "cuda":
        torch.cuda.empty_cache()
    sd35 = transformer_step(sd35_medium_transformer, config, cfg=True, flux=False)
    flux = transformer_step(flux_schnell_transformer, config, cfg=False, flux=True)
    limit = (config["brush_steps"] - config["regen_step"]) + 2
    problems = [f"tier {name}: {r['error']}" for name, r in tiers.items() if "error" in r]
    if edit["unet_calls"] > limit:
        problems.append(f"a brush edit called the UNet {edit['unet_calls']} times (limit {limit})")
    emit(
        "image_families",
        config=config,
        ours={"sdxl_tiers": tiers, "sdxl_brush_edit": edit, "sd35_medium": sd35, "flux_schnell": flux},
        baseline={"paper_brush_edit_ms_sd_512": 140},
        ratio={"sdxl_edit_ms_1024": edit["edit_ms"]},
    )
    if problems:
        raise SystemExit("image_families: " + "; ".join(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny families on CPU")
    parser.add_argument("--gpu", action="store_true", help="real configs at 1024x1024 on CUDA")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("image_families --gpu: no CUDA device")
        run(GPU)
    else:
        run(QUICK)


if __name__ == "__main__":
    main()
