"""Playback in the Music and Video tabs through QtMultimedia (the full PySide6), and the music view's
waveform checked against the samples it draws.

These run headless (offscreen, no sound card): Qt logs "No audio device detected" and still plays,
its position running on the system clock (docs/FIELD-NOTES.md §1), so every wait is on the
player's own state and position, never on the clock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtMultimedia import QMediaPlayer

from app.fake_bridge import FakeBridge
from app.music_tab import WAVE, MusicTab
from app.video_tab import VideoTab
from app.waveform import column_peaks, generation_windows
from workers.music.export import save_audio
from workers.protocol import Finished, Output
from workers.video.export import export_video

RATE = 32000
PLAYING = QMediaPlayer.PlaybackState.PlayingState
PAUSED = QMediaPlayer.PlaybackState.PausedState


@pytest.fixture
def music(qtbot):
    bridge = FakeBridge()
    tab = MusicTab(bridge)
    tab.resize(1000, 560)
    qtbot.addWidget(tab)
    tab.show()
    return tab, bridge


@pytest.fixture
def video(qtbot):
    bridge = FakeBridge()
    tab = VideoTab(bridge)
    tab.resize(1000, 600)
    qtbot.addWidget(tab)
    tab.show()
    return tab, bridge


def noise_song(path: Path, seconds: float = 2.0, seed: int = 0, **params) -> tuple[Path, np.ndarray]:
    """White noise under a slow envelope that goes quiet in the middle: a shape the view must show."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.1 + 0.8 * np.abs(np.cos(np.pi * t / seconds))
    audio = (rng.uniform(-1, 1, t.size) * envelope)[None].astype(np.float32)
    save_audio(path, audio, RATE, {"prompt": "noise", **params})
    return path, audio


def finish_music_job(tab: MusicTab, bridge: FakeBridge, path: Path) -> None:
    tab.prompt.setPlainText("noise")
    tab.generate()
    job = bridge.submitted[-1][0]
    bridge.emit_event(Output(job_id=job, path=str(path), media_type="audio/wav"))
    bridge.emit_event(Finished(job_id=job, elapsed_s=1.0))


