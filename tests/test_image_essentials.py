"""Image essentials as the image worker runs them, on the tiny demo model: samplers by their A1111
names, batches with one seed each, image-to-image at a strength (exact at 0 and 1), LoRAs with
weights (0 changes nothing), the tiled upscale, and the command line built from the schema."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.brush_fixtures import tiny_pipeline
from workers.context import CancelToken, JobContext
from workers.errors import BadInput
from workers.protocol import IMAGE_SAMPLERS, ImageRequest, Output, Priority, Progress
from workers.runtime import WarmCache

SIZE = 32
STEPS = 4
PROMPT = "a lighthouse at dusk"


class StubRuntime:
    """The parts of ``WorkerRuntime`` a job touches, without an arbiter; the demo pipeline is
    already in the cache under the key the job asks for."""

    def __init__(self, pipe) -> None:
        self.cache = WarmCache()
        self.cache.get_or_load("sd:demo-sd", lambda: pipe)

    def honour_revokes(self, ctx) -> None:
        pass

    def lease_memory(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        return tiers[0]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def run_job(pipe, tmp_path, name="out.png", **fields):
    from workers.jobs.image import run

    fields = {"prompt": PROMPT, "width": SIZE, "height": SIZE, "steps": STEPS, "seed": 3, **fields}
    request = ImageRequest(out_path=str(tmp_path / name), **fields)
    request.validate()
    events = []
    ctx = JobContext(
        job_id="j1", priority=Priority.single_shot, send=events.append, cancel_token=CancelToken(),
        runtime=StubRuntime(pipe),
    )  # fmt: skip
    run(ctx, request)
    return [e.path for e in events if isinstance(e, Output)], [e for e in events if isinstance(e, Progress)]


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def hearth_params(path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.info["hearth"])


def a1111_text(path) -> str:
    with Image.open(path) as image:
        return image.info["parameters"]


def write_picture(path, size=(SIZE, SIZE)) -> str:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    picture = np.clip(ramp + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(path)
    return str(path)


# --------------------------------------------------------------------------- samplers


def test_every_sampler_name_builds_its_scheduler_and_reads_back_by_that_name(pipe):
    from workers.image_samplers import SAMPLER_SCHEDULERS, sampler_name, scheduler_for

    assert set(SAMPLER_SCHEDULERS) == set(IMAGE_SAMPLERS) - {""}
    own = pipe.scheduler
    for name in SAMPLER_SCHEDULERS:
        scheduler = scheduler_for(pipe, name)
        assert sampler_name(scheduler) == name
        assert scheduler is not own
    karras = scheduler_for(pipe, "DPM++ 2M Karras")
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    assert karras.config.algorithm_type == "dpmsolver++" and karras.config.solver_order == 2
    assert not scheduler_for(pipe, "DPM++ 2M").config.use_karras_sigmas
    assert sampler_name(scheduler_for(pipe, "")) == "DDIM"  # the demo model's own
    assert pipe.scheduler is own


def test_a_model_shipped_with_karras_sigmas_still_gets_plain_dpm_2m(pipe):
    """The flags are written out: a config's own use_karras_sigmas must not leak into "DPM++ 2M"."""
    from diffusers import DPMSolverMultistepScheduler

    from workers.image_samplers import sampler_name, scheduler_for

    view = type("View", (), {"scheduler": DPMSolverMultistepScheduler(use_karras_sigmas=True)})()
    assert sampler_name(view.scheduler) == "DPM++ 2M Karras"
    assert not scheduler_for(view, "DPM++ 2M").config.use_karras_sigmas


def test_model_own_sampler_gives_the_image_plain_diffusers_gives(pipe, tmp_path):
    import torch

    (path,), _ = run_job(pipe, tmp_path)
    expected = pipe(
        PROMPT, width=SIZE, height=SIZE, num_inference_steps=STEPS, guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]  # fmt: skip
    assert np.array_equal(pixels(path), np.asarray(expected, dtype=np.int16))


def test_sampler_changes_the_image_is_recorded_and_leaves_the_cached_pipeline_alone(pipe, tmp_path):
    own, config = pipe.scheduler, dict(pipe.scheduler.config)
    (before,), _ = run_job(pipe, tmp_path, "before.png")
    (karras,), _ = run_job(pipe, tmp_path, "karras.png", sampler="DPM++ 2M Karras")
    (euler_a,), _ = run_job(pipe, tmp_path, "euler-a.png", sampler="Euler a")
    (after,), _ = run_job(pipe, tmp_path, "after.png")
    assert not np.array_equal(pixels(karras), pixels(before))
    assert not np.array_equal(pixels(euler_a), pixels(karras))
    assert np.array_equal(pixels(after), pixels(before)), "a sampler job changed later default jobs"
    assert pipe.scheduler is own and dict(pipe.scheduler.config) == config
    assert "Sampler: DPM++ 2M Karras" in a1111_text(karras)
    assert "Sampler: DDIM" in a1111_text(before)
    assert hearth_params(euler_a)["sampler"] == "Euler a"


