"""Every image family loads through Hearth's real loader and runs, from a folder, a single file or
the command line; what cannot run is refused naming what was found and what Hearth runs.

Tiny random-weight pipelines of each family (``models.tiny_image_families``) are saved with
``save_pretrained``; single files are written from them in the layouts people download
(``tests.single_file_fixtures``), and find their configs in a huggingface_hub cache laid out as
an earlier download leaves it (offline: ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.cli_inprocess import hearth_in_process
from tests.single_file_fixtures import (
    fake_hub_cache,
    write_denoiser_file,
    write_ldm_checkpoint,
    write_sd3_transformer_file,
)

PROMPT = "a red apple"


BASE_REPOS = {
    "SDXL": "stabilityai/stable-diffusion-xl-base-1.0",
    "Flux schnell": "black-forest-labs/FLUX.1-schnell",
    "SD3.5": "stabilityai/stable-diffusion-3.5-medium",
    "SD1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, hub_cache):
    """Each tiny family saved once: {profile name: folder}, and their base repos laid out in the
    session's hub cache (the one the workers read) for this module's tests only."""
    from models.tiny_image_families import TINY_BUILDERS

    root = tmp_path_factory.mktemp("families")
    folders = {}
    for name in ("SD2", "SDXL", "SD3.5", "Flux schnell", "Flux", "SD1.5"):
        folder = root / ("sd15" if name == "SD1.5" else name.replace(" ", "-").lower())
        TINY_BUILDERS[name](seed=0).save_pretrained(folder)
        folders[name] = folder
    laid_out = [fake_hub_cache(hub_cache, repo, folders[name]) for name, repo in BASE_REPOS.items()]
    yield folders, hub_cache
    for folder in laid_out:
        shutil.rmtree(folder)


@pytest.fixture
def offline_cache(saved, monkeypatch):
    import huggingface_hub.constants as hub

    _, cache = saved
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _run(pipe, steps: int = 2):
    from models.image import image_family

    guidance = 4.0 if image_family(pipe).negative_prompt else 0.0
    generator = torch.Generator().manual_seed(0)
    return pipe(
        PROMPT, num_inference_steps=steps, height=32, width=32, guidance_scale=guidance, generator=generator
    )


@pytest.mark.parametrize(
    ("family", "pipeline"),
    [
        ("SD2", "StableDiffusionPipeline"),
        ("SDXL", "StableDiffusionXLPipeline"),
        ("SD3.5", "StableDiffusion3Pipeline"),
        ("Flux schnell", "FluxPipeline"),
        ("Flux", "FluxPipeline"),
    ],
)
def test_a_saved_folder_of_each_family_loads_as_that_family_and_makes_an_image(saved, family, pipeline):
    from models.image import image_family, load_image_pipeline

    pipe = load_image_pipeline(str(saved[0][family]))
    assert type(pipe).__name__ == pipeline
    assert image_family(pipe).name == family
    image = _run(pipe).images[0]
    assert image.size == (32, 32) and np.asarray(image).std() > 0


def test_an_sdxl_single_file_in_the_original_layout_loads_the_same_weights(saved, offline_cache, tmp_path):
    """A fine-tune as people download it: one LDM-layout file, configs from the base repo's cache."""
    from models.image import image_family, load_image_pipeline

    folder = load_image_pipeline(str(saved[0]["SDXL"]))
    path = write_ldm_checkpoint(folder, tmp_path / "my_pony_finetune.safetensors")
    single = load_image_pipeline(str(path))
    assert image_family(single).name == "SDXL"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(folder, part).state_dict(), getattr(single, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part
    assert np.array_equal(np.asarray(_run(single).images[0]), np.asarray(_run(folder).images[0]))


def test_a_hub_id_in_the_cache_loads_offline_as_its_family(saved, offline_cache):
    from models.image import image_family, load_image_pipeline

    pipe = load_image_pipeline("black-forest-labs/FLUX.1-schnell")
    assert type(pipe).__name__ == "FluxPipeline" and image_family(pipe).name == "Flux schnell"


def test_an_sd15_single_file_in_the_original_layout_loads_the_same_weights(saved, offline_cache, tmp_path):
    from models.image import image_family, load_image_pipeline

    folder = load_image_pipeline(str(saved[0]["SD1.5"]))
    path = write_ldm_checkpoint(folder, tmp_path / "v1-5-finetune.safetensors")
    single = load_image_pipeline(str(path))
    assert image_family(single).name == "SD1.5"
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(folder, part).state_dict(), getattr(single, part).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_a_few_step_sdxl_file_is_run_as_one_by_its_name(saved, offline_cache, tmp_path):
    from models.image import image_family, load_image_pipeline

    folder = load_image_pipeline(str(saved[0]["SDXL"]))
    path = write_ldm_checkpoint(folder, tmp_path / "sdxl_lightning_4step.safetensors")
    pipe = load_image_pipeline(str(path))
    family = image_family(pipe)
    assert (family.name, family.steps, family.guidance) == ("SDXL Lightning", 4, 0.0)
    assert pipe.scheduler.config.timestep_spacing == "trailing"


def test_a_flux_transformer_alone_takes_its_encoders_and_vae_from_its_base_repo(
    saved, offline_cache, tmp_path
):
    from models.image import image_family, load_image_pipeline

    base = load_image_pipeline(str(saved[0]["Flux schnell"]))
    tuned = base.transformer.state_dict()
    path = write_denoiser_file(base, tmp_path / "flux1-schnell-finetune.safetensors")
    pipe = load_image_pipeline(str(path))
    assert image_family(pipe).name == "Flux schnell"
    assert all(torch.equal(tensor, pipe.transformer.state_dict()[k]) for k, tensor in tuned.items())
    assert _run(pipe).images[0].size == (32, 32)


def test_an_sd35_transformer_file_in_the_original_layout_loads_with_its_base_repos_parts(
    saved, offline_cache, tmp_path
):
    """Stability's single-file layout (``joint_blocks``, fused qkv), the encoders and VAE from the repo."""
    from models.image import image_family, load_image_pipeline

    base = load_image_pipeline(str(saved[0]["SD3.5"]))
    path = write_sd3_transformer_file(base, tmp_path / "sd3.5_medium_tuned.safetensors")
    pipe = load_image_pipeline(str(path))
    assert image_family(pipe).name == "SD3.5"
    ours, theirs = base.transformer.state_dict(), pipe.transformer.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert np.array_equal(np.asarray(_run(pipe).images[0]), np.asarray(_run(base).images[0]))


def test_a_single_file_without_its_configs_names_the_repo_they_come_from(saved, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    from models.image import load_image_pipeline
    from workers.errors import MissingModel

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    folder = load_image_pipeline(str(saved[0]["SDXL"]))
    path = write_ldm_checkpoint(folder, tmp_path / "xl.safetensors")
    with pytest.raises(MissingModel, match="stabilityai/stable-diffusion-xl-base-1.0") as caught:
        load_image_pipeline(str(path))
    assert "SDXL checkpoint" in str(caught.value)


@pytest.mark.parametrize(
    ("names", "found"),
    [
        ({"layer.weird.thing.weight": (4, 4)}, "not a model Hearth recognises"),
        ({"blocks.0.self_attn.q.weight": (4, 4), "patch_embedding.weight": (4, 16, 1, 2, 2)}, "Wan 2.1"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "a LoRA"),
    ],
)
def test_a_single_file_hearth_cannot_run_is_refused_naming_what_it_is_and_what_runs(tmp_path, names, found):
    from safetensors.numpy import save_file

    from models.image import load_image_pipeline
    from workers.errors import MissingModel

    path = tmp_path / "mystery.safetensors"
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in names.items()}, str(path))
    with pytest.raises(MissingModel) as caught:
        load_image_pipeline(str(path))
    message = str(caught.value)
    assert found in message and "mystery.safetensors" in message
    assert "SDXL" in message and "SD3.5" in message and "Flux" in message  # what Hearth runs


