"""The Video tab: settings on the left, the render (per-step previews, progress with ETA, playback of
the result) on the right, export buttons below. All logic lives in ``VideoState``. The finished clip
plays in a QVideoWidget through ``app/media_player.py`` (play/pause, seek, loop, volume). Qt's
FFmpeg reads MP4 and GIF but not animated WebP, so a WebP clip plays from an MP4 copy made for
playback only, in a temporary folder the tab removes when it closes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDir, Qt, QTemporaryDir, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.form_binding import add_generate_shortcut, compact_picker, request_from_form, spin_for, tooltip
from app.media_player import PlayerBar, multimedia_available
from app.video_state import VideoState
from models.catalog import HOW_TO_ADD_MODELS
from workers.errors import HearthError
from workers.protocol import MAX_SLICES, VideoRequest
from workers.schema import params

EXPORT_FILTERS = {"mp4": "MP4 video (*.mp4)", "gif": "Animated GIF (*.gif)", "webp": "Animated WebP (*.webp)"}
VIEW_SIDE = 320
NO_PLAYBACK = (
    "Playback needs QtMultimedia (the full PySide6 package, and libpulse on Linux), which is not "
    'installed here: use "Open in system player".'
)
UNPLAYABLE_SUFFIXES = (".webp",)
"""Clips Qt's FFmpeg cannot read (FFmpeg 7.1 skips animated WebP's ANIM/ANMF chunks)."""


class VideoTab(QWidget):
    """The Video sub-app, bound to a ``VideoState`` that talks to the bridge."""

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = VideoState(bridge)
        self.playing_path = ""
        """The file the player has: the result, or its MP4 playback copy."""
        self._playback_dir: QTemporaryDir | None = None
        layout = QHBoxLayout(self)
        layout.addWidget(self._build_settings(), 0)
        layout.addWidget(self._build_view(), 1)
        self._bind()
        add_generate_shortcut(self, self.generate)

    @property
    def player(self):
        """The QMediaPlayer, or None where QtMultimedia cannot load."""
        return self.player_bar.player

    # -- layout ---------------------------------------------------------------------------

    def _build_settings(self) -> QWidget:
        panel = QWidget(self)
        form = QFormLayout(panel)
        self.prompt = QPlainTextEdit(panel, placeholderText="Describe the clip")
        self.prompt.setFixedHeight(80)
        self.negative_prompt = QLineEdit(panel, placeholderText="What to avoid")
        self.image_path = QLineEdit(panel, placeholderText="Image file (image-to-video models only)")
        self.image_path.setToolTip(tooltip(params(VideoRequest)["image"]))
        self.frames_box = spin_for(VideoRequest, "frames", panel)
        self.fps_box = spin_for(VideoRequest, "fps", panel)
        self.width_box = spin_for(VideoRequest, "width", panel)
        self.height_box = spin_for(VideoRequest, "height", panel)
        self.steps_box = spin_for(VideoRequest, "steps", panel)
        self.guidance_box = spin_for(VideoRequest, "guidance", panel)
        self.seed_box = spin_for(VideoRequest, "seed", panel)
        self.model_picker = compact_picker(QComboBox(panel, editable=True, toolTip=HOW_TO_ADD_MODELS))
        for model_id, title in self.state.models():
            self.model_picker.addItem(title, model_id)
        self.memory_mode = compact_picker(QComboBox(panel))
        self.memory_mode.addItem("Auto (fit the memory available)", "auto")
        self.memory_mode.addItem("Manual slices", "manual")
        self.slices_box = QSpinBox(panel, minimum=1, maximum=MAX_SLICES, value=4)
        self.slices_box.setEnabled(False)
        self.rehash_box = QCheckBox("Step Rehash (faster, approximate)", panel)
        self.rehash_box.setToolTip(tooltip(params(VideoRequest)["step_rehash"]))
        self.format_picker = QComboBox(panel)
        for fmt in EXPORT_FILTERS:
            self.format_picker.addItem(fmt.upper(), fmt)
        for label, widget in (
            ("Prompt", self.prompt),
            ("Negative prompt", self.negative_prompt),
            ("First frame", self.image_path),
            ("Frames", self.frames_box),
            ("FPS", self.fps_box),
            ("Width", self.width_box),
            ("Height", self.height_box),
            ("Steps", self.steps_box),
            ("Guidance", self.guidance_box),
            ("Seed", self.seed_box),
            ("Model", self.model_picker),
            ("Memory", self.memory_mode),
            ("Slices", self.slices_box),
            ("", self.rehash_box),
            ("Format", self.format_picker),
        ):
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate", panel, toolTip="Generate (Ctrl+Enter)")
        self.stop_button = QPushButton("Stop", panel, enabled=False)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        form.addRow(buttons)
        return panel

    def _build_view(self) -> QWidget:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        self.preview = QLabel("Step previews appear here", panel, alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(VIEW_SIDE // 2, VIEW_SIDE // 2)
        self.player_bar = PlayerBar(panel)
        self.playback = self._video_view(panel)
        self.playback.setMinimumSize(VIEW_SIDE, VIEW_SIDE)
        self.playback_note = QLabel("" if self.player else NO_PLAYBACK, panel, wordWrap=True)
        self.system_player_button = QPushButton("Open in system player", panel, enabled=False)
        self.progress = QProgressBar(panel)
        self.eta_label = QLabel(panel)
        self.status_label = QLabel(panel, wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.preview)
        row.addWidget(self.playback, 1)
        exports = QHBoxLayout()
        self.export_buttons = {
            fmt: QPushButton(f"Export {fmt.upper()}", panel, enabled=False) for fmt in EXPORT_FILTERS
        }
        for button in self.export_buttons.values():
            exports.addWidget(button)
        exports.addWidget(self.system_player_button)
        layout.addLayout(row, 1)
        layout.addWidget(self.player_bar)
        layout.addWidget(self.playback_note)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.status_label)
        layout.addLayout(exports)
        return panel

    # -- binding --------------------------------------------------------------------------

    def _bind(self) -> None:
        state = self.state
        state.busy_changed.connect(self._on_busy)
        state.progress_changed.connect(self._on_progress)
        state.preview_changed.connect(self._on_preview)
        state.status_changed.connect(self.status_label.setText)
        state.result_changed.connect(self.play)
        self.player_bar.failed.connect(self.playback_note.setText)
        self.system_player_button.clicked.connect(self.open_in_system_player)
        self.generate_button.clicked.connect(self.generate)
        self.stop_button.clicked.connect(state.stop)
        self.memory_mode.currentIndexChanged.connect(
            lambda: self.slices_box.setEnabled(self.memory_mode.currentData() == "manual")
        )
        for fmt, button in self.export_buttons.items():
            button.clicked.connect(lambda _=False, fmt=fmt: self._export(fmt))

    def form_request(self) -> VideoRequest:
        """The form as the next render's request (the widgets are the source of truth)."""
        manual = self.memory_mode.currentData() == "manual"
        return request_from_form(
            VideoRequest,
            self.form_fields(),
            memory_mode=f"slices:{self.slices_box.value()}" if manual else "auto",
            image=self.image_path.text().strip(),
        )

    # -- actions --------------------------------------------------------------------------

    def generate(self) -> None:
        self.state.generate(self.form_request())

    def play(self, path: str) -> None:
        """Load the finished clip into the player and start it."""
        for button in (*self.export_buttons.values(), self.system_player_button):
            button.setEnabled(True)
        if self.player is None:
            return
        try:
            self.playing_path = self._playable(Path(path))
        except (HearthError, OSError, ValueError, RuntimeError) as exc:
            self.playback_note.setText(f"cannot play {Path(path).name}: {exc}")
            return
        self.playback_note.setText("")
        self.player_bar.load(self.playing_path, autoplay=True)

    def _playable(self, path: Path) -> str:
        """The clip itself, or an MP4 copy of it where Qt's FFmpeg cannot read its format."""
        if path.suffix.lower() not in UNPLAYABLE_SUFFIXES:
            return str(path)
        from workers.video.export import export_video, read_frames

        if self._playback_dir is None:
            self._playback_dir = QTemporaryDir(QDir.tempPath() + "/hearth-playback-XXXXXX")
        frames, fps = read_frames(path)
        copy = Path(self._playback_dir.path()) / f"{path.stem}.mp4"
        return str(
            export_video(frames, copy, max(1, round(fps)), {"playback_copy_of": str(path)}, sidecar=False)
        )

    def open_in_system_player(self) -> None:
        if self.state.result:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.state.result))

    def form_fields(self) -> dict[str, QWidget]:
        """The fields remembered between launches (``Settings.forms["video"]``)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "frames": self.frames_box,
            "fps": self.fps_box,
            "width": self.width_box,
            "height": self.height_box,
            "steps": self.steps_box,
            "guidance": self.guidance_box,
            "seed": self.seed_box,
            "model": self.model_picker,
            "memory_mode": self.memory_mode,
            "slices": self.slices_box,
            "step_rehash": self.rehash_box,
            "format": self.format_picker,
        }

    def _video_view(self, parent: QWidget) -> QWidget:
        if not multimedia_available():
            return QLabel("The finished clip plays here", parent, alignment=Qt.AlignmentFlag.AlignCenter)
        from PySide6.QtMultimediaWidgets import QVideoWidget

        view = QVideoWidget(parent)
        self.player_bar.set_video_output(view)
        return view

    def _export(self, fmt: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export video", f"video.{fmt}", EXPORT_FILTERS[fmt])
        if path:
            try:
                self.state.export_as(path)
            except (HearthError, OSError) as exc:
                self.status_label.setText(f"export failed: {exc}")

    def _on_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)

    def _on_progress(self, step: int, total: int, eta: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)
        self.eta_label.setText(eta)

    def _on_preview(self, png: bytes) -> None:
        pixmap = QPixmap()
        if pixmap.loadFromData(png, "PNG"):
            self.preview.setPixmap(
                pixmap.scaled(VIEW_SIDE // 2, VIEW_SIDE // 2, Qt.AspectRatioMode.KeepAspectRatio)
            )