def test_an_unknown_sampler_is_refused_by_the_schema():
    with pytest.raises(
        BadInput, match=r"sampler must be one of Euler, Euler a, .*, LCM or empty, got 'Heun\+\+ 9M'"
    ):
        ImageRequest(prompt="x", sampler="Heun++ 9M").validate()


# --------------------------------------------------------------------------- batch


def test_batch_gives_one_output_per_seed_each_the_image_of_its_own_seed(pipe, tmp_path):
    paths, progress = run_job(pipe, tmp_path, "batch.png", batch_count=3, seed=5)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["batch.png", "batch-2.png", "batch-3.png"]
    assert [hearth_params(p)["seed"] for p in paths] == [5, 6, 7]
    assert all(hearth_params(p)["batch_count"] == 1 for p in paths)  # each one makes itself again
    assert progress[-1].total == 3 * STEPS and [e.step for e in progress] == list(range(1, 3 * STEPS + 1))
    assert "image 2 of 3" in progress[STEPS].message
    assert all(e.preview_png for e in progress)
    (single,), _ = run_job(pipe, tmp_path, "single.png", seed=6)
    assert np.array_equal(pixels(paths[1]), pixels(single))
    assert not np.array_equal(pixels(paths[0]), pixels(paths[1]))


# --------------------------------------------------------------------------- image to image


def test_strength_0_returns_the_init_image_through_the_vae(pipe, tmp_path):
    from workers.brushes.trajectory import decode, encode_image

    init = write_picture(tmp_path / "init.png")
    (path,), progress = run_job(pipe, tmp_path, init_image=init, strength=0.0)
    with Image.open(init) as image:  # the brushes' own VAE round trip: the posterior mean, decoded
        round_trip = np.asarray(decode(pipe, encode_image(pipe, image)), dtype=np.int16)
    assert np.abs(pixels(path) - round_trip).max() <= 1
    assert len(progress) == 1 and progress[0].total == 1


def test_strength_1_is_text_to_image_with_the_same_seed(pipe, tmp_path):
    init = write_picture(tmp_path / "init.png", size=(40, 32))
    (img2img,), progress = run_job(pipe, tmp_path, "i2i.png", init_image=init, strength=1.0, seed=9)
    (text2img,), _ = run_job(pipe, tmp_path, "t2i.png", width=40, height=32, seed=9)
    assert np.array_equal(pixels(img2img), pixels(text2img))
    assert progress[-1].total == STEPS


def test_a_middle_strength_runs_its_share_of_the_steps_from_the_init_image(pipe, tmp_path):
    init = write_picture(tmp_path / "init.png")
    (half,), progress = run_job(pipe, tmp_path, "half.png", init_image=init, strength=0.5)
    (again,), _ = run_job(pipe, tmp_path, "again.png", init_image=init, strength=0.5)
    (kept,), _ = run_job(pipe, tmp_path, "kept.png", init_image=init, strength=0.0)
    (anew,), _ = run_job(pipe, tmp_path, "anew.png", init_image=init, strength=1.0)
    assert [e.step for e in progress] == [1, 2] and progress[-1].total == 2  # int(4 * 0.5) UNet steps
    assert np.array_equal(pixels(half), pixels(again))
    assert not np.array_equal(pixels(half), pixels(kept)) and not np.array_equal(pixels(half), pixels(anew))
    params = hearth_params(half)
    assert params["init_image"] == init and params["strength"] == 0.5
    assert (params["width"], params["height"]) == (SIZE, SIZE)
    assert "Denoising strength: 0.5" in a1111_text(half)


def test_the_output_takes_the_init_images_size_rounded_to_multiples_of_8(pipe, tmp_path):
    init = write_picture(tmp_path / "odd.png", size=(45, 37))
    (path,), _ = run_job(pipe, tmp_path, init_image=init, strength=0.5, width=64, height=64)
    with Image.open(path) as image:
        assert image.size == (40, 32)