def test_step_previews_use_each_familys_latent_space():
    from models.image_families import FLUX_SCHNELL, SDXL
    from workers.jobs.image import latent_preview

    packed = torch.zeros((1, 8 * 8, 64))  # Flux hands its callback 2x2 patches packed as tokens
    assert latent_preview(packed, FLUX_SCHNELL, 32, 32, vae_scale_factor=2).size == (32, 32)
    grey = np.asarray(latent_preview(torch.zeros((1, 4, 16, 16)), SDXL, 32, 32, 2))
    assert grey.shape == (32, 32, 3)
    assert tuple(grey[0, 0]) == tuple(
        round((b + 1) * 127.5 - 0.5) for b in SDXL.rgb_bias
    )  # zero latents: the bias


def test_the_tiers_offered_go_from_resident_to_group_offload(saved):
    from models.image import load_image_pipeline
    from workers.image_tiers import image_tiers

    pipe = load_image_pipeline(str(saved[0]["SD3.5"]))
    tiers = image_tiers(pipe, 1024, 1024, "cpu")
    assert [t.name for t in tiers] == ["resident", "vae_tiled", "model_offload", "group_offload"]
    assert [t.bytes for t in tiers] == sorted((t.bytes for t in tiers), reverse=True)
    brush = image_tiers(pipe, 1024, 1024, "cpu", interactive=True)
    assert "group_offload" not in [t.name for t in brush]  # a brush stroke waits on every step


