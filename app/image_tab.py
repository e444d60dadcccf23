"""The Image tab: text-to-image and image-to-image with sampler, batch, LoRAs and strength, a
live preview at every step, the results of a batch, and Upscale on a finished image."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.form_binding import QT_INT_MAX, form_values, request_from_form, restore_form, spin_for, tooltip
from app.image_lora_list import LoraList
from app.job import Job, bind_job
from app.style import ERROR_STYLE, error_text, pixmap_from_png, show_pixmap
from models.catalog import HOW_TO_ADD_MODELS, ModelKind, entries, entry
from models.image_profile import describe_settings, recommended_profile, recommended_settings
from workers.errors import BadInput, ErrorKind
from workers.protocol import (
    IMAGE_SAMPLERS,
    UPSCALE_STRENGTH,
    ImageRequest,
    JobState,
)
from workers.schema import default_of, params

MAX_SEED = QT_INT_MAX
FORM_WIDTH = 340
UPSCALE_FACTOR = 2
"""What the Upscale button enlarges a finished image by (tiled image-to-image with the same model)."""
THUMBNAIL_SIZE = 56
NEGATIVE_PRESETS = {
    "General": "lowres, blurry, jpeg artifacts, watermark, signature, text, cropped, worst quality",
    "Photo": "cartoon, painting, illustration, 3d render, overexposed, blurry, noise, watermark, text",
    "Illustration": "photo, realistic, blurry, lowres, extra limbs, deformed, watermark, signature, text",
    "People": "bad anatomy, extra fingers, missing fingers, deformed hands, disfigured face, extra limbs, blurry",
}
"""Negative prompts people paste into every SD front end, one click away (they only fill the field)."""


class ModelBox(QComboBox):
    """Catalog image models, or any hub id, local folder or checkpoint file typed in."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        for item in entries(ModelKind.image):
            self.addItem(item.id)
            self.setItemData(self.count() - 1, f"{item.title}: {item.source}", Qt.ItemDataRole.ToolTipRole)
        self.setToolTip(HOW_TO_ADD_MODELS)
        self.lineEdit().setPlaceholderText("catalog id, hub id, folder or .safetensors file")

    def model(self) -> str:
        """The picked item's model (a registry item's title is not its path), else the typed text."""
        index = self.currentIndex()
        data = self.itemData(index) if index >= 0 and self.currentText() == self.itemText(index) else None
        return data if isinstance(data, str) and data else self.currentText().strip()

    def set_model(self, model: str) -> None:
        self.setCurrentText(model)