def test_music_plays_pauses_seeks_and_the_playhead_follows(music, qtbot, tmp_path):
    tab, bridge = music
    path, _ = noise_song(tmp_path / "song.wav", seconds=3.0)
    finish_music_job(tab, bridge, path)
    bar = tab.player_bar
    assert bar.play_button.isEnabled() and tab.playback_note.text() == ""
    qtbot.mouseClick(bar.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.player.playbackState() == PLAYING, timeout=10_000)
    qtbot.waitUntil(lambda: tab.player.position() > 300, timeout=10_000)
    assert bar.play_button.text() == "Pause"
    assert tab.player.duration() == pytest.approx(3000, abs=20)
    qtbot.waitUntil(lambda: tab.waveform.position_s > 0.3, timeout=5000)  # the playhead moves with it
    assert bar.seek_slider.maximum() == tab.player.duration() and bar.seek_slider.value() > 0

    qtbot.mouseClick(bar.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.player.playbackState() == PAUSED, timeout=5000)
    assert bar.play_button.text() == "Play"

    # A click on the waveform three quarters of the way along seeks there.
    waveform = tab.waveform
    qtbot.mouseClick(waveform, Qt.MouseButton.LeftButton, pos=QPoint(waveform.width() * 3 // 4, 10))
    qtbot.waitUntil(lambda: abs(tab.player.position() - 2250) < 60, timeout=5000)
    assert "0:02 / 0:03" == bar.time_label.text()


def test_loop_plays_the_song_again_and_volume_is_perceptual(music, qtbot, tmp_path):
    tab, bridge = music
    path, _ = noise_song(tmp_path / "short.wav", seconds=0.6)
    finish_music_job(tab, bridge, path)
    bar = tab.player_bar
    bar.loop_box.setChecked(True)
    assert tab.player.loops() == QMediaPlayer.Loops.Infinite
    positions = []
    tab.player.positionChanged.connect(positions.append)
    tab.play()
    qtbot.waitUntil(lambda: len(positions) > 2 and max(positions) > 400, timeout=10_000)
    peak = max(positions)
    qtbot.waitUntil(lambda: positions[-1] < peak - 200, timeout=10_000)  # back to the start
    assert tab.player.playbackState() == PLAYING, "a looping song keeps playing past its end"

    bar.volume_slider.setValue(100)
    assert tab.player_bar.audio.volume() == pytest.approx(1.0)
    bar.volume_slider.setValue(50)
    assert 0.05 < tab.player_bar.audio.volume() < 0.5  # half the slider is well under half the gain
    bar.volume_slider.setValue(0)
    assert tab.player_bar.audio.volume() == 0


def test_waveform_columns_are_the_samples_min_and_max(music, tmp_path):
    tab, bridge = music
    path, audio = noise_song(tmp_path / "song.wav", seconds=2.0, seed=3)
    finish_music_job(tab, bridge, path)
    lows, highs = tab.waveform.columns()
    width = tab.waveform.width()
    assert len(lows) == width
    mono = tab.state.song.audio.mean(axis=0)  # as read back from the 16-bit file
    edges = [(i * mono.size) // width for i in range(width + 1)]
    expected_low = [mono[a:b].min() for a, b in zip(edges, edges[1:], strict=False)]
    expected_high = [mono[a:b].max() for a, b in zip(edges, edges[1:], strict=False)]
    np.testing.assert_array_equal(lows, expected_low)
    np.testing.assert_array_equal(highs, expected_high)
    # The envelope is loud at both ends and quiet in the middle, and the columns say so.
    middle = slice(width // 2 - 5, width // 2 + 5)
    assert highs[:10].min() > 0.6 and highs[middle].max() < 0.3
    assert np.abs(mono).max() == pytest.approx(max(highs.max(), -lows.min()))
    np.testing.assert_allclose(mono, audio[0], atol=1 / 2**15)


def test_painted_waveform_matches_the_samples_pixel_for_pixel(music, tmp_path):
    tab, bridge = music
    path, _ = noise_song(tmp_path / "song.wav", seconds=2.0, seed=4)
    finish_music_job(tab, bridge, path)
    view = tab.waveform
    image = view.grab().toImage()
    lows, highs = view.columns()
    middle, half = view.height() / 2, view.height() / 2 - 4
    wrong = []
    for x in range(0, view.width(), 7):
        rows = [y for y in range(view.height()) if image.pixelColor(x, y) == WAVE]
        top, bottom = middle - highs[x] * half, middle - lows[x] * half
        if not rows or abs(rows[0] - top) > 1.5 or abs(rows[-1] - bottom) > 1.5:
            wrong.append((x, rows[:1] + rows[-1:], round(top, 1), round(bottom, 1)))
    assert not wrong, f"painted extent differs from the samples at (x, painted, expected): {wrong[:5]}"


def test_a_long_piece_shows_which_window_made_which_stretch(music, qtbot, tmp_path):
    tab, bridge = music
    # As workers/jobs/music.py records them: 3 windows of a 3 s piece, each after the first
    # continuing from 0.4 s of the song and crossfaded over 0.2 s of it.
    windows = [
        {"index": 0, "start_s": 0.0, "context_s": 0.0, "new_s": 1.2, "crossfade_s": 0.0, "seed": 7},
        {"index": 1, "start_s": 0.8, "context_s": 0.4, "new_s": 0.8, "crossfade_s": 0.2, "seed": 8},
        {"index": 2, "start_s": 1.6, "context_s": 0.4, "new_s": 1.0, "crossfade_s": 0.2, "seed": 9},
    ]
    path, _ = noise_song(tmp_path / "long.wav", seconds=3.0, windows=windows)
    finish_music_job(tab, bridge, path)
    song = tab.state.song
    spans = [(w.start_s, w.end_s, w.seed) for w in song.windows]
    assert spans == [(0.0, 1.2, 7), (pytest.approx(1.2), 2.0, 8), (2.0, 3.0, 9)]
    assert "3 generation windows" in tab.windows_label.text() and "2: 1.2–2.0 s" in tab.windows_label.text()
    view = tab.waveform
    assert view.window_at(view.x_of(1.5)).index == 1
    assert "seed 9" in view.window_at(view.x_of(2.5)).describe(3)
    assert "crossfaded over 0.2 s" in song.windows[2].describe(3)
    # Neighbouring windows are tinted differently, and the seam before window 2 is hatched.
    image = view.grab().toImage()
    top = 1  # above the loudest sample: only the band shows there
    first, second = (image.pixelColor(round(view.x_of(s)), top) for s in (0.6, 1.6))
    assert first != second
    seam_xs = range(round(view.x_of(1.0)), round(view.x_of(1.2)))
    seam = {image.pixelColor(x, y).name() for x in seam_xs for y in (1, 2, 3)}
    assert len(seam) > 1, "the crossfade is hatched"


def test_windows_of_a_foreign_file_are_ignored_not_guessed():
    assert generation_windows({"windows": [{"start_s": "soon"}]}) == []
    assert generation_windows({"windows": "three"}) == []
    assert generation_windows({}) == []


def test_column_peaks_spreads_a_clip_shorter_than_the_view():
    lows, highs = column_peaks(np.array([[0.5, -0.25]], np.float32), 4)
    assert lows.tolist() == highs.tolist() == [0.5, 0.5, -0.25, -0.25]


def _frame_colour(tab: VideoTab) -> tuple[int, int, int]:
    frame = tab.playback.videoSink().videoFrame()
    image = frame.toImage()
    colour = image.pixelColor(image.width() // 2, image.height() // 2)
    return colour.red(), colour.green(), colour.blue()


@pytest.mark.parametrize("suffix", ["mp4", "gif", "webp"])
def test_a_finished_clip_plays_in_the_video_widget(video, qtbot, tmp_path, suffix):
    tab, bridge = video
    # 16 frames at 8 fps, each a different grey: playing shows different frames over time.
    frames = [np.full((64, 64, 3), 10 + 15 * i, dtype=np.uint8) for i in range(16)]
    clip = export_video(frames, tmp_path / f"clip.{suffix}", 8, {"prompt": "greys"})
    tab.prompt.setPlainText("greys")
    tab.generate_button.click()
    job = tab.state.job.job_id
    bridge.emit_event(Output(job_id=job, path=str(clip), media_type="video/mp4"))
    bridge.emit_event(Finished(job_id=job, elapsed_s=1.0))
    qtbot.waitUntil(lambda: tab.player.playbackState() == PLAYING, timeout=10_000)
    qtbot.waitUntil(lambda: tab.player.position() > 300, timeout=10_000)
    assert tab.player.hasVideo() and tab.player.duration() == pytest.approx(2000, abs=150)
    qtbot.waitUntil(lambda: tab.playback.videoSink().videoFrame().isValid(), timeout=5000)
    seen = {_frame_colour(tab)}
    qtbot.waitUntil(lambda: seen.add(_frame_colour(tab)) or len(seen) >= 3, timeout=10_000)
    assert tab.playback_note.text() == "" and tab.system_player_button.isEnabled()
    if suffix == "webp":  # Qt's FFmpeg cannot read animated WebP: it plays from an MP4 copy
        assert tab.playing_path.endswith("clip.mp4") and Path(tab.playing_path).parent != tmp_path
    else:
        assert tab.playing_path == str(clip)


def test_a_clip_that_cannot_be_read_says_so(video, qtbot, tmp_path):
    tab, bridge = video
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    tab.player_bar.loop_box.setChecked(True)
    tab.prompt.setPlainText("x")
    tab.generate_button.click()
    bridge.emit_event(Output(job_id=tab.state.job.job_id, path=str(broken), media_type="video/mp4"))
    qtbot.waitUntil(lambda: "cannot play" in tab.playback_note.text(), timeout=10_000)
    qtbot.waitUntil(
        lambda: tab.player.playbackState() == QMediaPlayer.PlaybackState.StoppedState, timeout=5000
    )


def test_without_qtmultimedia_the_tabs_say_so_and_offer_the_system_player(qtbot, monkeypatch, tmp_path):
    """libpulse missing on a Linux desktop: QtMultimedia cannot load, the rest of the tab works."""
    monkeypatch.setattr("app.media_player.multimedia_available", lambda: False)
    monkeypatch.setattr("app.video_tab.multimedia_available", lambda: False)
    bridge = FakeBridge()
    music, video = MusicTab(bridge), VideoTab(bridge)
    for tab in (music, video):
        qtbot.addWidget(tab)
        assert tab.player is None and "system player" in tab.playback_note.text()
    path, _ = noise_song(tmp_path / "song.wav")
    finish_music_job(music, bridge, path)
    assert music.system_player_button.isEnabled() and not music.player_bar.play_button.isEnabled()
    music.play()  # nothing to play with: no error either
    clip = export_video([np.zeros((16, 16, 3), np.uint8)] * 2, tmp_path / "clip.mp4", 8, {"prompt": "x"})
    video.prompt.setPlainText("x")
    video.generate()
    bridge.emit_event(Output(job_id=video.state.job.job_id, path=str(clip), media_type="video/mp4"))
    assert video.system_player_button.isEnabled() and video.export_buttons["gif"].isEnabled()


def test_the_windows_the_worker_records_tile_the_song_the_tab_draws():
    from workers.jobs.music import window_records
    from workers.music.longform import plan_windows

    rate, seconds = 32000, 7.3
    plan = plan_windows(round(seconds * rate), window=2 * rate, context=25600, crossfade=12800, hop=640)
    drawn = generation_windows({"windows": window_records(plan, rate, seed=40)})
    assert len(drawn) == len(plan) > 3
    assert drawn[0].start_s == 0 and drawn[-1].end_s == pytest.approx(seconds, abs=1e-4)
    for before, after in zip(drawn, drawn[1:], strict=False):
        assert after.start_s == pytest.approx(before.end_s, abs=1e-4)  # no gap, no overlap
        assert after.crossfade_s == pytest.approx(0.4) and after.context_s == pytest.approx(0.8)
    assert [w.seed for w in drawn] == [40 + i for i in range(len(plan))]