@pytest.mark.parametrize("which", ["SDXL file", "SD3.5 folder", "Flux schnell file"])
def test_hearth_run_image_writes_a_png_with_its_parameters_for_each_family(saved, tmp_path, which):
    folders, _ = saved
    if which == "SDXL file":
        from models.image import load_image_pipeline

        model = write_ldm_checkpoint(load_image_pipeline(str(folders["SDXL"])), tmp_path / "xl.safetensors")
    elif which == "Flux schnell file":
        from models.image import load_image_pipeline

        base = load_image_pipeline(str(folders["Flux schnell"]))
        model = write_denoiser_file(base, tmp_path / "flux1-schnell-tuned.safetensors")
    else:
        model = folders["SD3.5"]
    out = tmp_path / "out.png"
    args = ["run", "image", "--prompt", PROMPT, "--model", str(model), "--steps", "2"]
    args += [
        "--width",
        "32",
        "--height",
        "32",
        "--guidance",
        "0" if "Flux" in which else "4",
        "--out",
        str(out),
    ]
    proc = hearth_in_process(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (32, 32)
        parameters = image.text["parameters"]
    assert PROMPT in parameters and str(model.name) in parameters


def test_a_model_brings_the_size_steps_and_guidance_its_family_is_made_for(saved, offline_cache, capsys):
    """``hearth run image --model <SDXL>`` draws at 1024², Flux schnell in 4 steps without guidance;
    what the user types wins, and the demo model keeps the schema's defaults."""
    from app.cli import build_parser, request_from_args
    from models.image_families import FLUX_SCHNELL, SDXL

    folders, _ = saved

    def request(*extra):
        return request_from_args(build_parser().parse_args(["run", "image", "--prompt", PROMPT, *extra]))

    xl = request("--model", str(folders["SDXL"]))
    assert (xl.width, xl.height, xl.steps, xl.guidance) == (1024, 1024, SDXL.steps, SDXL.guidance)
    assert "SDXL: made for 1024×1024" in capsys.readouterr().err
    schnell = request("--model", str(folders["Flux schnell"]))
    assert (schnell.steps, schnell.guidance) == (FLUX_SCHNELL.steps, FLUX_SCHNELL.guidance)
    mine = request("--model", str(folders["SDXL"]), "--width", "640", "--steps", "12")
    assert (mine.width, mine.height, mine.steps) == (640, 1024, 12)
    hub = request("--model", "stabilityai/stable-diffusion-xl-base-1.0")  # from the hub cache, offline
    assert (hub.width, hub.steps) == (1024, SDXL.steps)
    from workers.protocol import ImageRequest
    from workers.schema import default_of

    demo = request()
    assert (demo.width, demo.steps) == (default_of(ImageRequest, "width"), default_of(ImageRequest, "steps"))


def test_picking_a_model_in_the_image_tab_fills_the_form_with_its_settings(saved, qtbot):
    from app.fake_bridge import FakeBridge
    from app.image_tab import ImageTab
    from models.image_families import SDXL

    folders, _ = saved
    tab = ImageTab(FakeBridge())
    qtbot.addWidget(tab)
    tab.width_box.setValue(96)
    tab.model_box.set_model(str(folders["SDXL"]))  # as a restored setting does: the form stays
    assert tab.width_box.value() == 96
    tab.model_box.lineEdit().editingFinished.emit()  # the user typed it
    assert (tab.width_box.value(), tab.height_box.value(), tab.steps.value()) == (1024, 1024, SDXL.steps)
    assert "SDXL: made for 1024×1024" in tab.model_note.text()
    tab.width_box.setValue(768)  # a later change of the user's own stays
    tab.model_box.lineEdit().editingFinished.emit()
    assert tab.width_box.value() == 768
