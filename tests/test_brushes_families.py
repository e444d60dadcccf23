"""The four brush guarantees on every image family, each on a tiny random-weight model of it.

SD 1.5 is proven in ``test_brushes_render.py``; here the same properties on SD2 (v-prediction),
SDXL (a UNet with pooled text and size conditioning) and its few-step variant (trailing
timesteps), SD3.5 (an MMDiT, flow matching) and Flux schnell and dev (a transformer on packed
latents, flow matching, dev with its guidance embedding):
1. latents and pixels outside the visible masks are bit-identical to the base image's;
2. layers with disjoint masks commute bit-exactly;
3. hiding a layer gives exactly the composite without it;
4. an edit of one layer calls the denoiser at most (N - n) + 2 times.
Plus the flow-matching re-noise against diffusers' own ``FlowMatchEulerDiscreteScheduler``, photo
inversion on a UNet and a flow family, and a project round trip keeping SDXL's pooled embeddings.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch

SIZE = 32
STEPS = 6
PROMPT = "a red apple on a wooden table"
FAMILIES = ("SD2", "SDXL", "SDXL Lightning", "SD3.5", "Flux schnell", "Flux")


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


def _layer(layer_id: str, mask, **changes):
    from workers.brushes.layers import Layer

    fields = {"prompt": "a cat", "strength": 0.9, "regen_step": 2, "seed": 7, "feather": 1.0}
    fields.update(changes)
    return Layer(id=layer_id, mask=mask, **fields)


def _fresh(base):
    """The base session's trajectory and image with nothing rendered yet."""
    return dataclasses.replace(
        base,
        branches=OrderedDict(),
        composites=OrderedDict(),
        _embeds={},
        _scheduler=None,
        latest_revision=-1,
    )


class _Calls:
    def __init__(self, network) -> None:
        self.count = 0
        self._handle = network.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


@pytest.fixture(scope="module", params=FAMILIES)
def base(request):
    """One tiny pipeline and base run per family, made once; tests render on ``_fresh`` copies."""
    from models.tiny_image_families import TINY_BUILDERS
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import decode, generate

    torch.set_num_threads(1)
    pipe = TINY_BUILDERS[request.param](seed=0)
    pipe.set_progress_bar_config(disable=True)
    guidance = 4.0 if request.param != "Flux schnell" else 0.0
    trajectory = generate(pipe, PROMPT, "", SIZE, SIZE, STEPS, guidance, seed=3)
    session = BrushSession(
        session_id=f"s-{request.param}",
        pipe=pipe,
        trajectory=trajectory,
        base_image=decode(pipe, trajectory.latents[-1:]),
        prompt=PROMPT,
        model=request.param,
    )
    latents = trajectory.latents.clone()
    yield session
    assert torch.equal(session.trajectory.latents, latents), "a test changed the shared base latents"


def _outside(session, layers):
    union = torch.zeros((1, 1, *session.trajectory.latents.shape[-2:]), dtype=torch.bool)
    for item in layers:
        union |= session.latent_mask(item) > 0
    return ~union.expand(1, session.trajectory.latents.shape[1], -1, -1)


def test_the_family_runs_its_own_sampler_and_latent_space(base):
    from models.image import image_family

    family = image_family(base.pipe)
    assert family.name == base.model
    assert base.trajectory.latents.shape[1] == family.latent_channels
    assert (base.trajectory.pooled_embeds is not None) is (family.pipeline != "StableDiffusionPipeline")
    assert base.scheduler.__class__.__name__ == ("FlowSchedule" if family.flow_matching else "DdimSchedule")


def test_outside_the_masks_latents_and_pixels_are_bit_identical(base):
    session = _fresh(base)
    layers = [_layer("a", _box(0, 0, 10, 12)), _layer("b", _box(20, 18, 32, 32), prompt="a dog", seed=9)]
    result = session.render(layers)
    outside = _outside(session, layers)
    original = session.trajectory.latents[-1:]
    assert outside.any() and (~outside).any()
    assert torch.equal(result.latents[outside], original[outside])
    assert not torch.equal(result.latents[~outside], original[~outside])  # the edit did something
    untouched = np.ones((SIZE, SIZE), bool)
    untouched[:14, :16] = untouched[16:, 14:] = False  # the boxes and their feather
    assert np.array_equal(np.asarray(session.base_image)[untouched], np.asarray(result.image)[untouched])


def test_disjoint_layers_commute(base):
    first = _layer("a", _box(0, 0, 12, 12))
    second = _layer("b", _box(20, 20, 32, 32), prompt="a dog", seed=11, opacity=0.7, regen_step=1)
    forward, backward = _fresh(base).render([first, second]), _fresh(base).render([second, first])
    assert torch.equal(forward.latents, backward.latents)
    assert np.array_equal(np.asarray(forward.image), np.asarray(backward.image))


