"""The music job through the real worker runtime (in-process, fake pipe and memory grants) on the
tiny seeded demo models: exact length, same seed same audio, cancel keeping finished windows,
chords reaching MusicGen-Melody as chroma, clear errors before any work."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from workers.codec import decode
from workers.errors import ErrorKind
from workers.music.export import read_parameters
from workers.protocol import (
    Cancelled,
    Failed,
    Finished,
    JobStatus,
    MusicRequest,
    Output,
    Priority,
    Progress,
    Submit,
    WorkerKind,
)
from workers.runtime import WorkerRuntime

pytestmark = pytest.mark.timeout(300)
RATE = 32000
FRAME = 320  # demo EnCodec hop: one codec frame of samples


class Wire:
    """The worker's end of the pipe: events decoded exactly as on the real wire."""

    def __init__(self) -> None:
        self.events: list = []
        self.on_event = None

    def send_bytes(self, data: bytes) -> None:
        event = decode(data)
        self.events.append(event)
        if self.on_event:
            self.on_event(event)


class Grants:
    """Stands in for the arbiter: grants the first tier and records what was offered."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    def __call__(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        self.offered.append([t.name for t in tiers])
        tiers[0].apply()
        return tiers[0]


@pytest.fixture(scope="module")
def worker():
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.music, wire)
    runtime.lease_memory = Grants()
    return runtime, wire


def run_job(worker, request: MusicRequest, job_id: str) -> list:
    runtime, wire = worker
    runtime.run_job(Submit(job_id=job_id, request=request, priority=Priority.single_shot))
    return [e for e in wire.events if getattr(e, "job_id", None) == job_id]


def test_two_second_request_writes_a_two_second_wav(worker, tmp_path):
    out = tmp_path / "x.wav"
    events = run_job(worker, MusicRequest(prompt="lofi beat", seconds=2, out_path=str(out)), "two")
    assert isinstance(events[-1], Finished), events[-1]
    info = soundfile.info(str(out))
    assert info.samplerate == RATE and abs(info.frames - 2 * RATE) <= FRAME
    outputs = [e for e in events if isinstance(e, Output)]
    assert [(o.path, o.media_type) for o in outputs] == [(str(out), "audio/wav")]
    steps = [e for e in events if isinstance(e, Progress) and e.total]
    assert steps and steps[-1].step == steps[-1].total > 200  # token-counted progress, ending at 100 %
    assert read_parameters(out)["prompt"] == "lofi beat"
    assert worker[0].lease_memory.offered[-1] == ["resident"]  # token by token: never offloaded


def test_same_seed_same_audio_and_another_seed_differs(worker, tmp_path):
    def song(seed: int, name: str) -> np.ndarray:
        out = tmp_path / f"{name}.flac"
        request = MusicRequest(prompt="calm piano", seconds=0.5, seed=seed, out_path=str(out))
        assert isinstance(run_job(worker, request, name)[-1], Finished)
        return soundfile.read(str(out))[0]

    first, again, other = song(3, "a"), song(3, "b"), song(4, "c")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_long_form_is_exact_and_seamless(worker, tmp_path):
    out = tmp_path / "long.wav"
    request = MusicRequest(prompt="techno", seconds=2.5, window_seconds=1.0, guidance=1.0, out_path=str(out))
    events = run_job(worker, request, "long")
    assert isinstance(events[-1], Finished), events[-1]
    audio, rate = soundfile.read(str(out))
    assert audio.shape[0] == round(2.5 * rate)
    windows_done = [
        e.message
        for e in events
        if isinstance(e, JobStatus) and e.message.startswith("window ") and "finished" in e.message
    ]
    assert len(windows_done) == 4  # 1.0 s, then 0.6 s per window after a 0.4 s context
    from workers.music.longform import plan_windows

    jumps = np.abs(np.diff(audio))
    seams = [w.start + w.context for w in plan_windows(len(audio), RATE, 12800, 6400, FRAME)[1:]]
    fading, cuts = np.zeros_like(jumps, dtype=bool), np.zeros_like(jumps, dtype=bool)
    for seam in seams:
        fading[seam - 6400 : seam] = True
        cuts[seam - 6400 - 4 : seam - 6400 + 4] = cuts[seam - 4 : seam + 4] = True
    inside = jumps[~fading].max()
    assert jumps[cuts].max() <= inside * 1.1  # where one window hands over to the next: no click
    assert jumps[fading].max() <= inside * np.sqrt(2) + 1e-3  # an equal-power blend stays bounded


def test_cancel_mid_long_form_keeps_the_finished_windows(worker, tmp_path):
    runtime, wire = worker
    out = tmp_path / "cut.wav"

    def cancel_after_second_window(event):
        if isinstance(event, JobStatus) and event.message.startswith("window 2/4 finished"):
            runtime._current[1].set()  # what the reader thread does when a Cancel arrives

    wire.on_event = cancel_after_second_window
    try:
        request = MusicRequest(
            prompt="ambient", seconds=2.5, window_seconds=1.0, guidance=1.0, out_path=str(out)
        )
        events = run_job(worker, request, "cut")
    finally:
        wire.on_event = None
    assert isinstance(events[-1], Cancelled)
    assert any(isinstance(e, Output) for e in events)
    frames = soundfile.info(str(out)).frames
    assert frames == RATE + round(0.6 * RATE)  # windows one and two, nothing of the third
    params = read_parameters(out)
    assert params["partial"] is True and params["windows_kept"] == 2


def test_melody_model_is_conditioned_on_the_chord_chroma(worker, tmp_path, monkeypatch):
    from models.music import load_music_model
    from workers.music.chords import chroma_frames, parse_meter, parse_progression
    from workers.music.render import MusicRender, plan_music

    music = load_music_model("demo-musicgen-melody")
    seen = []
    original = music.model.generate
    monkeypatch.setattr(music.model, "generate", lambda **kw: seen.append(kw) or original(**kw))
    request = MusicRequest(prompt="jazz", seconds=1.0, chords="Dm7 G7 Cmaj7", bpm=180, guidance=1.0)
    plan = plan_music(music, request)
    audio = MusicRender(music, request, plan).run()
    assert audio.shape == (1, RATE)
    expected = chroma_frames(parse_progression("Dm7 G7 Cmaj7"), 180, parse_meter("4/4"), 1.0, RATE / 4096)
    assert np.array_equal(seen[0]["input_features"][0].numpy(), expected)
    assert "180 bpm" in plan.text and "Dm7" not in plan.text  # chords go in as chroma, tempo as words


def test_text_only_model_reads_chords_and_tempo_in_the_prompt():
    from models.music import load_music_model
    from workers.music.render import plan_music

    music = load_music_model("demo-musicgen")
    plan = plan_music(music, MusicRequest(prompt="lofi beat", seconds=1, chords="C G Am F", bpm=100))
    assert plan.text == "lofi beat, 100 bpm, 4/4 time, chords C G Am F"
    assert not plan.uses_chroma and plan.notes


@pytest.mark.parametrize(
    "fields, problem",
    [
        (dict(chords="C G Zm F", bpm=100), "'Zm' at position 3"),
        (dict(chords="C G", bpm=0), "chords need a tempo"),
        (dict(bpm=1000), "got 1000"),
        (dict(seconds=0), "seconds must be between"),
        (dict(out_path="/nonexistent-folder/x.wav"), "does not exist"),
    ],
)
def test_bad_input_fails_clearly(worker, fields, problem):
    events = run_job(worker, MusicRequest(prompt="lofi beat", **fields), "bad")
    assert isinstance(events[-1], Failed)
    assert events[-1].kind is ErrorKind.bad_input and problem in events[-1].message
    assert not any(isinstance(e, Progress) and e.total for e in events)  # refused before any generation


def test_output_path_inside_a_file_is_refused_before_loading(worker, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    request = MusicRequest(
        prompt="x", model="nobody/no-such-model", out_path=str(tmp_path / "a-file" / "x.wav")
    )
    events = run_job(worker, request, "file")
    assert events[-1].kind is ErrorKind.bad_input and "not a folder" in events[-1].message


def test_unknown_hub_model_fails_as_a_missing_model_offline(worker):
    events = run_job(worker, MusicRequest(prompt="x", model="nobody/no-such-model", seconds=0.5), "hub")
    assert events[-1].kind is ErrorKind.missing_model and "nobody/no-such-model" in events[-1].message


def test_a_local_melody_folder_loads_as_a_melody_model():
    from models.music import DEMO_MELODY_ID, ensure_demo_music, load_music_model

    music = load_music_model(str(ensure_demo_music(DEMO_MELODY_ID)))
    assert music.melody and not music.demo
    assert (music.sample_rate, music.hop, music.num_codebooks) == (RATE, FRAME, 2)
