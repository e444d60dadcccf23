"""The video job through the worker runtime (in-process, real wire encoding, granted memory) on the
demo models: per-step previews, cancel, MP4/GIF/WebP written atomically with their parameters,
an out-of-memory decode finished from its checkpoint, and bad input refused with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.codec import decode
from workers.errors import ErrorKind
from workers.protocol import (
    Cancelled,
    Failed,
    Finished,
    JobStatus,
    Output,
    Priority,
    Progress,
    Submit,
    VideoRequest,
    WorkerKind,
)
from workers.runtime import WorkerRuntime
from workers.video.export import read_frames, read_metadata

pytestmark = pytest.mark.timeout(240)
SMALL = {"frames": 4, "steps": 2, "width": 32, "height": 32}


class Wire:
    """The worker's end of the pipe: events are encoded and decoded exactly as on the real wire."""

    def __init__(self) -> None:
        self.events: list = []
        self.on_event = None

    def send_bytes(self, data: bytes) -> None:
        event = decode(data)
        self.events.append(event)
        if self.on_event:
            self.on_event(event)


class Grants:
    """Stands in for the arbiter: grants the tier named ``grant`` (else the first), records the tiers."""

    def __init__(self, grant: str = "") -> None:
        self.grant = grant
        self.requests: list[list[tuple[str, int]]] = []

    def __call__(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        self.requests.append([(t.name, t.bytes) for t in tiers])
        self.tiers, self.can_grow = list(tiers), can_grow
        tier = next((t for t in tiers if t.name == self.grant), tiers[0])
        tier.apply()
        return tier


@pytest.fixture(scope="module")
def worker():
    """One runtime for the module, so the demo pipelines load once (as in a real, warm worker)."""
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.video, wire)
    runtime.lease_memory = Grants(grant="sliced")
    return runtime, wire


def _run(worker, request: VideoRequest, job_id: str = "job") -> list:
    runtime, wire = worker
    wire.events.clear()
    wire.on_event = None
    runtime.run_job(Submit(job_id=job_id, request=request, priority=Priority.background))
    return list(wire.events)


def _end(events):
    return events[-1]