def test_hiding_a_layer_gives_exactly_the_composite_without_it(base):
    first = _layer("a", _box(0, 0, 12, 12))
    second = _layer("b", _box(20, 20, 32, 32), prompt="a dog", seed=5)
    session = _fresh(base)
    hidden = session.render([first, second.with_changes(visible=False)])
    alone = _fresh(base).render([first])
    assert torch.equal(hidden.latents, alone.latents)
    assert np.array_equal(np.asarray(hidden.image), np.asarray(alone.image))
    nothing = session.render([first.with_changes(visible=False)])
    assert np.array_equal(np.asarray(nothing.image), np.asarray(session.base_image))


def test_an_edit_calls_the_denoiser_at_most_n_minus_regen_step_plus_two_times(base):
    from workers.brushes.denoisers import denoiser

    session = _fresh(base)
    kept = _layer("a", _box(0, 0, 12, 12), regen_step=1)
    edited = _layer("b", _box(20, 20, 32, 32), regen_step=2)
    session.render([kept, edited])
    calls = _Calls(denoiser(session.pipe))
    try:
        result = session.render([kept, edited.with_changes(prompt="a blue vase")])
        assert calls.count == result.unet_calls <= (STEPS - edited.regen_step) + 2
        calls.count = 0
        session.render([kept, edited.with_changes(prompt="a blue vase", opacity=0.5)])
        assert calls.count <= 2  # opacity reruns only the merge, not the branch
    finally:
        calls.close()


