"""The music engines beyond the demos, on tiny random-weight models saved and loaded back through
the real loader: Stable Audio Open writes a WAV of exactly the asked length within its own limit
and refuses a longer one naming it; a stereo MusicGen writes a 2-channel file; chords and BPM
reach each engine the way it can take them."""

from __future__ import annotations

import subprocess

import pytest

from tests.cli_inprocess import hearth_in_process

pytest.importorskip("torch")

from models.music import STABLE_AUDIO, load_music_model  # noqa: E402
from models.tiny_music import (  # noqa: E402
    TINY_STABLE_AUDIO_RATE,
    build_tiny_musicgen_stereo,
    build_tiny_stable_audio,
)
from workers.music.export import read_audio, read_parameters  # noqa: E402
from workers.protocol import MusicRequest  # noqa: E402

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stable_audio_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("music") / "stable-audio"
    build_tiny_stable_audio().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def stereo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("music") / "musicgen-stereo"
    model, tokenizer = build_tiny_musicgen_stereo()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hearth(*args: str) -> subprocess.CompletedProcess:
    return hearth_in_process("run", "music", *args, env={"HEARTH_ARBITER_DEVICE": "sim:8GiB"})


def test_stable_audio_loads_as_its_own_engine_with_its_limit(stable_audio_folder):
    music = load_music_model(str(stable_audio_folder))
    assert music.engine == STABLE_AUDIO and music.title == "Stable Audio Open"
    assert music.channels == 2 and music.sample_rate == TINY_STABLE_AUDIO_RATE
    assert music.max_window_s == pytest.approx(2.0)


def test_stable_audio_chords_and_bpm_reach_it_as_prompt_words(stable_audio_folder):
    from workers.music.stable_audio import TEXT_ONLY_NOTE, plan_text

    music = load_music_model(str(stable_audio_folder))
    request = MusicRequest(prompt="lofi beat", seconds=1.0, chords="C G Am F", bpm=90)
    text, notes = plan_text(music, request)
    assert text == "lofi beat, 90 bpm, 4/4 time, chords C G Am F" and notes == [TEXT_ONLY_NOTE]


def test_hearth_run_music_with_stable_audio_writes_a_wav_of_the_asked_length(stable_audio_folder, tmp_path):
    out = tmp_path / "clip.wav"
    proc = _hearth(
        "--prompt", "lofi beat", "--model", str(stable_audio_folder), "--seconds", "1.5",
        "--steps", "2", "--bpm", "90", "--chords", "C G", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    audio, rate = read_audio(out)
    assert rate == TINY_STABLE_AUDIO_RATE and audio.shape == (2, round(1.5 * TINY_STABLE_AUDIO_RATE))
    params = read_parameters(out)
    assert params["engine"] == "Stable Audio Open" and params["steps"] == 2 and params["channels"] == 2
    assert params["conditioning_text"].endswith("90 bpm, 4/4 time, chords C G")
    assert "2/2" in proc.stderr  # the progress bar reached the last denoising step


def test_stable_audio_refuses_a_clip_beyond_its_limit_naming_it(stable_audio_folder, tmp_path):
    out = tmp_path / "long.wav"
    proc = _hearth(
        "--prompt", "lofi", "--model", str(stable_audio_folder), "--seconds", "3", "--steps", "1",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "at most 2.00 s in one clip, got 3 s" in proc.stderr and "MusicGen" in proc.stderr
    assert not out.exists()


def test_hearth_run_music_with_a_stereo_musicgen_writes_two_channels(stereo_folder, tmp_path):
    """Two windows: the second continues from the first's stereo tail (left and right codes interleaved)."""
    out = tmp_path / "stereo.wav"
    proc = _hearth(
        "--prompt", "lofi beat", "--model", str(stereo_folder), "--seconds", "0.8", "--window-seconds", "0.5",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    audio, rate = read_audio(out)
    assert rate == 32000 and audio.shape == (2, round(0.8 * 32000))
    assert len(read_parameters(out)["windows"]) == 2
    assert not (audio[0] == audio[1]).all(), "left and right come from their own codebooks"
    params = read_parameters(out)
    assert params["engine"] == "MusicGen (stereo)" and params["channels"] == 2
