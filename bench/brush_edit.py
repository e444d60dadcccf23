"""One layered-brush edit from cached latents vs full regeneration vs diffusers' inpainting.

    python bench/brush_edit.py --quick     # tiny demo-size model on CPU (< 2 min)
    python bench/brush_edit.py --gpu       # SD1.5-size UNet/VAE/CLIP, random weights, 512x512 fp16

Each variant runs in a fresh process (peak memory per variant, BENCHMARKS.md):
- ours: a layer edit on a session whose trajectory is cached: (N-2-n) branch steps + 2 finishing steps;
- full: the same edited result with nothing cached (base trajectory, then the same edit), checked
  bit-identical to ours;
- inpaint: ``StableDiffusionInpaintPipeline`` (9-channel UNet built from the same config) masking the
  same region, all N steps (strength 1.0), the masked edit a user would otherwise run.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process, median_time  # noqa: E402

QUICK = {"size": 64, "steps": 20, "regen_step": 12, "repeats": 3, "scale": "tiny", "dtype": "float32"}
GPU = {"size": 512, "steps": 50, "regen_step": 40, "repeats": 5, "scale": "sd15", "dtype": "float16"}
PROMPT, EDIT_PROMPT = "a red apple on a wooden table", "a blue vase"


# --------------------------------------------------------------------------- models


def build_pipeline(scale: str, inpaint: bool = False, dtype: str = "float32"):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    from models.image import build_demo_sd

    device = "cuda" if torch.cuda.is_available() and scale == "sd15" else "cpu"
    base = build_demo_sd(seed=0) if scale == "tiny" else _sd15_pipeline(device)
    components = dict(base.components)
    if inpaint:
        components["unet"] = _inpaint_unet(base.unet)
    components["scheduler"] = DDIMScheduler.from_config(base.scheduler.config)
    pipe_class = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = pipe_class(**components).to(device, getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inpaint_unet(unet):
    """The same UNet config with 9 input channels (latents + mask + masked-image latents)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    with torch.device(unet.device):
        return UNet2DConditionModel.from_config({**unet.config, "in_channels": 9})