def test_hostile_or_missing_init_images_are_refused_with_their_name(pipe, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    with pytest.raises(BadInput, match="init image notes.png is not a readable image"):
        run_job(pipe, tmp_path, init_image=str(fake))
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # a small file whose header claims 81 megapixels
    with pytest.raises(BadInput, match="bomb.png"):
        run_job(pipe, tmp_path, init_image=str(bomb))
    with pytest.raises(BadInput, match="is not a file"):
        ImageRequest(prompt="x", init_image=str(tmp_path / "gone.png")).validate()
    with pytest.raises(BadInput, match="upscale needs an init image"):
        ImageRequest(prompt="x", upscale=2).validate()
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------- upscale


def test_tiles_cover_the_image_and_blend_back_exactly(tmp_path):
    from workers.img2img import tile_starts, tiled_upscale

    for length, tile in ((128, 64), (96, 64), (64, 64), (200, 64), (520, 512)):
        starts = tile_starts(length, tile, 8)
        assert starts[0] == 0 and starts[-1] == max(0, length - tile) and all(s % 8 == 0 for s in starts)
        assert all(b - a <= tile - 8 for a, b in zip(starts, starts[1:], strict=False)), (length, starts)
    picture = Image.open(write_picture(tmp_path / "p.png", size=(136, 96))).convert("RGB")
    seen = []

    def identity(crop, index):
        seen.append(index)
        return crop

    assert np.array_equal(np.asarray(tiled_upscale(picture, 64, identity)), np.asarray(picture))
    assert seen == list(range(6))  # 3 across x 2 down


def test_upscale_doubles_the_image_tile_by_tile(pipe, tmp_path):
    init = write_picture(tmp_path / "small.png", size=(48, 48))
    (path,), progress = run_job(pipe, tmp_path, "big.png", init_image=init, upscale=2, strength=0.5)
    with Image.open(path) as image:
        assert image.size == (96, 96)
    # the demo model's native side is 64 px: 96 px takes 2 x 2 tiles, each int(4 * 0.5) steps
    assert progress[-1].total == 4 * 2 and "tile 4 of 4" in progress[-1].message
    assert hearth_params(path)["upscale"] == 2


# --------------------------------------------------------------------------- LoRA


def make_lora(folder, seed: int = 1, name: str = "pytorch_lora_weights.safetensors"):
    """A LoRA for the demo UNet, trained by nobody: random A and B so it visibly changes the image."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = tiny_pipeline().unet
    unet.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=get_peft_model_state_dict(unet), weight_name=name, safe_serialization=True
    )
    return str(folder / name)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return make_lora(tmp_path_factory.mktemp("lora"))


def test_a_lora_changes_the_image_and_weight_0_leaves_it_bit_identical(pipe, tmp_path, lora_file):
    (plain,), _ = run_job(pipe, tmp_path, "plain.png")
    (full,), _ = run_job(pipe, tmp_path, "full.png", loras=f"{lora_file}:1")
    (half,), _ = run_job(pipe, tmp_path, "half.png", loras=f"{lora_file}:0.5")
    (zero,), _ = run_job(pipe, tmp_path, "zero.png", loras=f"{lora_file}:0")
    (after,), _ = run_job(pipe, tmp_path, "after.png")
    assert not np.array_equal(pixels(full), pixels(plain))
    assert not np.array_equal(pixels(half), pixels(full))
    assert np.array_equal(pixels(zero), pixels(plain))
    assert np.array_equal(pixels(after), pixels(plain)), "the LoRA stayed on the cached pipeline"
    assert not getattr(pipe.unet, "peft_config", None)
    assert hearth_params(full)["loras"] == f"{lora_file}:1"


def test_two_loras_at_once_each_weighted(pipe, tmp_path, lora_file):
    other = make_lora(tmp_path, seed=2, name="other.safetensors")
    (one,), _ = run_job(pipe, tmp_path, "one.png", loras=f"{lora_file}:0.8")
    (both,), _ = run_job(pipe, tmp_path, "both.png", loras=f"{lora_file}:0.8, {other}:0.6")
    (muted,), _ = run_job(pipe, tmp_path, "muted.png", loras=f"{lora_file}:0.8, {other}:0")
    assert not np.array_equal(pixels(both), pixels(one))
    assert np.array_equal(pixels(muted), pixels(one))


def test_a_lora_named_by_its_registry_id(pipe, tmp_path, lora_file):
    from models.registry import ModelRegistry

    with ModelRegistry() as registry:
        model = registry.add(lora_file)
    (by_id,), _ = run_job(pipe, tmp_path, "by-id.png", loras=f"{model.id}:1")
    (by_path,), _ = run_job(pipe, tmp_path, "by-path.png", loras=f"{lora_file}:1")
    assert np.array_equal(pixels(by_id), pixels(by_path))


def test_files_that_are_not_loras_are_refused_by_name(pipe, tmp_path):
    from safetensors.torch import save_file

    from models.image import ensure_demo_sd

    vae = ensure_demo_sd() / "vae" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(BadInput, match="diffusion_pytorch_model.safetensors is not a LoRA"):
        run_job(pipe, tmp_path, loras=str(vae))
    text = tmp_path / "readme.safetensors"
    text.write_text("hello")
    with pytest.raises(BadInput, match="readme.safetensors"):
        run_job(pipe, tmp_path, loras=str(text))
    with pytest.raises(BadInput, match="no such file, and no registered model"):
        run_job(pipe, tmp_path, loras="nowhere-lora:0.5")
    import torch

    wrong = tmp_path / "sdxl_lora.safetensors"  # LoRA names, layers this UNet does not have
    save_file({"unet.mid_block.nothing.lora_A.weight": torch.zeros(4, 7)}, str(wrong))
    with pytest.raises(BadInput, match="sdxl_lora.safetensors"):
        run_job(pipe, tmp_path, loras=str(wrong))
    assert not getattr(pipe.unet, "peft_config", None)
    assert not (tmp_path / "out.png").exists()


def test_lora_list_text_parses_weights_and_refuses_nonsense():
    from workers.lora_list import LoraChoice, format_loras, parse_loras

    assert parse_loras("a.safetensors:0.8, style ,C:\\loras\\ink.safetensors, D:\\x.safetensors:-0.5") == (
        LoraChoice("a.safetensors", 0.8),
        LoraChoice("style", 1.0),
        LoraChoice("C:\\loras\\ink.safetensors", 1.0),
        LoraChoice("D:\\x.safetensors", -0.5),
    )
    assert parse_loras(format_loras(parse_loras("a:0.8, b"))) == parse_loras("a:0.8, b")
    for bad, problem in ((":0.5", "no file"), ("a:9", "between -4 and 4"), ("a:nan", "between")):
        with pytest.raises(BadInput, match=problem):
            ImageRequest(prompt="x", loras=bad).validate()


# --------------------------------------------------------------------------- command line


def test_cli_help_lists_the_new_options_from_the_schema(capsys):
    from app.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "image", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--sampler", "--batch-count", "--init-image", "--strength", "--upscale", "--loras"):
        assert option in text
    assert "DPM++ 2M Karras" in text and "0 to 1" in text


def test_cli_builds_the_request_with_sampler_and_loras(tmp_path):
    from app.cli import build_parser, request_from_args

    args = build_parser().parse_args(
        ["run", "image", "--prompt", "x", "--sampler", "Euler a", "--batch-count", "2", "--loras", "a:0.5"]
    )
    request = request_from_args(args)
    assert (request.sampler, request.batch_count, request.loras) == ("Euler a", 2, "a:0.5")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "image", "--prompt", "x", "--sampler", "Heun"])


# --------------------------------------------------------------------------- TAESD previews


def test_taesd_in_the_hub_cache_decodes_the_previews_and_changes_nothing_else(pipe, tmp_path, monkeypatch):
    import io

    import torch
    from diffusers import AutoencoderTiny
    from huggingface_hub import constants

    from tests.model_fixtures import hub_repo
    from workers.taesd_preview import taesd_folder

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert taesd_folder(pipe) is None  # not cached: nothing is downloaded, the projection stays
    (plain,), plain_steps = run_job(pipe, tmp_path, "plain.png")
    torch.manual_seed(0)
    tiny = AutoencoderTiny(  # the demo VAE's latent space: 4 channels, one 2x upsampling
        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1),
    )  # fmt: skip
    tiny.save_pretrained(tmp_path / "taesd")
    files = {p.name: p.read_bytes() for p in (tmp_path / "taesd").iterdir()}
    hub_repo(tmp_path / "hub", "madebyollin/taesd", files)
    assert taesd_folder(pipe) is not None
    (decoded,), taesd_steps = run_job(pipe, tmp_path, "taesd.png")
    assert np.array_equal(pixels(decoded), pixels(plain))  # previews never touch the image
    for with_taesd, projected in zip(taesd_steps, plain_steps, strict=True):
        assert with_taesd.preview_png != projected.preview_png
        assert Image.open(io.BytesIO(with_taesd.preview_png)).size == (SIZE, SIZE)
