"""Brush jobs as the image worker runs them, and the brush requests' validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.brush_fixtures import SIZE, Untouched, box_mask, fresh_session
from workers.brushes.layers import mask_to_png
from workers.codec import decode, encode
from workers.context import CancelToken, JobContext
from workers.errors import BadInput, JobCancelled
from workers.protocol import BrushBaseRequest, BrushLayer, BrushRenderRequest, Output, Priority, Progress
from workers.runtime import WarmCache

STEPS = 6


class StubRuntime:
    """The parts of ``WorkerRuntime`` a job touches, without an arbiter."""

    def __init__(self) -> None:
        self.cache = WarmCache()

    def honour_revokes(self, ctx) -> None:
        pass

    def lease_memory(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        return tiers[0]


def _context(runtime=None, job_id="j1"):
    events = []
    ctx = JobContext(
        job_id=job_id,
        priority=Priority.interactive,
        send=events.append,
        cancel_token=CancelToken(),
        runtime=runtime or StubRuntime(),
    )
    return ctx, events


def _layer(**changes) -> BrushLayer:
    fields = {
        "id": "a",
        "mask_png": mask_to_png(box_mask(8, 8, 32, 40)),
        "prompt": "a cat",
        "regen_step": 2,
        "seed": 5,
    }
    fields.update(changes)
    return BrushLayer(**fields)


def _outputs(events, media_type):
    return [event.path for event in events if isinstance(event, Output) and event.media_type == media_type]


@pytest.fixture(scope="module")
def base_job(tmp_path_factory):
    """The base job, run once: tests render from its project file and a copy of its session."""
    from workers.brushes.job import SESSIONS_KEY, BrushSessions, run

    project = tmp_path_factory.mktemp("brush-job") / "apple.hearth"
    request = BrushBaseRequest(
        session_id="s1", prompt="a red apple", steps=STEPS, seed=1, project_path=str(project)
    )
    request.validate()
    ctx, events = _context()
    run(ctx, request)
    session = ctx.runtime.cache.get_or_load(SESSIONS_KEY, BrushSessions).get(request.session_id)
    untouched, saved = Untouched(session), project.read_bytes()
    yield ctx.runtime, request, tuple(events)
    untouched.check()
    assert project.read_bytes() == saved, "a test changed the shared project file"


@pytest.fixture
def started(base_job):
    """A worker as warm as the base job left it: the same pipeline, its own copy of the session."""
    from workers.brushes.job import SESSIONS_KEY, BrushSessions

    warm, request, events = base_job
    runtime = StubRuntime()
    pipe_key = f"sd:{request.model}"
    runtime.cache.get_or_load(pipe_key, lambda: warm.cache.get_or_load(pipe_key, _missing))
    session = warm.cache.get_or_load(SESSIONS_KEY, BrushSessions).get(request.session_id)
    runtime.cache.get_or_load(SESSIONS_KEY, BrushSessions).put(fresh_session(session))
    return runtime, request, list(events)


def _missing():
    raise AssertionError("the base job's runtime lost its pipeline")


def _render_request(base: BrushBaseRequest, tmp_path, **changes) -> BrushRenderRequest:
    fields = {
        "session_id": base.session_id,
        "project_path": base.project_path,
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "layers": (_layer(),),
        "revision": 1,
        "out_path": str(tmp_path / "render.png"),
    }
    fields.update(changes)
    return BrushRenderRequest(**fields)


def test_base_then_render_with_previews_and_embedded_parameters(started, tmp_path):
    from workers.brushes.job import run

    runtime, base, events = started
    assert _outputs(events, "application/x-hearth") == [base.project_path]
    request = decode(encode(_render_request(base, tmp_path)))  # as it crosses the process boundary
    assert request.default_priority is Priority.interactive
    ctx, events = _context(runtime)
    run(ctx, request)
    previews = [event for event in events if isinstance(event, Progress) and event.preview_png]
    assert len(previews) == STEPS - 2  # one per UNet step: (N-2-n) branch + 2 finishing
    (path,) = _outputs(events, "image/png")
    with Image.open(path) as image:
        assert image.size == (SIZE, SIZE)
        assert '"regen_step": 2' in image.text["hearth"]
    assert {m.name: m.value for m in ctx.metrics}["unet_calls"] == STEPS - 2


def test_evicted_session_reopens_from_its_project_and_renders_the_same(started, tmp_path):
    from workers.brushes.job import run

    runtime, base, _ = started
    run(_context(runtime)[0], _render_request(base, tmp_path, out_path=str(tmp_path / "warm.png")))
    run(_context(StubRuntime())[0], _render_request(base, tmp_path, out_path=str(tmp_path / "cold.png")))
    warm, cold = (np.asarray(Image.open(tmp_path / name)) for name in ("warm.png", "cold.png"))
    assert np.array_equal(warm, cold)


def test_a_stale_render_is_dropped_latest_wins(started, tmp_path):
    from workers.brushes.job import run

    runtime, base, _ = started
    run(_context(runtime)[0], _render_request(base, tmp_path, revision=5))
    with pytest.raises(JobCancelled):
        run(_context(runtime)[0], _render_request(base, tmp_path, revision=4))


def test_cancel_during_a_render_stops_at_the_next_step(started, tmp_path):
    from workers.brushes.job import run

    runtime, base, _ = started
    ctx, events = _context(runtime)
    original_step = ctx.step

    def cancel_after_first(step, *args, **kwargs):
        original_step(step, *args, **kwargs)
        ctx.cancel_token.set()

    ctx.step = cancel_after_first
    with pytest.raises(JobCancelled):
        run(ctx, _render_request(base, tmp_path, layers=(_layer(seed=99),)))
    assert not (tmp_path / "render.png").exists()


def test_photo_import_by_inversion_keeps_the_photo_outside_the_mask(tmp_path):
    from workers.brushes.job import run

    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    base = BrushBaseRequest(
        session_id="p1",
        photo_path=str(photo),
        steps=STEPS,
        width=SIZE,
        height=SIZE,
        project_path=str(tmp_path / "photo.hearth"),
    )
    base.validate()
    runtime = StubRuntime()
    run(_context(runtime)[0], base)
    run(_context(runtime)[0], _render_request(base, tmp_path, layers=(_layer(feather=0.0),)))
    from workers.brushes.job import load_photo

    original = np.asarray(load_photo(str(photo), SIZE, SIZE))
    edited = np.asarray(Image.open(tmp_path / "render.png"))
    outside = box_mask(8, 8, 32, 40) == 0
    assert np.array_equal(original[outside], edited[outside])
    assert not np.array_equal(original[~outside], edited[~outside])


def _png(size, color=0):
    buffer = io.BytesIO()
    Image.new("L", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mask_png": _png((SIZE, SIZE))}, "empty"),
        ({"mask_png": _png((32, 32), 255)}, "32x32"),
        ({"mask_png": b"not a png"}, "not a readable PNG"),
        ({"regen_step": STEPS - 2}, "between 0 and 3"),
        ({"regen_step": -1}, "regeneration step"),
        ({"strength": 1.5}, "strength"),
    ],
)
def test_bad_layers_are_refused_before_any_work(changes, message):
    request = BrushRenderRequest(
        session_id="s",
        project_path="x.hearth",
        width=SIZE,
        height=SIZE,
        steps=STEPS,
        layers=(_layer(**changes),),
    )
    with pytest.raises(BadInput, match=message):
        request.validate()


def test_unreadable_photo_and_missing_project_are_bad_input(tmp_path):
    from workers.brushes.job import run

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not really a jpeg")
    for path in (broken, tmp_path / "absent.png"):
        with pytest.raises(BadInput, match="photo"):
            BrushBaseRequest(session_id="s", photo_path=str(path)).validate()
    request = BrushRenderRequest(
        session_id="gone",
        project_path=str(tmp_path / "gone.hearth"),
        width=SIZE,
        height=SIZE,
        steps=STEPS,
        layers=(_layer(),),
    )
    with pytest.raises(BadInput, match="does not exist"):
        run(_context()[0], request)