class ImageTab(QWidget):
    """Submits ``ImageRequest``s through the bridge and follows the one it submitted last."""

    result_shown = Signal(str)
    """The path of the image now shown as the result."""

    def __init__(self, bridge, settings=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.job: Job | None = None
        self.result_path = ""
        self.outputs: list[str] = []
        """Every image the job followed last has produced so far (a batch gives several)."""
        self._pixmap: QPixmap | None = None
        self._build_form()
        self._build_view()
        self._lay_out()
        if settings is not None:
            self.apply_settings(settings)
        self._set_running(False)

    # ------------------------------------------------------------------ widgets

    def _build_form(self) -> None:
        self.model_box = ModelBox()
        self.model_box.currentTextChanged.connect(self._describe_model)
        # A model the user picks or types brings the size, steps and guidance it is made for;
        # restored settings and recalled outputs keep their own (they set the text directly).
        self.model_box.activated.connect(lambda _index: self.use_model_settings())
        self.model_box.lineEdit().editingFinished.connect(self.use_model_settings)
        self._settings_made_for = ""
        self.browse_button = QToolButton()
        self.browse_button.setText("…")
        self.browse_button.setToolTip("Choose a single-file checkpoint (.safetensors)")
        self.browse_button.clicked.connect(self._browse_model)
        self.model_note = QLabel()
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: #92400e;")
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe the image (Ctrl+Enter to generate)")
        self.prompt.setFixedHeight(72)
        self.negative_prompt = QLineEdit()
        self.negative_prompt.setPlaceholderText("what to avoid (optional)")
        self.negative_presets = QToolButton()
        self.negative_presets.setText("Presets")
        self.negative_presets.setToolTip("Fill the negative prompt with a common one")
        self.negative_presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        presets = QMenu(self.negative_presets)
        for name, text in NEGATIVE_PRESETS.items():
            presets.addAction(name, lambda text=text: self.negative_prompt.setText(text))
        self.negative_presets.setMenu(presets)
        self.sampler = QComboBox()
        for name in IMAGE_SAMPLERS:
            self.sampler.addItem(name or "Model's own", name)
        self.sampler.setCurrentIndex(self.sampler.findData(default_of(ImageRequest, "sampler")))
        self.sampler.setToolTip(tooltip(params(ImageRequest)["sampler"]))
        self.width_box = spin_for(ImageRequest, "width", suffix=" px")
        self.height_box = spin_for(ImageRequest, "height", suffix=" px")
        self.steps = spin_for(ImageRequest, "steps")
        self.guidance = spin_for(ImageRequest, "guidance")
        self.seed = spin_for(ImageRequest, "seed", wide=True)  # another app's seed may pass a C int
        self.random_seed = QCheckBox("new each time")
        self.random_seed.setToolTip("Pick a fresh random seed for every image; the seed used is shown")
        self.batch_count = spin_for(ImageRequest, "batch_count")
        self.init_image = QLineEdit()
        self.init_image.setPlaceholderText("none: text to image")
        self.init_image.setToolTip(tooltip(params(ImageRequest)["init_image"]))
        self.init_image.textChanged.connect(self._init_image_changed)
        self.init_browse = QToolButton()
        self.init_browse.setText("…")
        self.init_browse.setToolTip("Choose a picture to start from")
        self.init_browse.clicked.connect(self._browse_init_image)
        self.init_clear = QToolButton()
        self.init_clear.setText("×")
        self.init_clear.setToolTip("Back to text to image")
        self.init_clear.clicked.connect(self.init_image.clear)
        self.strength = spin_for(ImageRequest, "strength")
        self.loras = LoraList()
        self._init_image_changed("")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        shortcut = QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.generate)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._describe_model(self.model_box.model())

    def _build_view(self) -> None:
        self.progress = QProgressBar()
        self.progress.setFormat("step %v / %m")
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.image = QLabel("The image appears here.")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(256, 256)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.image.setStyleSheet("QLabel { background: #1f2937; color: #9ca3af; border-radius: 4px; }")
        self.caption = QLabel()
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.thumbnails = QListWidget()
        self.thumbnails.setViewMode(QListWidget.ViewMode.IconMode)
        self.thumbnails.setFlow(QListWidget.Flow.LeftToRight)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setIconSize(QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE).size())
        self.thumbnails.setFixedHeight(THUMBNAIL_SIZE + 22)
        self.thumbnails.setToolTip("The images of this batch: click one to show it")
        self.thumbnails.currentRowChanged.connect(self._thumbnail_chosen)
        self.thumbnails.hide()
        self.use_as_init_button = QPushButton("Use as init image")
        self.use_as_init_button.setToolTip("Start the next image from this one (image to image)")
        self.use_as_init_button.clicked.connect(lambda: self.init_image.setText(self.result_path))
        self.upscale_button = QPushButton(f"Upscale {UPSCALE_FACTOR}×")
        self.upscale_button.setToolTip(
            f"Enlarge this image {UPSCALE_FACTOR}× and repaint it tile by tile with the same model, prompt "
            f"and seed (tiled image to image at strength {UPSCALE_STRENGTH:g})"
        )
        self.upscale_button.clicked.connect(self.upscale)

    def _lay_out(self) -> None:
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(self.browse_button)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        negative_row = QHBoxLayout()
        negative_row.addWidget(self.negative_prompt, 1)
        negative_row.addWidget(self.negative_presets)
        init_row = QHBoxLayout()
        init_row.addWidget(self.init_image, 1)
        init_row.addWidget(self.init_browse)
        init_row.addWidget(self.init_clear)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", model_row)
        form.addRow("", self.model_note)
        form.addRow("Prompt", self.prompt)
        form.addRow("Negative", negative_row)
        form.addRow("Sampler", self.sampler)
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Seed", seed_row)
        form.addRow("Batch", self.batch_count)
        form.addRow("Init image", init_row)
        form.addRow("Strength", self.strength)
        form.addRow("LoRAs", self.loras)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.status)
        left.addWidget(self.error)
        left.addStretch(1)
        form_widget = QWidget()
        form_widget.setLayout(left)
        form_widget.setFixedWidth(FORM_WIDTH)
        right = QVBoxLayout()
        right.addWidget(self.image, 1)
        right.addWidget(self.thumbnails)
        result_row = QHBoxLayout()
        result_row.addWidget(self.caption, 1)
        result_row.addWidget(self.use_as_init_button)
        result_row.addWidget(self.upscale_button)
        right.addLayout(result_row)
        layout = QHBoxLayout(self)
        layout.addWidget(form_widget)
        layout.addLayout(right, 1)

    # ------------------------------------------------------------------ form

    def request(self) -> ImageRequest:
        """The form as a request (not yet validated)."""
        return request_from_form(
            ImageRequest,
            self.form_fields(),
            loras=self.loras.text(),
            model=self.model_box.model() or default_of(ImageRequest, "model"),
        )

    def apply_settings(self, settings) -> None:
        self.model_box.set_model(settings.image_model)
        self.width_box.setValue(settings.image_width)
        self.height_box.setValue(settings.image_height)
        self.steps.setValue(settings.image_steps)
        self.guidance.setValue(settings.image_guidance)
        saved = getattr(settings, "forms", {}).get("image")
        if isinstance(saved, dict):
            restore_form(self._remembered(), saved)
            loras = saved.get("loras")
            if isinstance(loras, str):
                try:
                    self.loras.set_text(loras)
                except BadInput:
                    pass  # a list saved by another version that no longer parses: start empty

    def _remembered(self) -> dict[str, QWidget]:
        """The fields beyond ``Settings``' own image ones that come back next launch (not the init
        image: a picture chosen once is not a setting)."""
        return {
            "negative_prompt": self.negative_prompt,
            "sampler": self.sampler,
            "batch_count": self.batch_count,
            "strength": self.strength,
        }

    def form_fields(self) -> dict[str, QWidget]:
        """The form's widgets by request field name ("Use these settings" fills them, ``app/recall.py``)."""
        return {
            "model": self.model_box,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "sampler": self.sampler,
            "width": self.width_box,
            "height": self.height_box,
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "batch_count": self.batch_count,
            "init_image": self.init_image,
            "strength": self.strength,
            "loras": self.loras,
        }

    def store_settings(self, settings) -> None:
        settings.image_model = self.model_box.model() or default_of(ImageRequest, "model")
        settings.image_width, settings.image_height = self.width_box.value(), self.height_box.value()
        settings.image_steps, settings.image_guidance = self.steps.value(), self.guidance.value()
        if hasattr(settings, "forms"):
            settings.forms["image"] = {**form_values(self._remembered()), "loras": self.loras.text()}

    def use_model_settings(self) -> None:
        """Fill size, steps and guidance with what the picked model's family is made for (SDXL:
        1024², Flux schnell: 4 steps, no guidance), once per model picked; the demo model and
        models whose files do not say leave the form as it is."""
        model = self.model_box.model()
        if model == self._settings_made_for:
            return
        self._settings_made_for = model
        profile = recommended_profile(model)
        if profile is None:
            return
        settings = recommended_settings(profile)
        self.width_box.setValue(int(settings["width"]))
        self.height_box.setValue(int(settings["height"]))
        self.steps.setValue(int(settings["steps"]))
        self.guidance.setValue(float(settings["guidance"]))
        self.model_note.setText(f"{describe_settings(profile)}: the form is set to these.")

    @Slot(str)
    def _describe_model(self, model: str) -> None:
        item = entry(model.strip())
        if item is None:
            self.model_note.setText("Your model: a hub id, a diffusers folder or a single-file checkpoint.")
        elif item.demo:
            self.model_note.setText(
                "Demo model: tiny and random-weighted, so the image is noise. "
                "Type a real model's hub id, folder or file here."
            )
        else:
            self.model_note.setText(item.title)

    @Slot(str)
    def _init_image_changed(self, text: str) -> None:
        """With an init image the output takes its size; strength only means something then."""
        img2img = bool(text.strip())
        for box, name in ((self.width_box, "width"), (self.height_box, "height")):
            box.setEnabled(not img2img)
            box.setToolTip(
                "The init image sets the size (rounded down to a multiple of 8)"
                if img2img
                else tooltip(params(ImageRequest)[name])
            )
        self.strength.setEnabled(img2img)
        self.init_clear.setEnabled(img2img)

    def _browse_init_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose a picture to start from",
            "",
            "Images (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)",
        )
        if path:
            self.init_image.setText(path)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", "", "Checkpoints (*.safetensors *.ckpt);;All files (*)"
        )
        if path:
            self.model_box.set_model(path)
            self.use_model_settings()

    # ------------------------------------------------------------------ actions

    @Slot()
    def generate(self) -> None:
        if self.job is not None:
            return  # one job at a time from this form; the Jobs panel shows the queue
        if self.random_seed.isChecked():
            self.seed.setValue(random.randint(0, MAX_SEED))
        self._submit(self.request)

    @Slot()
    def upscale(self) -> None:
        """The image shown, enlarged and repainted by tiles with the form's model, prompt and seed."""
        if self.job is not None or not self.result_path:
            return
        source = self.result_path
        self._submit(
            lambda: replace(
                self.request(),
                init_image=source,
                upscale=UPSCALE_FACTOR,
                strength=UPSCALE_STRENGTH,
                batch_count=1,
            ),
            f"Queued: upscaling {Path(source).name} {UPSCALE_FACTOR}×…",
        )

    def _submit(self, make_request, queued: str = "Queued: waiting for the image worker…") -> None:
        try:
            request = make_request()
            job = self.bridge.jobs.start(request)
        except BadInput as exc:
            self.status.setText("Nothing was submitted.")
            self._show_error(ErrorKind.bad_input.value, str(exc))
            return
        self.job = job
        bind_job(
            job,
            started=lambda: self.status.setText("Running…"),
            status=self.status.setText,
            progressed=self._on_progress,
            preview=self._on_preview,
            output=self._on_output,
            ended=self._on_end,
        )
        self.outputs = []
        self.thumbnails.clear()
        self.thumbnails.hide()
        self._clear_error()
        self.progress.setRange(0, request.steps)
        self.progress.setValue(0)
        self.status.setText(queued)
        self._set_running(True)

    @Slot()
    def cancel(self) -> None:
        if self.job is not None:
            self.bridge.jobs.cancel(self.job)
            self.status.setText("Cancelling at the next step…")

    def _set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        for button in (self.upscale_button, self.use_as_init_button):
            button.setEnabled(not running and bool(self.result_path))

    # ------------------------------------------------------------------ events

    def _on_progress(self, step: int, total: int, message: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(step)
        if not message:
            self.status.setText(f"Step {step} of {total}")

    def _on_preview(self, png: bytes) -> None:
        pixmap = pixmap_from_png(png)
        if pixmap is not None:
            self._show(pixmap)

    def _on_output(self, path: str, media_type: str) -> None:
        if media_type.startswith("image/"):
            self._add_output(path)

    def _on_end(self, job: Job) -> None:
        match job.state:
            case JobState.finished:
                self._end(f"Done in {job.elapsed_s:.1f} s." if job.elapsed_s else "Done.")
            case JobState.cancelled:
                step = job.cancelled_at_step
                self._end(f"Cancelled at step {step}." if step >= 0 else "Cancelled before it started.")
            case JobState.failed:
                self._show_error(job.error_kind, job.error_message, job.traceback)
                self._end("Failed.")

    def _add_output(self, path: str) -> None:
        self.outputs.append(path)
        if len(self.outputs) > 1:
            item = QListWidgetItem(QIcon(path), str(len(self.outputs)))
            item.setToolTip(path)
            if len(self.outputs) == 2:  # the first one gets its thumbnail once there is a second
                first = QListWidgetItem(QIcon(self.outputs[0]), "1")
                first.setToolTip(self.outputs[0])
                self.thumbnails.addItem(first)
            self.thumbnails.addItem(item)
            self.thumbnails.show()
            self.thumbnails.blockSignals(True)
            self.thumbnails.setCurrentRow(len(self.outputs) - 1)
            self.thumbnails.blockSignals(False)
        self.show_result(path)

    @Slot(int)
    def _thumbnail_chosen(self, row: int) -> None:
        if 0 <= row < len(self.outputs):
            self.show_result(self.outputs[row])

    def show_result(self, path: str) -> None:
        pixmap = QPixmap(path)
        if pixmap.isNull():
            self._show_error(ErrorKind.internal.value, f"the image {path} could not be opened")
            return
        self.result_path = path
        self._show(pixmap)
        index = (
            f"{self.outputs.index(path) + 1} of {len(self.outputs)} · "
            if len(self.outputs) > 1 and path in self.outputs
            else ""
        )
        self.caption.setText(f"{index}{pixmap.width()}×{pixmap.height()} · {path}")
        self._set_running(self.job is not None)
        self.result_shown.emit(path)

    def _end(self, status: str) -> None:
        self.job = None
        self.status.setText(status)
        self._set_running(False)

    def _show(self, pixmap: QPixmap) -> None:
        self._pixmap = pixmap
        self.image.setText("")
        show_pixmap(self.image, pixmap, self.image.width() - 8, self.image.height() - 8)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._pixmap is not None:
            show_pixmap(self.image, self._pixmap, self.image.width() - 8, self.image.height() - 8)

    def _show_error(self, kind: str, message: str, traceback: str = "") -> None:
        self.error.setText(error_text(kind, message))
        self.error.setToolTip(traceback)
        self.error.show()

    def _clear_error(self) -> None:
        self.error.clear()
        self.error.hide()
