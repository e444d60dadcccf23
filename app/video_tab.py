"""The Video tab: settings on the left, the render (per-step previews, progress with ETA, playback of
the result) on the right, export buttons below. All logic lives in ``VideoState``; playback decodes
the exported file (PIL for GIF/WebP, imageio for MP4) and cycles its frames in a QLabel."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QImage, QPixmap
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

from app.form_binding import spin_for, tooltip
from app.video_state import VideoState
from models.catalog import HOW_TO_ADD_MODELS
from workers.errors import HearthError
from workers.protocol import MAX_SLICES, VideoRequest
from workers.schema import params

EXPORT_FILTERS = {"mp4": "MP4 video (*.mp4)", "gif": "Animated GIF (*.gif)", "webp": "Animated WebP (*.webp)"}
VIEW_SIDE = 320


class VideoTab(QWidget):
    """The Video sub-app, bound to a ``VideoState`` that talks to the bridge."""

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = VideoState(bridge)
        self.frames: list[QPixmap] = []
        self.frame_index = 0
        self.player = QTimer(self, interval=125)
        self.player.timeout.connect(self._next_frame)
        layout = QHBoxLayout(self)
        layout.addWidget(self._build_settings(), 0)
        layout.addWidget(self._build_view(), 1)
        self._bind()

    # -- layout ---------------------------------------------------------------------------

    def _build_settings(self) -> QWidget:
        panel = QWidget(self)
        form = QFormLayout(panel)
        s = self.state.settings
        self.prompt = QPlainTextEdit(panel, placeholderText="Describe the clip")
        self.prompt.setFixedHeight(80)
        self.negative_prompt = QLineEdit(panel, placeholderText="What to avoid")
        self.frames_box = spin_for(VideoRequest, "frames", panel, value=s.frames)
        self.fps_box = spin_for(VideoRequest, "fps", panel, value=s.fps)
        self.width_box = spin_for(VideoRequest, "width", panel, value=s.width)
        self.height_box = spin_for(VideoRequest, "height", panel, value=s.height)
        self.steps_box = spin_for(VideoRequest, "steps", panel, value=s.steps)
        self.guidance_box = spin_for(VideoRequest, "guidance", panel, value=s.guidance)
        self.seed_box = spin_for(VideoRequest, "seed", panel, value=s.seed)
        self.model_picker = QComboBox(panel, editable=True, toolTip=HOW_TO_ADD_MODELS)
        for model_id, title in self.state.models():
            self.model_picker.addItem(title, model_id)
        self.memory_mode = QComboBox(panel)
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
        self.generate_button = QPushButton("Generate", panel)
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
        self.playback = QLabel("The finished clip plays here", panel, alignment=Qt.AlignmentFlag.AlignCenter)
        self.playback.setMinimumSize(VIEW_SIDE, VIEW_SIDE)
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
        layout.addLayout(row, 1)
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
        self.generate_button.clicked.connect(self.generate)
        self.stop_button.clicked.connect(state.stop)
        self.memory_mode.currentIndexChanged.connect(
            lambda: self.slices_box.setEnabled(self.memory_mode.currentData() == "manual")
        )
        for fmt, button in self.export_buttons.items():
            button.clicked.connect(lambda _=False, fmt=fmt: self._export(fmt))

    def _collect(self) -> None:
        """Copy the form into the state just before a render (the widgets are the source of truth)."""
        manual = self.memory_mode.currentData() == "manual"
        text = self.model_picker.currentText()
        model = (
            self.model_picker.currentData()
            if text == self.model_picker.itemText(self.model_picker.currentIndex())
            else text
        )
        self.state.update_settings(
            prompt=self.prompt.toPlainText(),
            negative_prompt=self.negative_prompt.text(),
            frames=self.frames_box.value(),
            fps=self.fps_box.value(),
            width=self.width_box.value(),
            height=self.height_box.value(),
            steps=self.steps_box.value(),
            guidance=self.guidance_box.value(),
            seed=self.seed_box.value(),
            model=model or text,
            step_rehash=self.rehash_box.isChecked(),
            manual_slices=self.slices_box.value() if manual else 0,
            format=self.format_picker.currentData(),
        )

    # -- actions --------------------------------------------------------------------------

    def generate(self) -> None:
        self._collect()
        self.state.generate()

    def play(self, path: str) -> None:
        """Decode the result and cycle its frames at the clip's frame rate."""
        from workers.video.export import read_frames

        try:
            arrays, fps = read_frames(path)
        except (OSError, ValueError, RuntimeError) as exc:
            self.status_label.setText(f"cannot play {path}: {exc}")
            return
        self.frames = [
            _pixmap(a).scaled(VIEW_SIDE, VIEW_SIDE, Qt.AspectRatioMode.KeepAspectRatio) for a in arrays
        ]
        self.frame_index = 0
        self.player.setInterval(max(10, round(1000 / max(fps, 1))))
        self._next_frame()
        self.player.start()
        for button in self.export_buttons.values():
            button.setEnabled(True)

    def _next_frame(self) -> None:
        if self.frames:
            self.playback.setPixmap(self.frames[self.frame_index % len(self.frames)])
            self.frame_index += 1

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


def _pixmap(array) -> QPixmap:
    height, width = array.shape[:2]
    image = QImage(array.tobytes(), width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())
