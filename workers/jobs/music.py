"""Music jobs: text to music with MusicGen / MusicGen-Melody (mono or stereo), chords and tempo,
any length; or with Stable Audio Open, one clip up to its limit (``workers/music/stable_audio.py``).

Order of work: validate and check the output path is writable (before any model is loaded),
load the model (kept warm), lease its memory, plan the windows, generate token by token with
``ctx.step`` after every token (progress, cancel and arbiter revokes), write the file (tags +
sidecar JSON, atomic) and report it with ``ctx.output``.

Memory: MusicGen decodes one token at a time, so an offloaded model would move its weights over
the bus for every token and crawl. The job offers the arbiter one tier only, fully resident; when
the arbiter revokes it the worker releases the model and waits for memory rather than offloading.

What chord control does, and what it cannot do:

- With a **MusicGen-Melody** model, the chords (one per bar), BPM and meter become the 12-bin
  one-hot chroma sequence that model was trained to follow (the same frame layout as its feature
  extractor: 7.8125 frames/s), with the chord changing on the first chroma frame of each bar. The
  model follows this chroma the way it follows a hummed melody: it steers harmony, and bar-length
  harmonic rhythm gives it the tempo's grid. Tempo and meter also go into the text prompt.
- With a plain **MusicGen** model there is no chroma input: tempo, meter and the chord names are
  appended to the text prompt, which nudges style and tempo but does not place chords in time.
- It cannot guarantee the exact voicing, the beat phase (the downbeat is not pinned to sample 0),
  a strict tempo lock or rhythm patterns (MusiConGen fine-tunes MusicGen for that; Hearth does not
  retrain), and a one-hot chroma frame holds one pitch class, so chord quality (minor vs major,
  sevenths) reaches the model only through which tone sounds on which beat. The demo models have
  random weights: they exercise this pipeline, their output is noise.
"""

from __future__ import annotations

import time
from pathlib import Path

from workers.context import JobContext, MemoryTier
from workers.errors import JobCancelled
from workers.music.export import format_of, media_type, save_audio
from workers.outputs import output_path, request_parameters
from workers.protocol import MusicRequest

PROGRESS_INTERVAL_S = 0.05
ACTIVATION_BYTES_PER_WINDOW_SECOND = 2 * 1024 * 1024  # KV cache + codec decode, rough, per second at fp32


def warm_up() -> None:
    """Pay the transformers import (about 3 s) before the worker says Hello."""
    from transformers.utils import logging

    from workers.launch import import_libraries
    from workers.protocol import WorkerKind

    import_libraries(WorkerKind.music)

    logging.disable_progress_bar()


def run(ctx: JobContext, request: MusicRequest) -> None:
    from models.music import STABLE_AUDIO
    from workers.music.render import MusicRender, plan_music

    request.validate()
    path = target_path(request, ctx.job_id)
    music = load_model(ctx, request.model)
    if music.engine == STABLE_AUDIO:
        run_diffusion(ctx, request, music, path)
        return
    plan = plan_music(music, request)
    for note in plan.notes:
        ctx.status(note)
    render = MusicRender(music, request, plan)
    start = time.perf_counter()
    on_token = TokenProgress(ctx)

    def on_window(done: int, count: int) -> None:
        ctx.status(
            f"window {done}/{count} finished ({render.longform.audio.shape[-1] / music.sample_rate:.1f} s)"
        )

    try:
        audio = render.run(on_token, on_window)
    except JobCancelled:
        _keep_finished(ctx, render, request, path, music)
        raise
    elapsed = time.perf_counter() - start
    _write(ctx, path, audio, music, request, plan.text, plan.windows, elapsed=round(elapsed, 3))
    ctx.metric("seconds", elapsed)
    ctx.metric("real_time_factor", request.seconds / max(elapsed, 1e-9))


