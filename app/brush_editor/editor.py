"""The Layered Diffusion Brushes editor tab: ``BrushEditor(bridge)``.

It talks to the image worker only through the bridge: ``BrushBaseRequest`` to generate a base or
import a photo, ``BrushRenderRequest`` after every edit. A new edit cancels the render still in
flight (latest wins) and events of stale jobs are ignored. Projects autosave a moment after
each change; the cached trajectory inside them stays opaque bytes here (no torch in the GUI).
"""

from __future__ import annotations

import io
import itertools
import time
import uuid
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.brush_editor.canvas import BrushCanvas
from app.brush_editor.commands import PaintStroke
from app.brush_editor.layer_panel import LayerPanel
from app.brush_editor.state import BrushDocumentState, ToolState, image_png
from app.form_binding import add_generate_shortcut, spin_for
from app.job import Job, bind_job
from workers.brushes.project_io import MEDIA_TYPE, SUFFIX, project_path_for, read_project, write_project
from workers.errors import BadInput
from workers.protocol import BrushBaseRequest, BrushRenderRequest, JobState

RENDER_DELAY_MS = 120
AUTOSAVE_DELAY_MS = 1500
SIZES = (64, 128, 256, 512)


class BrushEditor(QWidget):
    """Layered brush editing of a generated or imported image."""

    saved = Signal(str)

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.document, self.tool = BrushDocumentState(self), ToolState(self)
        self.undo = QUndoStack(self)
        self.base_job: Job | None = None
        self.render_job: Job | None = None
        self._revisions = itertools.count(int(time.time() * 1000))
        self.canvas = BrushCanvas(self.document, self.tool)
        self.panel = LayerPanel(self.document, self.undo)
        self.status = QLabel("")
        self._render_timer = _single_shot(self, RENDER_DELAY_MS, self.render_now)
        self._autosave_timer = _single_shot(self, AUTOSAVE_DELAY_MS, self.autosave)
        self._build()
        self.canvas.stroke_finished.connect(self._on_stroke)
        self.document.content_changed.connect(self._on_content_changed)
        self.document.status_changed.connect(self.status.setText)
        add_generate_shortcut(self, self.generate_base)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("describe the base image")
        self.size_combo = QComboBox()
        for size in SIZES:
            self.size_combo.addItem(f"{size} px", size)
        self.steps_spin = spin_for(BrushBaseRequest, "steps")
        self.seed_spin = spin_for(BrushBaseRequest, "seed")
        session_row = QHBoxLayout()
        for widget in (
            self.prompt_edit,
            self.size_combo,
            QLabel("Steps"),
            self.steps_spin,
            QLabel("Seed"),
            self.seed_spin,
        ):
            session_row.addWidget(widget)
        session_row.addWidget(_button("Generate base", self.generate_base))
        session_row.addWidget(_button("Import photo…", self._ask_photo))
        file_row = QHBoxLayout()
        self.undo_button = _button("Undo", self.undo.undo)
        self.redo_button = _button("Redo", self.undo.redo)
        self.undo.canUndoChanged.connect(self.undo_button.setEnabled)
        self.undo.canRedoChanged.connect(self.redo_button.setEnabled)
        self.undo_button.setEnabled(False)
        self.redo_button.setEnabled(False)
        self.undo_button.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_button.setShortcut(QKeySequence.StandardKey.Redo)
        for widget in (
            _button("Open…", self._ask_open),
            _button("Save", self.save_project),
            _button("Save as…", self._ask_save_as),
            _button("Export PNG…", self._ask_export),
            self.undo_button,
            self.redo_button,
        ):
            file_row.addWidget(widget)
        file_row.addStretch()
        file_row.addLayout(self._tool_row())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.panel)
        splitter.setStretchFactor(0, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(session_row)
        layout.addLayout(file_row)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

    def _tool_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.tool_buttons = QButtonGroup(self)
        for name in ToolState.TOOLS:
            radio = QRadioButton(name.capitalize())
            radio.setChecked(name == self.tool.tool)
            radio.toggled.connect(lambda on, name=name: on and self.tool.set_tool(name))
            self.tool_buttons.addButton(radio)
            row.addWidget(radio)
        self.brush_size = QDoubleSpinBox()
        self.brush_size.setRange(1, 512)
        self.brush_size.setValue(self.tool.size)
        self.brush_size.valueChanged.connect(self.tool.set_size)
        self.brush_feather = QDoubleSpinBox()
        self.brush_feather.setRange(0, 1)
        self.brush_feather.setSingleStep(0.1)
        self.brush_feather.setValue(self.tool.feather)
        self.brush_feather.valueChanged.connect(self.tool.set_feather)
        for widget in (QLabel("Size"), self.brush_size, QLabel("Softness"), self.brush_feather):
            row.addWidget(widget)
        return row

    def form_fields(self) -> dict[str, QWidget]:
        """The session and brush settings remembered between launches (``Settings.forms["brushes"]``)."""
        return {
            "prompt": self.prompt_edit,
            "size": self.size_combo,
            "steps": self.steps_spin,
            "seed": self.seed_spin,
            "brush_size": self.brush_size,
            "brush_softness": self.brush_feather,
        }

    # -- sessions -------------------------------------------------------------------------

    def generate_base(self) -> str | None:
        size = int(self.size_combo.currentData())
        return self._start_session(prompt=self.prompt_edit.text(), width=size, height=size)

    def import_photo(self, path: str, **fields) -> str | None:
        """Start a session from a photo (DDIM inversion); ``fields``: more ``BrushBaseRequest`` fields."""
        from workers.safe_images import image_size

        try:  # the size from the header: a photo from anywhere may claim 50,000 x 50,000 pixels
            width, height = _fit_size(image_size(path, f"photo {path}"), int(self.size_combo.currentData()))
        except BadInput as exc:
            self._error(str(exc))
            return None
        return self._start_session(
            prompt=self.prompt_edit.text(), width=width, height=height, photo_path=path, **fields
        )

    def edit_image(self, path: str | Path, params: dict) -> bool:
        """An output as a brush project's base (the Gallery's "Edit with brushes"): a brush render
        whose project is still there opens that project; any other image enters through DDIM
        inversion, under the prompt, steps, guidance, seed and model it was made with where its
        parameters say (inverting under its own prompt reconstructs it more closely)."""
        from workers.generation_info import request_fields
        from workers.safe_images import image_size

        session = params.get("session_id")
        if params.get("job") == "BrushRender" and isinstance(session, str):
            try:
                project = project_path_for(session)
            except BadInput:
                project = None
            if project is not None and project.is_file():
                return self.open_project(project)
        try:
            longest = max(image_size(str(path), f"image {Path(path).name}"))
        except BadInput as exc:
            self._error(str(exc))
            return False
        self.size_combo.setCurrentIndex(max(0, sum(1 for size in SIZES if size <= longest) - 1))
        restored = request_fields(params, BrushBaseRequest, skip=("photo_path", "width", "height"))
        self.prompt_edit.setText(restored.prompt)
        for name, box in (("steps", self.steps_spin), ("seed", self.seed_spin)):
            value = restored.fields.get(name)
            if value is not None and box.minimum() <= value <= box.maximum():
                box.setValue(value)
        fields = {name: restored.fields[name] for name in ("guidance", "model") if name in restored.fields}
        return self.import_photo(str(path), negative_prompt=restored.negative_prompt, **fields) is not None

    def _start_session(self, **fields) -> str | None:
        session_id = uuid.uuid4().hex[:12]
        request = BrushBaseRequest(
            session_id=session_id,
            steps=self.steps_spin.value(),
            seed=self.seed_spin.value(),
            project_path=str(project_path_for(session_id)),
            **fields,
        )
        job = self._submit(request)
        if job is None:
            return None
        self.base_job = job
        self.document.set_status(
            "inverting the photo…" if request.photo_path else "generating the base image…"
        )
        return job.job_id

    # -- rendering ------------------------------------------------------------------------

    def _on_stroke(self, layer_id: str, before: QImage, after: QImage, label: str) -> None:
        self.undo.push(PaintStroke(self.document, layer_id, before, after, label))

    def _on_content_changed(self, needs_render: bool) -> None:
        if needs_render:
            self._render_timer.start()
        if self.document.project_path is not None:
            self._autosave_timer.start()

    def render_now(self) -> str | None:
        """Render the current layers; a render still in flight is cancelled first (latest wins)."""
        if not self.document.has_session:
            return None
        if self.render_job is not None:
            self.bridge.jobs.cancel(self.render_job)
            self.render_job = None
        layers = self.document.render_layers()
        if not any(layer.visible for layer in layers):
            self.document.set_composite(None)  # nothing visible: the base image, no job needed
            return None
        width, height = self.document.size
        request = BrushRenderRequest(
            session_id=self.document.params["session_id"],
            project_path=str(self.document.project_path),
            width=width,
            height=height,
            steps=self.document.steps,
            layers=layers,
            revision=next(self._revisions),
        )
        self.render_job = self._submit(request)
        if self.render_job is None:
            return None
        self.document.set_status("rendering…")
        return self.render_job.job_id

    def _follow(self, job: Job) -> Job:
        """Bind a base or render job; one that has been replaced (a stale render) shows nothing."""

        def current() -> bool:
            return job is self.base_job or job is self.render_job

        def on_preview(png: bytes) -> None:
            if current():
                self.document.set_preview(QImage.fromData(png))

        def on_output(path: str, media_type: str) -> None:
            if not current():
                return
            if media_type == MEDIA_TYPE:
                self.open_project(path)
            elif media_type == "image/png" and job is self.render_job:
                self.document.set_composite(QImage(path))

        def on_end(ended: Job) -> None:
            if not current():
                return
            self._job_ended(ended, "ready" if ended.state is JobState.finished else "")
            if ended.state is JobState.failed:
                self._error(ended.error_message)

        return bind_job(job, preview=on_preview, output=on_output, ended=on_end)

    def _job_ended(self, job: Job, message: str) -> None:
        if job is self.base_job:
            self.base_job = None
        if job is self.render_job:
            self.render_job = None
            self.document.set_preview(None)
        if message:
            self.document.set_status(message)

    def _submit(self, request) -> Job | None:
        try:
            return self._follow(self.bridge.jobs.start(request))
        except BadInput as exc:
            self._error(str(exc))
            return None

    # -- files ----------------------------------------------------------------------------

    def open_project(self, path: str | Path) -> bool:
        """Open a ``.hearth`` file (maybe someone else's); a refused one leaves the document as it was."""
        try:
            project = read_project(path)
        except BadInput as exc:
            self._error(str(exc))  # names the check that failed
            return False
        except MemoryError:
            self._error(f"{Path(path).name} is too large to open in the memory available")
            return False
        self.undo.clear()
        self.document.load_project(project, Path(path))
        self.prompt_edit.setText(project.params.get("prompt", ""))
        self.document.set_status(f"opened {Path(path).name}")
        if project.render_png is None and self.document.render_layers():
            self._render_timer.start()
        return True

    def save_project(self, path: str | Path | None = None) -> Path | None:
        if not self.document.has_session:
            return None
        target = Path(path) if path else self.document.project_path
        if target is None:
            return None
        if target.suffix != SUFFIX:
            target = target.with_suffix(SUFFIX)
        write_project(target, self.document.to_project())
        self.document.project_path = target
        self.document.set_status(f"saved {target.name}")
        self.saved.emit(str(target))
        return target

    def autosave(self) -> None:
        if self.document.project_path is not None:
            self.save_project()

    def export_png(self, path: str | Path) -> Path:
        """The composite with the session and every layer's parameters in its PNG text chunks."""
        from PIL import Image

        from workers.outputs import save_png

        if not self.document.has_session:
            raise BadInput("nothing to export yet: generate a base image or import a photo")
        image = Image.open(io.BytesIO(image_png(self.document.displayed_image()))).convert("RGB")
        params = dict(self.document.params, job="BrushExport", sampler="DDIM")
        keys = ("id", "name", "prompt", "strength", "regen_step", "seed", "visible", "opacity", "feather")
        params["layers"] = [{key: getattr(layer, key) for key in keys} for layer in self.document.layers]
        save_png(image, Path(path), params)
        self.document.set_status(f"exported {Path(path).name}")
        return Path(path)

    def _error(self, message: str) -> None:
        self.status.setStyleSheet("color: #d33")
        self.document.set_status(message)
        # The label is the timer's context: a closed editor cancels it instead of touching a dead label.
        QTimer.singleShot(6000, self.status, lambda: self.status.setStyleSheet(""))

    # -- dialogs (thin wrappers, tests call the methods above) -----------------------------

    def _ask_photo(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import photo", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if path:
            self.import_photo(path)

    def _ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", f"Hearth projects (*{SUFFIX})")
        if path:
            self.open_project(path)

    def _ask_save_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save project", "", f"Hearth projects (*{SUFFIX})")
        if path:
            self.save_project(path)

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", "", "PNG images (*.png)")
        if path:
            self.export_png(path)


def _fit_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """Scale so the longer side is ``longest``, both sides multiples of 8 (what the model needs)."""
    scale = longest / max(size)
    return tuple(max(8, round(side * scale / 8) * 8) for side in size)


def _button(text: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(slot)
    return button


def _single_shot(parent: QWidget, delay_ms: int, slot) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(delay_ms)
    timer.timeout.connect(slot)
    return timer