def test_flow_matching_renoise_is_the_schedulers_interpolation():
    """z' = z[n] + sigma_n (noise' - z[0]) equals ``scale_noise(x0, t_n, noise')`` on the flow's
    straight path, and leaves z[n] exactly at strength 0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from workers.brushes.schedule import FlowSchedule

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(8)
    schedule = FlowSchedule(scheduler)
    generator = torch.Generator().manual_seed(0)
    x0, first, fresh = (torch.randn((1, 16, 4, 4), generator=generator) for _ in range(3))
    for n in (0, 3, 7):
        t = scheduler.timesteps[n : n + 1]
        z_n = scheduler.scale_noise(x0, t, first)  # (1 - sigma_n) x0 + sigma_n first
        assert torch.equal(schedule.renoise(n, z_n, first, fresh, 0.0), z_n)
        replaced = schedule.renoise(n, z_n, first, fresh, 1.0)
        assert torch.allclose(replaced, scheduler.scale_noise(x0, t, fresh), atol=1e-6)
        half = schedule.renoise(n, z_n, first, fresh, 0.6)
        mixed = 0.8 * first + 0.6 * fresh  # sqrt(1 - 0.36) = 0.8: unit variance kept
        assert torch.allclose(half, scheduler.scale_noise(x0, t, mixed), atol=1e-6)


def test_the_brush_sampler_is_the_familys_diffusers_scheduler_step(base):
    """The stateless update the brushes use equals ``FlowMatchEulerDiscreteScheduler.step`` (SD3,
    Flux) or ``DDIMScheduler.step`` with eta 0 (SDXL), step by step along the session's schedule."""
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from models.image import image_family

    schedule, family = base.scheduler, image_family(base.pipe)
    flow = family.flow_matching
    reference = (FlowMatchEulerDiscreteScheduler if flow else DDIMScheduler).from_config(
        base.pipe.scheduler.config
    )
    config, args = reference.config, {}
    if family.packed:  # what FluxPipeline passes: sigmas 1 .. 1/N, and mu for its resolution
        args["sigmas"] = np.linspace(1.0, 1 / STEPS, STEPS)
    if config.get("use_dynamic_shifting"):
        tokens = (SIZE // base.pipe.vae_scale_factor // 2) ** 2
        shift = (config.base_image_seq_len, config.max_image_seq_len, config.base_shift, config.max_shift)
        args["mu"] = calculate_shift(tokens, *shift)
    reference.set_timesteps(STEPS, **args)
    assert torch.allclose(reference.timesteps.float(), schedule.timesteps.float())
    z, v = base.trajectory.latents[:1], torch.randn_like(base.trajectory.latents[:1])
    for k in range(STEPS):
        extra = {} if flow else {"eta": 0.0}
        expected = reference.step(v, reference.timesteps[k], z, return_dict=False, **extra)[0]
        assert torch.allclose(schedule.step(k, v, z), expected, atol=1e-6)
        z = expected


@pytest.mark.parametrize("family", ["SDXL", "Flux schnell"])
def test_a_photo_enters_by_inversion_and_edits_keep_the_rest_of_it(family):
    from models.tiny_image_families import TINY_BUILDERS
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import encode_image, invert

    pipe = TINY_BUILDERS[family](seed=1)
    rng = np.random.default_rng(0)
    from PIL import Image

    photo = Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    trajectory = invert(pipe, photo, PROMPT, "", STEPS, 0.0 if family == "Flux schnell" else 4.0)
    assert torch.equal(trajectory.latents[-1:], encode_image(pipe, photo))  # z_0 is the photo
    assert trajectory.latents.shape[0] == STEPS + 1 and torch.isfinite(trajectory.latents).all()
    session = BrushSession(session_id="p", pipe=pipe, trajectory=trajectory, base_image=photo, prompt=PROMPT)
    item = _layer("a", _box(4, 4, 14, 14))
    result = session.render([item])
    untouched = np.ones((SIZE, SIZE), bool)
    untouched[:18, :18] = False
    assert np.array_equal(np.asarray(photo)[untouched], np.asarray(result.image)[untouched])


def test_an_sdxl_project_reopens_with_its_pooled_embeddings_and_renders_the_same(tmp_path):
    from models.tiny_image_families import build_tiny_sdxl
    from workers.brushes.project import open_session, save_session
    from workers.brushes.render import BrushSession
    from workers.brushes.trajectory import decode, generate

    pipe = build_tiny_sdxl(seed=2)
    trajectory = generate(pipe, PROMPT, "", SIZE, SIZE, STEPS, 4.0, seed=3)
    session = BrushSession("xl", pipe, trajectory, decode(pipe, trajectory.latents[-1:]), PROMPT)
    params = {"session_id": "xl", "model": "tiny-sdxl", "prompt": PROMPT, "negative_prompt": ""}
    params.update(
        {"width": SIZE, "height": SIZE, "steps": STEPS, "guidance": 4.0, "seed": 3, "source": "generated"}
    )
    path = save_session(tmp_path / "xl.hearth", session, params)
    reopened = open_session(pipe, path)
    assert torch.equal(reopened.trajectory.pooled_embeds, trajectory.pooled_embeds)
    item = _layer("a", _box(0, 0, 12, 12))
    assert torch.equal(reopened.render([item]).latents, _fresh(session).render([item]).latents)


@pytest.mark.parametrize("family", ["SDXL", "Flux schnell"])
def test_brush_jobs_on_a_saved_model_of_the_family_reopen_the_project_and_keep_the_rest(family, tmp_path):
    """Through the image worker's brush jobs: a base from a saved folder, then a render by a
    worker that no longer holds the session (it reopens the ``.hearth`` file)."""
    from PIL import Image

    from models.tiny_image_families import TINY_BUILDERS
    from tests.test_brushes_job import StubRuntime, _context
    from workers.brushes.job import run
    from workers.brushes.layers import mask_to_png
    from workers.protocol import BrushBaseRequest, BrushLayer, BrushRenderRequest, Output

    folder = tmp_path / "model"
    TINY_BUILDERS[family](seed=0).save_pretrained(folder)
    project, out = tmp_path / "p.hearth", tmp_path / "render.png"
    guidance = 0.0 if family == "Flux schnell" else 4.0
    sizes = {"width": SIZE, "height": SIZE, "steps": STEPS}
    base = BrushBaseRequest(
        session_id="f1",
        prompt=PROMPT,
        guidance=guidance,
        model=str(folder),
        project_path=str(project),
        **sizes,
    )
    base.validate()
    ctx, _ = _context()
    run(ctx, base)
    layer = BrushLayer(id="a", mask_png=mask_to_png(_box(0, 0, 12, 12)), prompt="a cat", regen_step=2, seed=5)
    render = BrushRenderRequest(
        session_id="f1", project_path=str(project), layers=(layer,), out_path=str(out), **sizes
    )
    render.validate()
    ctx, events = _context(StubRuntime())  # a fresh worker: the session comes back from the file
    run(ctx, render)
    assert [e.path for e in events if isinstance(e, Output)] == [str(out)]
    from workers.brushes.project_io import read_project

    base_png = read_project(project).base_png
    import io

    with Image.open(io.BytesIO(base_png)) as original, Image.open(out) as edited:
        assert json.loads(edited.text["hearth"])["family"] == family
        untouched = np.ones((SIZE, SIZE), bool)
        untouched[:20, :20] = False  # the box and its feather (2 px, reaching 3 sigma)
        assert np.array_equal(
            np.asarray(original.convert("RGB"))[untouched], np.asarray(edited.convert("RGB"))[untouched]
        )
