"""Recall: an output's settings back into the tab that made it.

Used by the Gallery ("Use these settings", "Edit with brushes") and by files dropped on the
window. Each tab fills its own form (``apply_parameters``) and says what it could not use; this
module picks the tab, keeps a foreign file's model out of the form when it is not on this
machine, and says what happened in one line for the status bar.
"""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from models.catalog import entry as catalog_entry
from workers.errors import BadInput
from workers.generation_info import SUFFIXES, GenerationInfo, read_info, request_fields
from workers.protocol import ImageRequest, MusicRequest, VideoRequest
from workers.schema import default_of
from workers.schema import params as param_specs

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
TAB_OF_KIND = {"image": "Image", "brush": "Image", "video": "Video", "music": "Music"}


def droppable(path: str) -> bool:
    """Files the window takes from a drop: the ones parameters are read from."""
    return Path(path).suffix.lower() in SUFFIXES


def dropped_file(event) -> str | None:
    """The first file of a drag or drop that Hearth reads settings from, else None."""
    mime = event.mimeData()
    urls = mime.urls() if mime is not None else []
    return next(
        (url.toLocalFile() for url in urls if url.isLocalFile() and droppable(url.toLocalFile())), None
    )


class TextBoxDrops(QObject):
    """A PNG dropped on a text box restores its settings too: the box would paste the file's path.

    An event filter on the window's line edits and plain-text viewports (where their drops land),
    looking only at drag and drop events; any other drop (text, other files) reaches the box."""

    DRAG_EVENTS = (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop)

    def __init__(self, inside: QWidget, restore) -> None:
        super().__init__(inside)
        self.restore = restore
        boxes = [
            *inside.findChildren(QLineEdit),
            *(box.viewport() for box in inside.findChildren(QPlainTextEdit)),
        ]
        for box in boxes:
            box.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if event.type() not in self.DRAG_EVENTS:
            return False
        path = dropped_file(event)
        if path is None:
            return False
        event.acceptProposedAction()
        if event.type() == QEvent.Type.Drop:
            self.restore(path)
        return True


def model_here(model: str) -> bool:
    """A model Hearth can name: a catalog id, an existing file or folder, or a hub id."""
    if catalog_entry(model) is not None or HUB_ID.fullmatch(model):
        return True
    try:
        return Path(model).expanduser().exists()
    except (OSError, ValueError):
        return False


def fill_form(widgets: dict[str, QWidget], values: dict) -> list[str]:
    """Put checked values (``generation_info.request_fields``) into a form's widgets by field name;
    returns, in words, each value the form could not hold as it is (a seed past a spin box's C
    int, a guidance rounded to the box's decimals, a choice the picker does not offer)."""
    notes: list[str] = []
    for name, widget in widgets.items():
        if name in values:
            note = _fill(widget, values[name])
            if note:
                notes.append(f"{name.replace('_', ' ')} {note}")
    return notes


