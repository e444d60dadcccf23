"""Every video family Hearth runs, on tiny random-weight models saved with ``save_pretrained`` and
loaded back through the real loader: the Feature Slicer + Operator Grouping leaves each family's
denoised latents unchanged (1e-4), and a video worker writes an MP4 of the asked length for
AnimateDiff-SDXL, Wan 2.2 (text- and image-to-video, the latter through ``hearth run video``)
and LTX-Video."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from tests.cli_inprocess import hearth_in_process

torch = pytest.importorskip("torch")

from models import tiny_video  # noqa: E402
from models.video import denoisers, family_label, load_video_pipeline, video_family  # noqa: E402
from workers.video.dit_slicer import TransformerSlicer  # noqa: E402
from workers.video.slicer import VideoSlicer  # noqa: E402

pytestmark = pytest.mark.timeout(600)

# (builder, keyword arguments, frames, side, family, label)
FAMILIES = {
    "animatediff-sdxl": (
        tiny_video.build_tiny_animatediff_sdxl,
        {},
        3,
        16,
        "AnimateDiff (SDXL) text-to-video",
    ),
    "wan2.1": (tiny_video.build_tiny_wan, {"version": "2.1"}, 5, 16, "Wan 2.1 text-to-video"),
    "wan2.2": (tiny_video.build_tiny_wan, {"version": "2.2"}, 5, 16, "Wan 2.2 text-to-video"),
    "wan2.1-i2v": (tiny_video.build_tiny_wan_i2v, {"version": "2.1"}, 5, 16, "Wan 2.1 image-to-video"),
    "wan2.2-i2v": (tiny_video.build_tiny_wan_i2v, {"version": "2.2"}, 5, 16, "Wan 2.2 image-to-video"),
    "ltx": (tiny_video.build_tiny_ltx, {}, 5, 32, "LTX-Video text-to-video"),
    "ltx-i2v": (tiny_video.build_tiny_ltx, {"image_to_video": True}, 5, 32, "LTX-Video image-to-video"),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each family built once, saved, and loaded back through Hearth's loader (module-wide)."""
    root = tmp_path_factory.mktemp("video-families")
    folders = {}

    def folder(name: str):
        if name not in folders:
            build, kwargs, *_ = FAMILIES[name]
            folders[name] = root / name
            build(**kwargs).save_pretrained(folders[name])
        return folders[name]

    return folder


def _image(side: int):
    from PIL import Image

    return Image.linear_gradient("L").convert("RGB").resize((side, side))


