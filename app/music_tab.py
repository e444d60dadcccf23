"""The Music tab: prompt, length, chords/tempo/meter and sampling on the left; the song on the right.

Laid out like the MusicGen demos users know, plus the chord and tempo row: chords one per bar
("C G Am F"), BPM and meter. The result is drawn as its true waveform (the min and max of
the samples under each pixel column) with, for a long piece, the generation windows it was made
of; it plays in the tab (``app/media_player.py``: play/pause, seek, loop, volume; a click on the
waveform seeks too), opens in the system's player, and can be saved as WAV, FLAC or OGG with its
parameters kept in the tags. All logic lives in ``MusicState``.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.form_binding import add_generate_shortcut, compact_picker, request_from_form, spin_for
from app.media_player import PlayerBar
from app.music_state import MusicState, music_models
from app.waveform import GenerationWindow, column_peaks
from models.catalog import HOW_TO_ADD_MODELS
from workers.errors import HearthError
from workers.protocol import MusicRequest
from workers.schema import default_of

METERS = ("4/4", "3/4", "6/8", "2/4", "5/4", "7/8", "12/8")
SAVE_FILTER = "WAV (*.wav);;FLAC (*.flac);;OGG Vorbis (*.ogg)"
NO_PLAYBACK = (
    "Playback needs QtMultimedia (the full PySide6 package, and libpulse on Linux), which is not "
    'installed here: use "Open in system player".'
)
BACKGROUND = QColor("#1e1e24")
WAVE = QColor("#5ab0f0")
PARTIAL_WAVE = QColor("#e0a040")
PLAYHEAD = QColor("#f0f0f0")
BAND_TINTS = (QColor(255, 255, 255, 14), QColor(90, 176, 240, 34))
SEAM = QColor(224, 160, 64, 90)
LABEL = QColor("#b8b8c0")


class WaveformView(QWidget):
    """Draws a song: min/max per pixel column, generation windows, the playhead; a click seeks."""

    seek_requested = Signal(float)
    """Seconds into the song the user clicked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.song = None
        self.position_s = 0.0
        self._peaks: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self.setMinimumHeight(120)
        self.setMouseTracking(True)

    def show_song(self, song) -> None:
        """``song`` has ``audio`` (channels, samples), ``seconds``, ``partial`` and ``windows``."""
        self.song, self._peaks, self.position_s = song, None, 0.0
        self.update()

    def set_position(self, seconds: float) -> None:
        self.position_s = seconds
        self.update()

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """The (min, max) of each pixel column at the current width, cached until it changes."""
        if self.song is None:
            return np.zeros(0), np.zeros(0)
        width = max(1, self.width())
        if self._peaks is None or self._peaks[0] != width:
            self._peaks = (width, column_peaks(self.song.audio, width))
        return self._peaks[1]

    def window_at(self, x: float) -> GenerationWindow | None:
        if not self.song or not self.song.windows:
            return None
        seconds = self._seconds_at(x)
        return next((w for w in self.song.windows if w.start_s <= seconds < w.end_s), self.song.windows[-1])

    def x_of(self, seconds: float) -> float:
        return seconds / self.song.seconds * self.width() if self.song and self.song.seconds else 0.0

    def _seconds_at(self, x: float) -> float:
        return min(max(x / max(1, self.width()), 0.0), 1.0) * (self.song.seconds if self.song else 0.0)

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self.song is not None:
            self._paint_windows(painter)
        middle, half = self.height() / 2, self.height() / 2 - 4
        painter.setPen(QPen(QColor("#444"), 1))
        painter.drawLine(QPointF(0, middle), QPointF(self.width(), middle))
        lows, highs = self.columns()
        colour = PARTIAL_WAVE if self.song is not None and self.song.partial else WAVE
        painter.setPen(QPen(colour, 1))
        for x, (low, high) in enumerate(zip(lows.tolist(), highs.tolist(), strict=True)):
            painter.drawLine(QPointF(x + 0.5, middle - high * half), QPointF(x + 0.5, middle - low * half))
        if self.song is not None and self.position_s > 0:
            painter.setPen(QPen(PLAYHEAD, 1))
            x = self.x_of(self.position_s)
            painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        painter.end()

    def _paint_windows(self, painter: QPainter) -> None:
        windows = self.song.windows
        if len(windows) < 2:
            return  # one call made the whole song: nothing to tell apart
        painter.setPen(QPen(LABEL, 1))
        for window in windows:
            left, right = self.x_of(window.start_s), self.x_of(window.end_s)
            painter.fillRect(QRectF(left, 0, right - left, self.height()), BAND_TINTS[window.index % 2])
            if window.crossfade_s:
                seam = QRectF(self.x_of(window.start_s - window.crossfade_s), 0, 0, self.height())
                seam.setRight(left)
                painter.fillRect(seam, QBrush(SEAM, Qt.BrushStyle.BDiagPattern))
            painter.drawText(QRectF(left + 3, 2, max(0.0, right - left - 3), 14), str(window.index + 1))

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.song is not None and event.button() == Qt.MouseButton.LeftButton:
            self.seek_requested.emit(self._seconds_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        window = self.window_at(event.position().x())
        if window is not None:
            QToolTip.showText(event.globalPosition().toPoint(), window.describe(len(self.song.windows)), self)


class MusicTab(QWidget):
    """The Music sub-app, bound to a ``MusicState`` that talks to the bridge."""

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = MusicState(bridge)
        layout = QHBoxLayout(self)
        layout.addWidget(self._build_controls(), 0)
        layout.addWidget(self._build_result(), 1)
        self._bind()
        add_generate_shortcut(self, self.generate)

    @property
    def player(self):
        """The QMediaPlayer, or None where QtMultimedia cannot load."""
        return self.player_bar.player

    # -- layout ---------------------------------------------------------------------------

    def _build_controls(self) -> QWidget:
        panel = QWidget(self)
        panel.setMaximumWidth(380)
        form = QFormLayout(panel)
        self.prompt = QPlainTextEdit(panel, placeholderText="lofi beat with soft piano and vinyl crackle")
        self.prompt.setFixedHeight(80)
        self.seconds = spin_for(MusicRequest, "seconds", panel, suffix=" s")
        self.chords = QLineEdit(panel, placeholderText="C G Am F  (one chord per bar, optional)")
        self.bpm = spin_for(MusicRequest, "bpm", panel, suffix=" BPM")
        self.meter = QComboBox(panel)
        self.meter.addItems(METERS)
        self.meter.setCurrentText(default_of(MusicRequest, "meter"))
        self.guidance = spin_for(MusicRequest, "guidance", panel)
        self.temperature = spin_for(MusicRequest, "temperature", panel)
        self.seed = spin_for(MusicRequest, "seed", panel)
        self.window_seconds = spin_for(MusicRequest, "window_seconds", panel, suffix=" s")
        self.model_picker = compact_picker(QComboBox(panel, editable=True, toolTip=HOW_TO_ADD_MODELS))
        for model_id, title in music_models():
            self.model_picker.addItem(title, model_id)
        self.chord_note = QLabel(
            "Chords and BPM: MusicGen-Melody follows them as chroma (the harmony changes on "
            "the bar lines); MusicGen and Stable Audio Open read them as words in the prompt. "
            "Stable Audio Open makes one clip of up to 47 s.",
            panel,
            wordWrap=True,
        )
        for label, widget in (
            ("Prompt", self.prompt),
            ("Duration", self.seconds),
            ("Chords", self.chords),
            ("Tempo", self.bpm),
            ("Meter", self.meter),
            ("Guidance", self.guidance),
            ("Temperature", self.temperature),
            ("Seed", self.seed),
            ("Window", self.window_seconds),
            ("Model", self.model_picker),
        ):
            form.addRow(label, widget)
        form.addRow(self.chord_note)
        return panel

    def _build_result(self) -> QWidget:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate", panel, toolTip="Generate (Ctrl+Enter)")
        self.cancel_button = QPushButton("Cancel", panel, enabled=False)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar(panel, minimum=0, maximum=1, value=0)
        self.status_label = QLabel(panel, wordWrap=True)
        self.waveform = WaveformView(panel)
        self.length_label = QLabel(panel)
        self.windows_label = QLabel(panel, wordWrap=True)
        self.player_bar = PlayerBar(panel)
        files = QHBoxLayout()
        self.system_player_button = QPushButton("Open in system player", panel, enabled=False)
        self.save_button = QPushButton("Save as...", panel, enabled=False)
        for button in (self.system_player_button, self.save_button):
            files.addWidget(button)
        files.addStretch(1)
        self.playback_note = QLabel("" if self.player else NO_PLAYBACK, panel, wordWrap=True)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.waveform, 1)
        layout.addWidget(self.length_label)
        layout.addWidget(self.windows_label)
        layout.addWidget(self.player_bar)
        layout.addLayout(files)
        layout.addWidget(self.playback_note)
        return panel

    def _bind(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.state.cancel)
        self.system_player_button.clicked.connect(self.open_in_system_player)
        self.save_button.clicked.connect(self.save_as)
        self.waveform.seek_requested.connect(self.player_bar.seek)
        self.player_bar.position_changed.connect(self.waveform.set_position)
        self.player_bar.failed.connect(self.playback_note.setText)
        self.state.busy_changed.connect(self._on_busy)
        self.state.progress_changed.connect(self._on_progress)
        self.state.status_changed.connect(self.status_label.setText)
        self.state.song_changed.connect(self._on_song)

    def form_fields(self) -> dict[str, QWidget]:
        """The fields remembered between launches (``Settings.forms["music"]``)."""
        return {
            "prompt": self.prompt,
            "seconds": self.seconds,
            "chords": self.chords,
            "bpm": self.bpm,
            "meter": self.meter,
            "guidance": self.guidance,
            "temperature": self.temperature,
            "seed": self.seed,
            "window_seconds": self.window_seconds,
            "model": self.model_picker,
        }

    # -- actions --------------------------------------------------------------------------

    def request(self) -> MusicRequest:
        return request_from_form(MusicRequest, self.form_fields(), model=self.model_id())

    def model_id(self) -> str:
        """The catalog id behind a picked title, or what the user typed (hub id, folder)."""
        index = self.model_picker.findText(self.model_picker.currentText())
        return self.model_picker.itemData(index) if index >= 0 else self.model_picker.currentText().strip()

    def generate(self) -> None:
        if self.state.busy:
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.state.generate(self.request())

    def play(self) -> None:
        """Play the song from where it is (the start, for a new one)."""
        if self.player is not None and self.state.song and not self.player_bar.is_playing():
            self.player_bar.toggle()

    def open_in_system_player(self) -> None:
        if self.state.song:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.state.song.path)))

    def save_as(self) -> None:
        target, _ = QFileDialog.getSaveFileName(self, "Save music as", "", SAVE_FILTER)
        if not target:
            return
        try:
            saved = self.state.save_as(target)
        except (HearthError, OSError) as exc:
            QMessageBox.warning(self, "Save as", str(exc))
            return
        self.status_label.setText(f"Saved {saved}")

    # -- state -> widgets -----------------------------------------------------------------

    def _on_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(step)

    def _on_song(self) -> None:
        song = self.state.song
        self.waveform.show_song(song)
        partial = " (partial: stopped early)" if song and song.partial else ""
        self.length_label.setText(
            f"{song.seconds:.2f} s, {song.sample_rate} Hz{partial}  {song.path}" if song else ""
        )
        self.windows_label.setText(_describe_windows(song.windows) if song else "")
        for button in (self.system_player_button, self.save_button):
            button.setEnabled(song is not None)
        if song is None:
            self.player_bar.unload()
        else:
            self.player_bar.load(song.path)


def _describe_windows(windows: list[GenerationWindow]) -> str:
    if len(windows) < 2:
        return ""
    spans = ", ".join(f"{w.index + 1}: {w.start_s:.1f}–{w.end_s:.1f} s" for w in windows)
    return (
        f"Made in {len(windows)} generation windows, each continuing the song so far ({spans}); "
        "hatched: where two windows were crossfaded. Point at the waveform for a window's seed."
    )