def run_diffusion(ctx: JobContext, request: MusicRequest, music, path: Path) -> None:
    """Stable Audio Open: one clip, every denoising step reported (a cancel stops at the next)."""
    from workers.music import stable_audio

    text, notes = stable_audio.plan_text(music, request)
    for note in notes:
        ctx.status(note)
    start = time.perf_counter()
    audio = stable_audio.render(
        music, request, text, lambda done, total: ctx.step(done, total, f"step {done}/{total}")
    )
    elapsed = time.perf_counter() - start
    from workers.music.longform import Window

    steps = request.steps or stable_audio.DEFAULT_STEPS
    whole = [Window(index=0, start=0, context=0, new=int(audio.shape[-1]), crossfade=0)]  # one clip
    _write(ctx, path, audio, music, request, text, whole, elapsed=round(elapsed, 3), steps=steps)
    ctx.metric("seconds", elapsed)
    ctx.metric("real_time_factor", request.seconds / max(elapsed, 1e-9))


class TokenProgress:
    """``ctx.step`` at every token (cancel and revokes take effect mid-window); a progress event only
    a few times a second, since a small model makes tokens faster than events are worth sending."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.last_report = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if now - self.last_report >= PROGRESS_INTERVAL_S or done == total:
            self.last_report = now
            self.ctx.step(done, total, message)
        else:
            self.ctx.step(done)


def target_path(request: MusicRequest, job_id: str) -> Path:
    """The output file, checked writable now so a bad path fails before minutes of generation."""
    typed = Path(request.out_path).suffix.lstrip(".") if request.out_path else ""
    fmt = format_of(Path(request.out_path or "song"), typed or request.format or "wav")
    return output_path(request.out_path, job_id, "." + fmt)


def load_model(ctx: JobContext, spec: str):
    from models.music import load_music_model
    from workers.devices import compute_device

    device = compute_device()
    ctx.status(f"loading {spec}")
    music = ctx.cache.get_or_load(f"music:{spec}", lambda: load_music_model(spec, "cpu"))
    resident = music.weight_bytes() + int(music.max_window_s * ACTIVATION_BYTES_PER_WINDOW_SECOND)
    tier = MemoryTier(name="resident", bytes=resident, est_step_s=0.02, apply=lambda: music.model.to(device))
    ctx.lease_memory(f"music:{spec}", [tier], on_release=lambda: music.model.to("cpu"))
    return music


def _keep_finished(ctx: JobContext, render, request: MusicRequest, path: Path, music) -> None:
    """A cancel keeps every finished window: written to the output, flagged as partial."""
    audio = render.longform.audio
    if render.longform.finished == 0 or audio.shape[-1] == 0:
        return
    seconds = audio.shape[-1] / music.sample_rate
    _write(
        ctx,
        path,
        audio,
        music,
        request,
        render.plan.text,
        render.plan.windows[: render.longform.finished],
        partial=True,
        seconds_kept=round(seconds, 3),
        windows_kept=render.longform.finished,
    )
    ctx.status(f"cancelled: kept the {render.longform.finished} finished window(s), {seconds:.1f} s")


def _write(
    ctx: JobContext, path: Path, audio, music, request: MusicRequest, text: str, windows, **extra
) -> None:
    params = request_parameters(
        request,
        engine=music.title,
        conditioning_text=text,
        sample_rate=music.sample_rate,
        channels=int(audio.shape[0]),
        demo_model=music.demo,
        chroma=music.melody and bool(request.chords.strip()),
        **extra,
    )
    params["windows"] = window_records(windows, music.sample_rate, request.seed)
    save_audio(path, audio, music.sample_rate, params, fmt=path.suffix.lstrip("."))
    ctx.output(str(path), media_type(path))


def window_records(windows, sample_rate: int, seed: int) -> list[dict]:
    """Which ``generate`` call made which stretch of the song, in seconds (the Music tab draws them).

    ``start_s`` is where the call's audio begins, the ``context_s`` it re-read from the song
    included; its own ``new_s`` seconds follow, and the last ``crossfade_s`` of its context are
    crossfaded with the song before it. Each call is seeded with ``seed + index`` (``workers/music/render.py``).
    """
    return [
        {
            "index": w.index,
            "start_s": round(w.start / sample_rate, 4),
            "context_s": round(w.context / sample_rate, 4),
            "new_s": round(w.new / sample_rate, 4),
            "crossfade_s": round(w.crossfade / sample_rate, 4),
            "seed": seed + w.index,
        }
        for w in windows
    ]