def _fill(widget: QWidget, value) -> str:
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        if not widget.minimum() <= value <= widget.maximum():
            low, high = (f"{bound:g}" for bound in (widget.minimum(), widget.maximum()))
            return f"{value} does not fit this form (it takes {low} to {high}): left as it was"
        if isinstance(widget, QSpinBox):
            widget.setValue(int(value))
            return ""
        widget.setValue(float(value))
        if not math.isclose(widget.value(), float(value), abs_tol=1e-9):
            return f"{value} was rounded to {widget.value():g}"
    elif isinstance(widget, QComboBox):
        return _choose(widget, str(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    elif isinstance(widget, QPlainTextEdit):
        widget.setPlainText(str(value))
    elif hasattr(widget, "set_text"):  # the LoRA list: "file:weight, ..."
        widget.set_text(str(value))
    return ""


def _choose(combo: QComboBox, value: str) -> str:
    index = combo.findData(value)
    if index < 0:
        index = combo.findText(value)
    if index >= 0:
        combo.setCurrentIndex(index)
    elif combo.isEditable():
        combo.setEditText(value)  # a hub id, a folder or a file
    else:
        return f"{value!r} is not offered here: left as it was"
    return ""


def linked_model(name: str) -> str:
    """The model ``hearth models`` linked under this name (A1111 writes the checkpoint file's stem,
    ``Model: dreamshaper_8``): what a job's model field takes, or "" when none is linked."""
    from workers.paths import data_dir

    database = data_dir() / "models.db"
    if not name or not database.is_file():  # never create the registry just to look
        return ""
    from models.identity import FoundKind
    from models.registry import ModelRegistry

    wanted = name.casefold()
    try:
        with ModelRegistry(database) as registry:
            for model in registry.models(FoundKind.image):
                if not model.problem and wanted in {
                    model.name.casefold(),
                    Path(model.location).stem.casefold(),
                }:
                    return model.spec
    except (OSError, sqlite3.Error, BadInput):  # a damaged registry: the form keeps its own model
        return ""
    return ""


class Recall:
    """Restores settings into ``window``'s tabs (``image_tab``, ``video_tab``, ``music_tab``,
    ``brush_editor``, each with ``form_fields()``) and reports each outcome on its status bar."""

    def __init__(self, window) -> None:
        self.window = window
        self.last_message = ""

    def restore_file(self, path: str | Path) -> bool:
        """A dropped file: its settings into the right tab; a clear message when it has none."""
        try:
            info = read_info(path)
        except BadInput as exc:
            self._say(f"Nothing restored from {Path(path).name}: {exc}")
            return False
        except (OSError, MemoryError) as exc:
            self._say(f"Nothing restored from {Path(path).name}: it cannot be read ({exc})")
            return False
        return self.use_settings(info)

    def use_settings(self, info: GenerationInfo) -> bool:
        """Fill the form of the tab that made ``info`` (model, seed and all) and show that tab."""
        tab = TAB_OF_KIND.get(info.kind)
        if tab is None:
            self._say(f"Nothing restored from {info.path.name}: Hearth does not know what made it")
            return False
        params = dict(info.params)
        notes = list(info.notes)
        model = params.get("model")
        if not info.from_hearth and isinstance(model, str) and model and not model_here(model):
            params.pop("model")
            linked = linked_model(model) if info.kind in ("image", "brush") else ""
            if linked:
                params["model"] = linked
                notes.append(f"its model {model!r} is your linked {linked}")
            else:
                notes.append(f"its model {model!r} is not on this machine, so the form keeps its own")
        if info.kind in ("image", "brush"):
            notes += self._fill_image(params)
        else:
            notes += self._fill_media(info.kind, params)
        if info.kind == "brush":
            notes.append(
                "a brush render: its base settings went to Text to image; Edit with brushes opens its layers"
            )
        self._say(
            f"Settings of {info.path.name} restored in the {tab} tab" + "".join(f"; {n}" for n in notes)
        )
        return True

    def _fill_image(self, params: dict) -> list[str]:
        window = self.window
        tab = window.image_tab
        notes = []
        sampler = params.get("sampler")
        offered = param_specs(ImageRequest).get("sampler")
        if offered is not None and isinstance(sampler, str) and sampler not in offered.spec.choices:
            # Hearth names a model's own scheduler by its class ("PNDM") when no A1111 name fits.
            notes.append(f"sampler {sampler[:40]!r} is not one Hearth offers: the form uses the model's own")
            params["sampler"] = ""
        init = params.get("init_image")
        if isinstance(init, str) and init and not Path(init).is_file():
            notes.append(f"its init image {init} is gone: text to image instead")
            params["init_image"] = ""
        notes += self._fill_form(tab.form_fields(), params, ImageRequest)
        tab.random_seed.setChecked(False)  # the seed it was made with, not a fresh one
        window.tabs.setCurrentWidget(window.image_tabs)
        window.image_tabs.setCurrentWidget(tab)
        return notes

    def _fill_media(self, kind: str, params: dict) -> list[str]:
        window = self.window
        tab, request_cls = (
            (window.video_tab, VideoRequest) if kind == "video" else (window.music_tab, MusicRequest)
        )
        fields = dict(tab.form_fields())
        notes = []
        mode = params.get("memory_mode")
        if kind == "video" and isinstance(mode, str):  # the form spells "slices:N" as Manual + N
            fields.pop("memory_mode", None)
            manual = (
                mode.startswith("slices:") and mode[7:].isascii() and mode[7:].isdigit() and len(mode) < 12
            )
            notes += [n for n in (_fill(tab.memory_mode, "manual" if manual else "auto"),) if n]
            if manual:
                notes += [f"slices {n}" for n in (_fill(tab.slices_box, int(mode[7:])),) if n]
        notes += self._fill_form(fields, params, request_cls)
        window.tabs.setCurrentWidget(tab)
        return notes

    def _fill_form(self, widgets: dict[str, QWidget], params: dict, request_cls: type) -> list[str]:
        restored = request_fields(params, request_cls)
        values = dict(restored.fields, negative_prompt=restored.negative_prompt)
        if restored.prompt:
            values["prompt"] = restored.prompt
        # A setting the form has no widget for goes back to its default on the next run: say so.
        missing = [
            f"{name.replace('_', ' ')} {value!r} is not in this form (the next run uses {default_of(request_cls, name)!r})"
            for name, value in restored.fields.items()
            if name not in widgets and name != "memory_mode" and value != default_of(request_cls, name)
        ]
        return list(restored.notes) + fill_form(widgets, values) + missing

    def edit_with_brushes(self, path: Path, info: GenerationInfo | None) -> bool:
        """Open an image as a brush project base: its own project when it is a brush render whose
        project is still there, else the image itself through DDIM inversion."""
        window = self.window
        editor = window.brush_editor
        window.tabs.setCurrentWidget(window.image_tabs)
        window.image_tabs.setCurrentWidget(editor)
        params = dict(info.params) if info is not None else {}
        if info is not None and not info.from_hearth and not model_here(str(params.get("model", ""))):
            params.pop("model", None)  # inverted with the editor's model instead
        opened = editor.edit_image(path, params)
        if not opened:
            self._say(f"{Path(path).name} could not be opened in the brush editor: {editor.status.text()}")
        elif editor.base_job is not None:
            self._say(f"{Path(path).name} goes into the brush editor through DDIM inversion…")
        else:
            self._say(f"{Path(path).name}: its brush project is open")
        return opened

    def _say(self, message: str) -> None:
        self.last_message = message
        self.window.statusBar().showMessage(message, 20_000)