def _latents(pipe, frames: int, side: int, slicers=()):
    kwargs = {"image": _image(side)} if "ImageToVideo" in type(pipe).__name__ else {}
    with contextlib.ExitStack() as stack, torch.no_grad():
        for slicer in slicers:
            stack.enter_context(slicer)
        return pipe(
            prompt="a cat playing piano",
            negative_prompt="blurry",
            num_frames=frames,
            height=side,
            width=side,
            num_inference_steps=2,
            guidance_scale=4.0,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        ).frames


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sliced_grouped_denoising_equals_unsliced(saved, name):
    _, _, frames, side, label = FAMILIES[name]
    pipe = load_video_pipeline(str(saved(name)))
    assert family_label(pipe) == label
    reference = _latents(pipe, frames, side)
    if video_family(pipe).startswith("animatediff"):
        slicers = [VideoSlicer(pipe.unet, frame_slices=3, spatial_slices=3)]
    else:
        slicers = [TransformerSlicer(model, token_slices=3) for model in denoisers(pipe)]
    calls = []
    for slicer in slicers:  # count that the sliced forwards really ran
        for method in ("_down_forward", "_wan_block", "_ltx_block"):
            if hasattr(slicer, method):
                real = getattr(slicer, method)
                setattr(slicer, method, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    sliced = _latents(pipe, frames, side, slicers)
    assert calls, "the slicer's forwards never ran"
    assert sliced.shape == reference.shape
    assert (sliced - reference).abs().max() < 1e-4
    after = _latents(pipe, frames, side)
    assert torch.equal(after, reference), "removing the slicer restores the stock forwards exactly"


def test_wan22_runs_both_transformers_on_their_side_of_the_boundary(saved):
    pipe = load_video_pipeline(str(saved("wan2.2")))
    ran = []
    hooks = [
        model.register_forward_pre_hook(lambda module, args, name=name: ran.append(name))
        for name, model in (("high-noise", pipe.transformer), ("low-noise", pipe.transformer_2))
    ]
    try:
        with TransformerSlicer(pipe.transformer, 2), TransformerSlicer(pipe.transformer_2, 2):
            _latents(pipe, 5, 16)
    finally:
        for hook in hooks:
            hook.remove()
    assert "high-noise" in ran and "low-noise" in ran


def _hearth(*args: str) -> subprocess.CompletedProcess:
    return hearth_in_process("run", "video", *args, env={"HEARTH_ARBITER_DEVICE": "sim:8GiB"})


@pytest.fixture(scope="module")
def video_worker(isolated_hearth_env):
    """One video worker for the module: each family's render is a job, not a process start."""
    from tests.supervisor_helpers import running_supervisor
    from workers.protocol import WorkerKind

    with running_supervisor(WorkerKind.video) as running:
        yield running


def _render(video_worker, **fields):
    from workers.protocol import VideoRequest

    supervisor, recorder = video_worker
    return recorder.job(supervisor.submit(VideoRequest(prompt="a cat", steps=2, **fields)), timeout=300)


@pytest.mark.parametrize(
    "name, options",
    [
        ("animatediff-sdxl", {"memory_mode": "slices:2", "step_rehash": True}),
        ("wan2.2", {"memory_mode": "slices:3"}),
        ("ltx", {"memory_mode": "slices:2", "step_rehash": True}),
    ],
)
def test_each_family_renders_an_mp4_of_the_asked_length_with_its_parameters(
    saved, video_worker, tmp_path, name, options
):
    from workers.protocol import Finished, Output
    from workers.video.export import read_frames, read_metadata

    _, _, frames, side, label = FAMILIES[name]
    out = tmp_path / f"{name}.mp4"
    events = _render(
        video_worker,
        model=str(saved(name)),
        frames=frames,
        width=side,
        height=side,
        out_path=str(out),
        **options,
    )
    assert isinstance(events[-1], Finished), events[-1]
    assert [e.path for e in events if isinstance(e, Output)] == [str(out)]
    clip, _fps = read_frames(out)
    assert len(clip) == frames and clip[0].shape[:2] == (side, side)
    meta = read_metadata(out)
    assert meta["family"] == label and meta["model"] == str(saved(name))


def test_hearth_run_video_animates_the_first_frame_given_with_image(saved, tmp_path):
    from workers.video.export import read_frames, read_metadata

    _, _, frames, side, label = FAMILIES["wan2.2-i2v"]
    image = tmp_path / "first.png"
    _image(side).save(image)
    out = tmp_path / "i2v.mp4"
    args = ["--prompt", "a cat", "--model", str(saved("wan2.2-i2v")), "--frames", str(frames), "--steps", "2"]
    args += ["--width", str(side), "--height", str(side), "--image", str(image), "--out", str(out)]
    proc = _hearth(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    clip, _fps = read_frames(out)
    assert len(clip) == frames and clip[0].shape[:2] == (side, side)
    meta = read_metadata(out)
    assert meta["family"] == label and meta["image"] == str(image)


def test_an_image_to_video_model_without_an_image_and_a_text_model_with_one_are_refused(
    saved, video_worker, tmp_path
):
    from workers.errors import ErrorKind
    from workers.protocol import Failed

    image = tmp_path / "first.png"
    _image(16).save(image)
    common = {"frames": 5, "width": 16, "height": 16}
    [*_, no_image] = _render(
        video_worker, model=str(saved("wan2.2-i2v")), out_path=str(tmp_path / "a.mp4"), **common
    )
    assert isinstance(no_image, Failed) and no_image.kind is ErrorKind.bad_input
    assert "image-to-video model: give the first frame" in no_image.message
    [*_, with_image] = _render(
        video_worker, model=str(saved("wan2.2")), image=str(image), out_path=str(tmp_path / "b.mp4"), **common
    )
    assert isinstance(with_image, Failed) and "takes no image" in with_image.message
    assert not list(tmp_path.glob("*.mp4"))


def test_the_video_tab_sends_the_first_frame_and_refuses_a_missing_one(qtbot, tmp_path):
    from app.fake_bridge import FakeBridge
    from app.video_tab import VideoTab

    bridge = FakeBridge()
    tab = VideoTab(bridge)
    qtbot.addWidget(tab)
    image = tmp_path / "first.png"
    _image(16).save(image)
    tab.prompt.setPlainText("a cat")
    tab.image_path.setText(str(tmp_path / "missing.png"))
    tab.generate_button.click()
    assert not bridge.submitted
    assert "first-frame image" in tab.status_label.text() and "does not exist" in tab.status_label.text()
    tab.image_path.setText(str(image))
    tab.generate_button.click()
    assert bridge.last_request().image == str(image)


def test_transformer_memory_tiers_count_tokens_and_shrink_with_slices(saved):
    from workers.video.memory_plan import VideoShape, plan_for_budget, plans, shape_of

    pipe = load_video_pipeline(str(saved("wan2.2")))
    tiny = shape_of(pipe, "wan", frames=81, height=480, width=832, guidance=5.0)
    assert tiny.tokens == 21 * 30 * 52 and tiny.batch == 1  # Wan runs its CFG passes one by one
    wan_1_3b = VideoShape(
        family="wan", batch=1, frames=81, height=480, width=832, latent_scale=8, base_channels=1536,
        vae_channels=96, dtype_bytes=2, weights_bytes=2_840_000_000, tokens=32760, ffn_ratio=8960 / 1536,
    )  # fmt: skip
    resident, sliced, lean = plans(wan_1_3b)
    assert resident.bytes > sliced.bytes > lean.bytes and sliced.frame_slices == 4
    budget = (resident.bytes + sliced.bytes) // 2
    squeezed = plan_for_budget(wan_1_3b, budget)
    assert squeezed.sliced and not squeezed.offload and squeezed.bytes <= budget