def test_render_reports_each_step_with_a_preview_and_writes_a_readable_mp4(worker, tmp_path):
    out = tmp_path / "clip.mp4"
    events = _run(worker, VideoRequest(prompt="a cat playing piano", out_path=str(out), fps=6, **SMALL))
    assert isinstance(_end(events), Finished), _end(events)
    steps = [e for e in events if isinstance(e, Progress) and e.total]
    assert [e.step for e in steps] == [1, 2]
    assert all(e.preview_png and e.preview_png.startswith(b"\x89PNG") for e in steps)
    outputs = [e for e in events if isinstance(e, Output)]
    assert [(o.path, o.media_type) for o in outputs] == [(str(out), "video/mp4")]
    frames, fps = read_frames(out)
    assert len(frames) == 4 and frames[0].shape == (32, 32, 3) and fps == pytest.approx(6)
    meta = read_metadata(out)
    assert meta["prompt"] == "a cat playing piano" and meta["seed"] == 0 and meta["tier"] == "sliced"
    assert json.loads(Path(f"{out}.json").read_text())["frames"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp files left behind"


def test_cancel_ends_cancelled_at_a_step(worker, tmp_path):
    runtime, wire = worker
    out = tmp_path / "cancelled.mp4"

    def cancel_on_first_step(event):
        if isinstance(event, Progress) and event.total:
            runtime._current[1].set()

    wire.events.clear()
    wire.on_event = cancel_on_first_step
    request = VideoRequest(prompt="a dog running", out_path=str(out), **dict(SMALL, steps=4))
    runtime.run_job(Submit(job_id="cancel-me", request=request, priority=Priority.background))
    end = wire.events[-1]
    assert isinstance(end, Cancelled) and end.at_step == 1
    assert not out.exists()
    unet = runtime.cache.get_or_load("video:demo-animatediff", lambda: None).pipe.unet
    assert unet.down_blocks[0]._diffusers_hook.get_hook("hearth_video_slicer") is None, (
        "slicer removed on cancel"
    )


def test_the_render_pauses_inside_each_step_and_a_cancel_stops_it_mid_step(worker, tmp_path, monkeypatch):
    """Pause points before every resnet, attention and motion module: a throttle (a brush edit, a
    chat token) holds the render within a fraction of a step, and so does a cancel."""
    from workers.pause_points import HOOK_NAME, pause_modules

    runtime, wire = worker
    engine = runtime.cache.get_or_load("video:demo-animatediff", lambda: None)
    points = len(pause_modules(engine.pipe.unet))
    seen: list[int] = []

    def record(ctx, flush=None):
        seen.append(ctx.last_step)
        if seen.count(1) == 5:  # a few modules into the second step
            runtime._current[1].set()

    monkeypatch.setattr(runtime, "pause_point", record)
    out = tmp_path / "paused.mp4"
    events = _run(worker, VideoRequest(prompt="a boat", out_path=str(out), **dict(SMALL, steps=3)))
    end = _end(events)
    assert isinstance(end, Cancelled) and end.at_step == 1, "stopped inside step 2, not at its end"
    assert seen.count(-1) >= points, "every module of the first step passed a pause point"
    assert not out.exists()
    tiers = runtime.lease_memory.tiers
    assert runtime.lease_memory.can_grow, "re-slicing needs no reload: memory may be given back"
    assert all(t.pause_every_s == pytest.approx(t.est_step_s / points) for t in tiers)
    assert not [m for m in pause_modules(engine.pipe.unet) if m._diffusers_hook.get_hook(HOOK_NAME)], (
        "pause hooks removed on cancel"
    )


def test_out_of_memory_at_decode_finishes_from_the_checkpoint(worker, tmp_path, monkeypatch):
    import torch

    import workers.video.decode as decode_module

    engine = _engine(worker)
    real_decode, calls, reloads = engine.pipe.vae.decode, [], []

    def decode_once_out_of_memory(latents, *args, **kwargs):
        calls.append(latents.shape[0])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_decode(latents, *args, **kwargs)

    real_load = decode_module.load_checkpoint
    monkeypatch.setattr(engine.pipe.vae, "decode", decode_once_out_of_memory)
    monkeypatch.setattr(
        decode_module, "load_checkpoint", lambda path: reloads.append(path) or real_load(path)
    )
    out = tmp_path / "resumed.webp"
    events = _run(worker, VideoRequest(prompt="a red apple", out_path=str(out), **SMALL), job_id="oom")
    assert isinstance(_end(events), Finished), _end(events)
    assert calls[0] == 4 and calls[1] == 2, "the retry decodes smaller chunks"
    assert len(reloads) == 1 and reloads[0].name == "video-oom.safetensors"
    assert any("retrying 2 frame(s) at a time" in e.message for e in events if isinstance(e, JobStatus))
    assert not reloads[0].exists(), "the checkpoint is removed once the video is written"
    assert len(read_frames(out)[0]) == 4 and read_metadata(out)["decode_chunk"] == 2


def test_manual_slices_and_step_rehash_render_a_gif(worker, tmp_path):
    out = tmp_path / "rehash.gif"
    request = VideoRequest(
        prompt="a city at night",
        out_path=str(out),
        memory_mode="slices:3",
        step_rehash=True,
        **dict(SMALL, steps=3),
    )
    events = _run(worker, request)
    assert isinstance(_end(events), Finished), _end(events)
    assert worker[0].lease_memory.requests[-1][0][0] == "manual"
    meta = read_metadata(out)
    assert meta["step_rehash"] is True and meta["frame_slices"] == 3 and meta["tier"] == "manual"


def test_wan_demo_renders_and_needs_4k_plus_1_frames(worker, tmp_path):
    out = tmp_path / "wan.mp4"
    base = {
        "prompt": "a cinematic shot of a city",
        "model": "demo-wan",
        "width": 32,
        "height": 32,
        "steps": 2,
    }
    events = _run(worker, VideoRequest(out_path=str(out), frames=5, **base))
    assert isinstance(_end(events), Finished), _end(events)
    assert len(read_frames(out)[0]) == 5
    cached = _end(
        _run(worker, VideoRequest(out_path=str(tmp_path / "wan.gif"), frames=5, step_rehash=True, **base))
    )
    assert isinstance(cached, Finished), cached
    failed = _end(_run(worker, VideoRequest(out_path=str(out), frames=6, **base)))
    assert isinstance(failed, Failed) and failed.kind is ErrorKind.bad_input and "4k+1" in failed.message


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"frames": 0}, "frames must be between 1"),
        ({"frames": 33}, "at most 32 frames"),
        ({"width": 60}, "width must be a multiple of 8"),
        ({"fps": 0}, "fps must be between 1"),
        ({"format": "avi"}, "mp4, gif, webp"),
        ({"out_path": "/no/such/folder/clip.mp4"}, "does not exist"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(worker, fields, words):
    request = VideoRequest(prompt="a cat", **dict(SMALL, **fields))
    end = _end(_run(worker, request))
    assert isinstance(end, Failed) and end.kind is ErrorKind.bad_input
    assert words in end.message


def _checkpoints() -> list[str]:
    from workers.paths import data_dir

    folder = data_dir() / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _engine(worker):
    """The warm demo AnimateDiff engine, loaded here when no earlier test has run a render."""
    from models.video import load_video_pipeline
    from workers.devices import compute_device
    from workers.jobs.video import VideoEngine

    load = lambda: VideoEngine(load_video_pipeline("demo-animatediff"), compute_device())  # noqa: E731
    return worker[0].cache.get_or_load("video:demo-animatediff", load)


def test_a_decode_that_fails_leaves_no_checkpoint_but_out_of_memory_keeps_it(worker, tmp_path, monkeypatch):
    engine = _engine(worker)
    request = VideoRequest(prompt="a red apple", out_path=str(tmp_path / "never.webp"), **SMALL)

    def broken(latents, *args, **kwargs):
        raise RuntimeError("the VAE is broken")

    monkeypatch.setattr(engine.pipe.vae, "decode", broken)
    failed = _end(_run(worker, request, job_id="broken"))
    assert isinstance(failed, Failed) and "the VAE is broken" in failed.message
    assert _checkpoints() == [], "nothing can resume from it: it must not pile up"

    import torch

    def never_fits(latents, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine.pipe.vae, "decode", never_fits)
    failed = _end(_run(worker, request, job_id="too-big"))
    assert isinstance(failed, Failed) and failed.kind is ErrorKind.out_of_memory
    assert _checkpoints() == ["video-too-big.safetensors"] and "video-too-big" in failed.message


def test_the_video_worker_clears_old_checkpoints_of_killed_renders_at_start():
    import os
    import time

    from workers.jobs.video import warm_up
    from workers.paths import data_dir

    folder = data_dir() / "checkpoints"
    folder.mkdir(parents=True)
    four_days_ago = time.time() - 4 * 86400
    for name in ("video-killed.safetensors", "video-running.safetensors", "notes.txt"):
        (folder / name).write_bytes(b"latents")
    for name in ("video-killed.safetensors", "notes.txt"):
        os.utime(folder / name, (four_days_ago, four_days_ago))
    warm_up()  # what the video worker runs before it says Hello
    assert _checkpoints() == ["notes.txt", "video-running.safetensors"]
