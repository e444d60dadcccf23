"""Playback of a finished song or clip: QtMultimedia's QMediaPlayer behind a transport bar
(play/pause, seek slider with the time, loop, volume), shared by the Music and Video tabs.

QtMultimedia comes with the full PySide6 package (docs/FIELD-NOTES.md §1). On Linux it plays
through Qt's bundled FFmpeg and needs ``libpulse.so.0``; with no sound card (a server, CI, Xvfb)
it logs "No audio device detected" and still plays: the position runs on the system clock. Where
the module cannot load at all, ``multimedia_available()`` is False and the tabs say so and offer
the system's player instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

DEFAULT_VOLUME = 80
"""Percent on the slider, on a perceptual (logarithmic) scale."""


@functools.cache
def multimedia_available() -> bool:
    try:
        import PySide6.QtMultimedia  # noqa: F401 - the shared library loads here, or fails (libpulse)
    except ImportError:
        return False
    return True


def format_time(ms: int) -> str:
    seconds = max(0, ms) // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


class PlayerBar(QWidget):
    """A QMediaPlayer with its controls. ``player`` is None where QtMultimedia is missing."""

    position_changed = Signal(float)
    """Seconds into the media, as it plays or after a seek."""
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = self.audio = None
        self._seeking = False
        self._build()
        if multimedia_available():
            self._make_player()
        self._set_loaded(False)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.play_button = QPushButton("Play", self, toolTip="Play or pause")
        self.seek_slider = QSlider(Qt.Orientation.Horizontal, self, toolTip="Drag to seek")
        self.time_label = QLabel("0:00 / 0:00", self)
        self.loop_box = QCheckBox("Loop", self, toolTip="Start again at the end")
        self.volume_slider = QSlider(Qt.Orientation.Horizontal, self, toolTip="Volume")
        self.volume_slider.setRange(0, 100)
        self.volume_slider.setValue(DEFAULT_VOLUME)
        self.volume_slider.setMaximumWidth(100)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.play_button)
        row.addWidget(self.seek_slider, 1)
        row.addWidget(self.time_label)
        row.addWidget(self.loop_box)
        row.addWidget(QLabel("Volume", self))
        row.addWidget(self.volume_slider)

    def _make_player(self) -> None:
        from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer

        self.player = QMediaPlayer(self)
        self.audio = QAudioOutput(self)
        self.player.setAudioOutput(self.audio)
        self._apply_volume(self.volume_slider.value())
        self.play_button.clicked.connect(self.toggle)
        self.seek_slider.sliderPressed.connect(lambda: setattr(self, "_seeking", True))
        self.seek_slider.sliderReleased.connect(self._seek_to_slider)
        self.seek_slider.sliderMoved.connect(lambda ms: self._show_time(ms))
        self.loop_box.toggled.connect(self._apply_loop)
        self.volume_slider.valueChanged.connect(self._apply_volume)
        self.player.durationChanged.connect(self._on_duration)
        self.player.positionChanged.connect(self._on_position)
        self.player.playbackStateChanged.connect(self._on_state)
        self.player.errorOccurred.connect(self._on_error)

    # -- actions --------------------------------------------------------------------------

    def load(self, path: str | Path, autoplay: bool = False) -> None:
        if self.player is None:
            return
        self.player.stop()
        self.player.setSource(QUrl.fromLocalFile(str(path)))
        self._set_loaded(True)
        if autoplay:
            self.player.play()

    def unload(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player.setSource(QUrl())
        self._set_loaded(False)

    def toggle(self) -> None:
        if self.player is None or self.player.source().isEmpty():
            return
        if self.is_playing():
            self.player.pause()
        else:
            self.player.play()

    def seek(self, seconds: float) -> None:
        if self.player is not None and not self.player.source().isEmpty():
            self.player.setPosition(round(seconds * 1000))

    def is_playing(self) -> bool:
        if self.player is None:
            return False
        from PySide6.QtMultimedia import QMediaPlayer

        return self.player.playbackState() == QMediaPlayer.PlaybackState.PlayingState

    def set_video_output(self, widget) -> None:
        if self.player is not None:
            self.player.setVideoOutput(widget)

    # -- player -> widgets ----------------------------------------------------------------

    def _set_loaded(self, loaded: bool) -> None:
        for widget in (self.play_button, self.seek_slider):
            widget.setEnabled(loaded and self.player is not None)
        if not loaded:
            self.seek_slider.setRange(0, 0)
            self.time_label.setText("0:00 / 0:00")

    def _seek_to_slider(self) -> None:
        self._seeking = False
        self.player.setPosition(self.seek_slider.value())

    def _apply_loop(self, loop: bool) -> None:
        from PySide6.QtMultimedia import QMediaPlayer

        self.player.setLoops(QMediaPlayer.Loops.Infinite if loop else QMediaPlayer.Loops.Once)

    def _apply_volume(self, percent: int) -> None:
        from PySide6.QtMultimedia import QtAudio

        # The slider is perceptual; the output wants a linear gain (Qt's own volume example does this).
        self.audio.setVolume(
            QtAudio.convertVolume(
                percent / 100,
                QtAudio.VolumeScale.LogarithmicVolumeScale,
                QtAudio.VolumeScale.LinearVolumeScale,
            )
        )

    def _on_duration(self, ms: int) -> None:
        self.seek_slider.setRange(0, ms)
        self._show_time(self.player.position())

    def _on_position(self, ms: int) -> None:
        if not self._seeking:
            self.seek_slider.setValue(ms)
            self._show_time(ms)
        self.position_changed.emit(ms / 1000)

    def _show_time(self, ms: int) -> None:
        self.time_label.setText(f"{format_time(ms)} / {format_time(self.player.duration())}")

    def _on_state(self, state) -> None:
        self.play_button.setText("Pause" if self.is_playing() else "Play")

    def _on_error(self, error, message: str) -> None:
        # Stop at once: with Loop on, a file FFmpeg cannot read would otherwise fail over and over.
        self.player.stop()
        self.failed.emit(f"cannot play this file: {message or error.name}")
