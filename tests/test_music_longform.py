"""Long-form stitching and file export, checked numerically without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from workers.errors import BadInput
from workers.music.export import convert, read_audio, read_parameters, save_audio
from workers.music.longform import LongForm, equal_power_fades, join, plan_windows

RATE = 8000
HOP = 80


def sine_window(frequency: float = 220.0):
    """A generator whose every window starts at a different phase: a hard cut would click."""

    def generate(window, tail):
        t = np.arange(window.length) / RATE
        phase = 1.7 * (window.index + 1)
        return (0.5 * np.sin(2 * np.pi * frequency * t + phase))[None].astype(np.float32)

    return generate


@pytest.mark.parametrize("total", [1, 79, 8000, 8001, 29_999, 44_321])
def test_plan_covers_exactly_the_requested_length(total):
    windows = plan_windows(total, window=8000, context=3200, crossfade=1600, hop=HOP)
    assert sum(w.new for w in windows) == total
    assert all(w.length <= 8000 for w in windows)
    for before, after in zip(windows, windows[1:], strict=False):
        assert after.start + after.context == before.start + before.length  # continues at the song's end
        assert after.context % HOP == 0 and after.crossfade <= after.context


def test_equal_power_fades_keep_power_constant():
    fade_out, fade_in = equal_power_fades(1000)
    np.testing.assert_allclose(fade_out**2 + fade_in**2, 1.0, atol=1e-6)
    assert fade_out[0] > 0.99 and fade_in[-1] > 0.99


def test_long_form_has_exact_length_and_no_click_at_the_seams():
    windows = plan_windows(3 * RATE + 123, window=RATE, context=400 * 8, crossfade=1600, hop=HOP)
    audio = LongForm(windows).run(sine_window())
    assert audio.shape == (1, 3 * RATE + 123)
    jumps = np.abs(np.diff(audio[0]))
    inside = np.abs(np.diff(sine_window()(windows[0], None)[0])).max()
    assert jumps.max() <= inside * 1.05  # nowhere steeper than the sine itself
    hard_cut = np.concatenate([sine_window()(w, None)[0, w.context :] for w in windows])
    assert np.abs(np.diff(hard_cut)).max() > 3 * inside  # the same windows butt-joined do click


def test_a_seam_keeps_the_level_whether_the_windows_agree_or_not():
    """Two renditions of the same stretch are not 3 dB louder mid-seam (equal power's bump on
    correlated audio), and unrelated ones still keep their power."""
    windows = plan_windows(2 * RATE, window=RATE, context=3200, crossfade=1600, hop=HOP)
    second = windows[1]
    seam = slice(windows[0].length - second.crossfade, windows[0].length)
    steady = np.full((1, windows[0].length), -0.5, dtype=np.float32)  # the demo model's near-DC output
    joined = join(steady, second, np.full((1, second.length), -0.5, dtype=np.float32))
    np.testing.assert_allclose(joined[:, seam], -0.5, atol=1e-6)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1, windows[0].length)).astype(np.float32)
    other = rng.standard_normal((1, second.length)).astype(np.float32)
    blended = join(noise, second, other)[:, seam]
    assert 0.9 < float(np.mean(blended**2)) < 1.1  # unit-power noise in, unit power through the seam


def test_cancel_keeps_the_finished_windows():
    windows = plan_windows(5 * RATE, window=RATE, context=3200, crossfade=1600, hop=HOP)
    longform, calls = LongForm(windows), []

    def generate(window, tail):
        if window.index == 2:
            raise KeyboardInterrupt  # stands in for JobCancelled raised by ctx.step mid-window
        calls.append(window.index)
        return sine_window()(window, tail)

    with pytest.raises(KeyboardInterrupt):
        longform.run(generate)
    assert calls == [0, 1] and longform.finished == 2
    assert longform.audio.shape[-1] == windows[0].new + windows[1].new


def test_join_refuses_a_short_window():
    windows = plan_windows(2 * RATE, window=RATE, context=3200, crossfade=1600, hop=HOP)
    song = sine_window()(windows[0], None)
    with pytest.raises(ValueError, match="produced"):
        join(song, windows[1], song[:, :100])


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_files_carry_their_parameters_in_tags_and_sidecar(tmp_path, suffix):
    audio = (0.3 * np.sin(np.linspace(0, 200, RATE)))[None].astype(np.float32)
    params = {"prompt": "lofi beat", "seed": 7, "chords": "C G Am F", "bpm": 100.0}
    path = save_audio(tmp_path / f"song.{suffix}", audio, RATE, params)
    back, rate = read_audio(path)
    assert rate == RATE and back.shape == audio.shape
    if suffix != "ogg":  # Vorbis is lossy
        np.testing.assert_allclose(back, audio, atol=1e-3)
    assert read_parameters(path) == params
    assert soundfile.info(str(path)).format == {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[suffix]
    assert json.loads((tmp_path / f"song.{suffix}.json").read_text()) == params
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_as_converts_and_keeps_the_parameters(tmp_path):
    audio = np.zeros((1, RATE), dtype=np.float32)
    source = save_audio(tmp_path / "a.wav", audio, RATE, {"prompt": "x", "seed": 1})
    target = convert(source, tmp_path / "b.flac")
    assert soundfile.info(str(target)).format == "FLAC"
    assert read_parameters(target)["seed"] == 1


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(BadInput, match="not supported"):
        save_audio(tmp_path / "a.aiff", np.zeros((1, 10), dtype=np.float32), RATE, {})
