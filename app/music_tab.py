"""The Music tab: prompt, length, chords/tempo/meter and sampling on the left; the song on the right.

Laid out like the MusicGen demos users know, plus the chord and tempo row: chords one per bar
("C G Am F"), BPM and meter. The result is drawn as a waveform, played with QtMultimedia where
it is installed (the full PySide6 package and libpulse on Linux) and otherwise opened in the
system's player, and can be saved as WAV, FLAC or OGG with its parameters kept in the tags.
All logic lives in ``MusicState``.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QPainter, QPen
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
    QVBoxLayout,
    QWidget,
)

from app.form_binding import spin_for
from app.music_state import MusicState, Song, music_models
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


class WaveformView(QWidget):
    """Draws a song's min/max envelope, one vertical line per pixel column."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.song: Song | None = None
        self.setMinimumHeight(120)

    def show_song(self, song: Song | None) -> None:
        self.song = song
        self.update()

    def columns(self) -> tuple:
        return self.song.peaks(max(1, self.width())) if self.song else ((), ())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#1e1e24"))
        middle, half = self.height() / 2, self.height() / 2 - 4
        painter.setPen(QPen(QColor("#444"), 1))
        painter.drawLine(QPointF(0, middle), QPointF(self.width(), middle))
        lows, highs = self.columns()
        painter.setPen(QPen(QColor("#e0a040" if self.song and self.song.partial else "#5ab0f0"), 1))
        for x, (low, high) in enumerate(zip(lows, highs, strict=False)):
            painter.drawLine(QPointF(x, middle - high * half), QPointF(x, middle - low * half))
        painter.end()


class MusicTab(QWidget):
    """The Music sub-app, bound to a ``MusicState`` that talks to the bridge."""

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = MusicState(bridge)
        self.player = _media_player(self)
        layout = QHBoxLayout(self)
        layout.addWidget(self._build_controls(), 0)
        layout.addWidget(self._build_result(), 1)
        self._bind()

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
        self.model_picker = QComboBox(panel, editable=True, toolTip=HOW_TO_ADD_MODELS)
        for model_id, title in music_models():
            self.model_picker.addItem(title, model_id)
        self.chord_note = QLabel(
            "Chords and BPM steer MusicGen-Melody through its chroma input; other "
            "models read them as words in the prompt.",
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
            ("Model", self.model_picker),
        ):
            form.addRow(label, widget)
        form.addRow(self.chord_note)
        return panel

    def _build_result(self) -> QWidget:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate", panel)
        self.cancel_button = QPushButton("Cancel", panel, enabled=False)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar(panel, minimum=0, maximum=1, value=0)
        self.status_label = QLabel(panel, wordWrap=True)
        self.waveform = WaveformView(panel)
        self.length_label = QLabel(panel)
        playback = QHBoxLayout()
        self.play_button = QPushButton("Play", panel, enabled=False)
        self.system_player_button = QPushButton("Open in system player", panel, enabled=False)
        self.save_button = QPushButton("Save as...", panel, enabled=False)
        for button in (self.play_button, self.system_player_button, self.save_button):
            playback.addWidget(button)
        self.playback_note = QLabel("" if self.player else NO_PLAYBACK, panel, wordWrap=True)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.waveform, 1)
        layout.addWidget(self.length_label)
        layout.addLayout(playback)
        layout.addWidget(self.playback_note)
        return panel

    def _bind(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.state.cancel)
        self.play_button.clicked.connect(self.play)
        self.system_player_button.clicked.connect(self.open_in_system_player)
        self.save_button.clicked.connect(self.save_as)
        self.state.busy_changed.connect(self._on_busy)
        self.state.progress_changed.connect(self._on_progress)
        self.state.status_changed.connect(self.status_label.setText)
        self.state.song_changed.connect(self._on_song)

    # -- actions --------------------------------------------------------------------------

    def request(self) -> MusicRequest:
        return MusicRequest(
            prompt=self.prompt.toPlainText(),
            seconds=self.seconds.value(),
            chords=self.chords.text().strip(),
            bpm=self.bpm.value(),
            meter=self.meter.currentText(),
            guidance=self.guidance.value(),
            temperature=self.temperature.value(),
            seed=self.seed.value(),
            model=self.model_id(),
        )

    def model_id(self) -> str:
        """The catalog id behind a picked title, or what the user typed (hub id, folder)."""
        index = self.model_picker.findText(self.model_picker.currentText())
        return self.model_picker.itemData(index) if index >= 0 else self.model_picker.currentText().strip()

    def generate(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.state.generate(self.request())

    def play(self) -> None:
        if self.player and self.state.song:
            self.player.setSource(QUrl.fromLocalFile(str(self.state.song.path)))
            self.player.play()

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
        for button in (self.system_player_button, self.save_button):
            button.setEnabled(song is not None)
        self.play_button.setEnabled(song is not None and self.player is not None)


def _media_player(parent: QWidget):
    """A QMediaPlayer with an audio output, or None where QtMultimedia cannot load."""
    try:
        from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer
    except ImportError:
        return None
    player = QMediaPlayer(parent)
    player.setAudioOutput(QAudioOutput(parent))
    return player
