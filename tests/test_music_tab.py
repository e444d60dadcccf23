"""The Music tab against a fake bridge: it submits the request the controls describe, follows the
job's events, and shows the waveform of the file the worker reported."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.fake_bridge import FakeBridge
from app.music_tab import MusicTab
from workers.music.export import read_parameters, save_audio
from workers.protocol import Cancelled, Finished, MusicRequest, Output, Progress, Started

RATE = 32000


@pytest.fixture
def tab(qtbot):
    bridge = FakeBridge()
    widget = MusicTab(bridge)
    widget.resize(900, 500)
    qtbot.addWidget(widget)
    return widget, bridge


def write_song(path, seconds: float = 1.5, **params):
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.5 * np.sin(2 * np.pi * 2 * t) * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    return save_audio(path, audio, RATE, {"prompt": "lofi beat", **params})


def test_generate_submits_the_request_the_controls_describe(tab, qtbot):
    widget, bridge = tab
    widget.prompt.setPlainText("lofi beat")
    widget.seconds.setValue(12)
    widget.chords.setText("C G Am F")
    widget.bpm.setValue(100)
    widget.meter.setCurrentText("3/4")
    widget.seed.setValue(42)
    widget.model_picker.setCurrentIndex(widget.model_picker.findData("demo-musicgen-melody"))
    qtbot.mouseClick(widget.generate_button, Qt.MouseButton.LeftButton)
    request = bridge.last_request()
    assert isinstance(request, MusicRequest)
    assert (
        request.prompt,
        request.seconds,
        request.chords,
        request.bpm,
        request.meter,
        request.seed,
        request.model,
    ) == ("lofi beat", 12, "C G Am F", 100, "3/4", 42, "demo-musicgen-melody")
    assert not widget.generate_button.isEnabled() and widget.cancel_button.isEnabled()


def test_a_typed_hub_id_is_used_as_the_model(tab, qtbot):
    widget, bridge = tab
    widget.prompt.setPlainText("x")
    widget.model_picker.setEditText("facebook/musicgen-small")
    qtbot.mouseClick(widget.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.last_request().model == "facebook/musicgen-small"


def test_bad_chord_is_shown_and_nothing_is_submitted(tab, qtbot):
    widget, bridge = tab
    widget.prompt.setPlainText("lofi beat")
    widget.chords.setText("C G Hm F")
    widget.bpm.setValue(100)
    qtbot.mouseClick(widget.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.submitted == []
    assert "'Hm' at position 3" in widget.status_label.text()
    assert widget.generate_button.isEnabled()


def test_progress_then_output_shows_the_waveform(tab, qtbot, tmp_path):
    widget, bridge = tab
    widget.prompt.setPlainText("lofi beat")
    qtbot.mouseClick(widget.generate_button, Qt.MouseButton.LeftButton)
    job = bridge.submitted[-1][0]
    song = write_song(tmp_path / "song.wav")
    bridge.emit_event(Started(job_id=job))
    bridge.emit_event(Progress(job_id=job, step=30, total=150, message="window 1/1"))
    assert (widget.progress.value(), widget.progress.maximum()) == (30, 150)
    bridge.emit_event(Output(job_id="someone-else", path=str(tmp_path / "nope.wav"), media_type="audio/wav"))
    assert widget.waveform.song is None  # other jobs' events are ignored
    bridge.emit_event(Output(job_id=job, path=str(song), media_type="audio/wav"))
    bridge.emit_event(Finished(job_id=job, elapsed_s=2.0))
    lows, highs = widget.waveform.columns()
    assert len(highs) == widget.waveform.width()
    assert 0.3 < max(highs) <= 0.51 and -0.51 <= min(lows) < -0.3
    assert min(highs) < 0.1  # the envelope's quiet moments show too: it is this song's shape
    assert "1.50 s" in widget.length_label.text()
    assert widget.save_button.isEnabled() and widget.system_player_button.isEnabled()
    assert widget.generate_button.isEnabled() and "Done" in widget.status_label.text()
    image = widget.waveform.grab().toImage()
    assert (
        image.pixelColor(widget.waveform.width() // 4, widget.waveform.height() // 2 - 20).name() == "#5ab0f0"
    )


def test_cancel_asks_the_bridge_and_a_partial_song_is_kept(tab, qtbot, tmp_path):
    widget, bridge = tab
    widget.prompt.setPlainText("long ambient")
    widget.seconds.setValue(90)
    qtbot.mouseClick(widget.generate_button, Qt.MouseButton.LeftButton)
    job = bridge.submitted[-1][0]
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert bridge.cancelled == [job]
    song = write_song(tmp_path / "cut.wav", seconds=1.0, partial=True)
    bridge.emit_event(Output(job_id=job, path=str(song), media_type="audio/wav"))
    bridge.emit_event(Cancelled(job_id=job, at_step=40))
    assert "kept 1.0 s" in widget.status_label.text()
    assert "partial" in widget.length_label.text()


def test_save_as_converts_and_keeps_the_parameters(tab, tmp_path, monkeypatch):
    widget, bridge = tab
    widget.prompt.setPlainText("x")
    widget.generate()
    job = bridge.submitted[-1][0]
    bridge.emit_event(
        Output(job_id=job, path=str(write_song(tmp_path / "a.wav", seed=5)), media_type="audio/wav")
    )
    target = tmp_path / "b.flac"
    monkeypatch.setattr("app.music_tab.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.save_as()
    assert read_parameters(target)["seed"] == 5


def test_the_tab_plays_with_qtmultimedia_and_offers_the_system_player_too(tab, tmp_path):
    widget, bridge = tab
    # The full PySide6 is a dependency: the player is there (tests/test_gui_playback.py plays).
    assert widget.player is not None and widget.playback_note.text() == ""
    assert not widget.player_bar.play_button.isEnabled()  # nothing to play yet
    widget.prompt.setPlainText("x")
    widget.generate()
    bridge.emit_event(
        Output(
            job_id=bridge.submitted[-1][0], path=str(write_song(tmp_path / "a.wav")), media_type="audio/wav"
        )
    )
    assert widget.player_bar.play_button.isEnabled() and widget.system_player_button.isEnabled()