def _sd15_pipeline(device: str):
    """SD1.5's UNet, VAE and CLIP-L text encoder shapes with random weights (no download possible)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from models.tiny_tokenizers import clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                vocab_size=49408,
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer(Path(tmp))
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def edit_mask(size: int):
    """A centred square covering a quarter of the image, softly feathered."""
    import numpy as np

    mask = np.zeros((size, size), dtype=np.float32)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return mask


def _layer(config):
    from workers.brushes.layers import Layer

    return Layer(
        id="edit",
        mask=edit_mask(config["size"]),
        prompt=EDIT_PROMPT,
        strength=0.9,
        regen_step=config["regen_step"],
        seed=7,
        feather=2.0,
    )


def _session(pipe, trajectory):
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import decode

    return BrushSession(
        session_id="bench",
        pipe=pipe,
        trajectory=trajectory,
        base_image=decode(pipe, trajectory.latents[-1:]),
        prompt=PROMPT,
    )


class _Counter:
    def __init__(self, unet) -> None:
        self.calls = 0
        unet.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.calls += 1


def _digest(tensor) -> str:
    return hashlib.sha256(tensor.float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- variants (fresh processes)


def variant_ours(config: dict) -> dict:
    """A layer edit on a warm session: the trajectory is cached, the branch is not."""
    import torch

    from bench.harness import measure_from_here
    from workers.brushes.trajectory import generate

    pipe = build_pipeline(config["scale"], dtype=config["dtype"])
    trajectory = generate(pipe, PROMPT, "", config["size"], config["size"], config["steps"], 7.5, seed=3)
    template = _session(pipe, trajectory)
    counter = _Counter(pipe.unet)
    measure_from_here()

    def edit():
        template.branches.clear()  # the trajectory stays cached; the layer itself is new each time
        template.composites.clear()
        return template.render([_layer(config)])

    seconds, result = median_time(edit, repeats=config["repeats"])
    calls = counter.calls // (config["repeats"] + 1)
    outside = ~(template.latent_mask(_layer(config)) > 0).expand_as(result.latents)
    untouched = bool(torch.equal(result.latents[outside], trajectory.latents[-1:][outside]))
    return {
        "seconds": seconds,
        "unet_calls": calls,
        "latents": _digest(result.latents),
        "outside_mask_bit_identical": untouched,
    }


def variant_full(config: dict) -> dict:
    """The same edited result with nothing cached: the base trajectory first, then the edit."""
    from bench.harness import measure_from_here
    from workers.brushes.trajectory import generate

    pipe = build_pipeline(config["scale"], dtype=config["dtype"])
    counter = _Counter(pipe.unet)
    measure_from_here()

    def regenerate():
        trajectory = generate(pipe, PROMPT, "", config["size"], config["size"], config["steps"], 7.5, seed=3)
        return _session(pipe, trajectory).render([_layer(config)])

    seconds, result = median_time(regenerate, repeats=config["repeats"])
    return {
        "seconds": seconds,
        "unet_calls": counter.calls // (config["repeats"] + 1),
        "latents": _digest(result.latents),
    }


def variant_inpaint(config: dict) -> dict:
    """diffusers' inpainting pipeline over the same mask, all N steps."""
    import numpy as np
    import torch
    from PIL import Image

    from bench.harness import measure_from_here

    pipe = build_pipeline(config["scale"], inpaint=True, dtype=config["dtype"])
    size = config["size"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))
    mask = Image.fromarray((edit_mask(size) * 255).astype(np.uint8))
    counter = _Counter(pipe.unet)
    measure_from_here()

    def inpaint():
        generator = torch.Generator("cpu").manual_seed(7)
        return pipe(
            EDIT_PROMPT,
            image=image,
            mask_image=mask,
            height=size,
            width=size,
            num_inference_steps=config["steps"],
            strength=1.0,
            guidance_scale=7.5,
            generator=generator,
            output_type="np",
        ).images

    seconds, images = median_time(inpaint, repeats=config["repeats"])
    ok = images.shape == (1, size, size, 3) and bool(np.isfinite(images).all())
    return {"seconds": seconds, "unet_calls": counter.calls // (config["repeats"] + 1), "output_ok": ok}


# --------------------------------------------------------------------------- main


def run(config: dict, threads: int) -> None:
    ours = in_fresh_process("bench.brush_edit:variant_ours", threads=threads, config=config)
    full = in_fresh_process("bench.brush_edit:variant_full", threads=threads, config=config)
    inpaint = in_fresh_process("bench.brush_edit:variant_inpaint", threads=threads, config=config)
    problems = []
    if ours["latents"] != full["latents"]:
        problems.append("the cached edit differs from full regeneration")
    if not ours["outside_mask_bit_identical"]:
        problems.append("latents outside the mask changed")
    if not inpaint["output_ok"]:
        problems.append("the inpainting baseline produced no valid image")
    if ours["unet_calls"] > (config["steps"] - config["regen_step"]) + 2:
        problems.append(f"the edit called the UNet {ours['unet_calls']} times")
    if problems:
        raise SystemExit("brush_edit: " + "; ".join(problems))
    emit(
        "brush_edit",
        config={**config, "threads": threads, "mask": "centre quarter", "cfg": 7.5},
        ours=ours,
        baseline={
            "full_regeneration": full,
            "inpaint_pipeline": inpaint,
            "unet_calls": inpaint["unet_calls"],
        },
        ratio={
            "edit_vs_full": ours["seconds"] / full["seconds"],
            "edit_vs_inpaint": ours["seconds"] / inpaint["seconds"],
            "edit_ms": round(ours["seconds"] * 1000, 2),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, under about two minutes")
    parser.add_argument("--gpu", action="store_true", help="SD1.5-size random weights, 512x512 fp16 on CUDA")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("brush_edit --gpu: no CUDA device")
        run(GPU, threads=4)
    else:
        run(QUICK, threads=1)


if __name__ == "__main__":
    main()
