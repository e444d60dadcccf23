"""The layer panel: the stack (top layer first, like paint programs) and the selected layer's settings.

Every change goes through the undo stack as a command; the panel itself only mirrors the state.
The mouse wheel over a layer rolls a new seed for it, as in the paper's editor.
"""

from __future__ import annotations

import random

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.brush_editor.commands import AddLayer, DeleteLayer, MoveLayer, SetLayerProperty, SetSolo
from app.brush_editor.state import BrushDocumentState
from app.form_binding import QT_INT_MAX as MAX_SEED
from app.form_binding import spin_for
from workers.protocol import BrushLayer


class LayerPanel(QWidget):
    def __init__(self, document: BrushDocumentState, undo: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document, self.undo = document, undo
        self._syncing = False
        self.list = QListWidget()
        self.list.viewport().installEventFilter(self)
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemChanged.connect(self._on_item_checked)
        self.add_button, self.delete_button = QPushButton("Add"), QPushButton("Delete")
        self.up_button, self.down_button = QPushButton("Up"), QPushButton("Down")
        self.solo_button = QPushButton("Solo")
        self.solo_button.setCheckable(True)
        self.add_button.clicked.connect(self.add_layer)
        self.delete_button.clicked.connect(self.delete_layer)
        self.up_button.clicked.connect(lambda: self.move_selected(+1))
        self.down_button.clicked.connect(lambda: self.move_selected(-1))
        self.solo_button.clicked.connect(self.toggle_solo)
        self._build_fields()
        self._lay_out()
        document.layers_changed.connect(self.sync)
        document.selection_changed.connect(self.sync)
        document.project_changed.connect(self.sync)
        self.sync()

    def _build_fields(self) -> None:
        self.name_edit, self.prompt_edit = QLineEdit(), QLineEdit()
        self.prompt_edit.setPlaceholderText("what to paint here (empty: re-roll with the base prompt)")
        self.strength_spin = spin_for(BrushLayer, "strength")
        self.opacity_spin = spin_for(BrushLayer, "opacity")
        self.feather_spin = spin_for(BrushLayer, "feather")
        self.regen_spin = spin_for(BrushLayer, "regen_step")  # its maximum follows the session's N
        self.seed_spin = spin_for(BrushLayer, "seed")
        self.visible_check = QCheckBox("Visible")
        self.name_edit.editingFinished.connect(lambda: self._set("name", self.name_edit.text()))
        self.prompt_edit.editingFinished.connect(lambda: self._set("prompt", self.prompt_edit.text()))
        self.strength_spin.valueChanged.connect(lambda v: self._set("strength", v))
        self.opacity_spin.valueChanged.connect(lambda v: self._set("opacity", v))
        self.feather_spin.valueChanged.connect(lambda v: self._set("feather", v))
        self.regen_spin.valueChanged.connect(lambda v: self._set("regen_step", v))
        self.seed_spin.valueChanged.connect(lambda v: self._set("seed", v))
        self.visible_check.toggled.connect(lambda v: self._set("visible", v))

    def _lay_out(self) -> None:
        buttons = QHBoxLayout()
        for button in (
            self.add_button,
            self.delete_button,
            self.up_button,
            self.down_button,
            self.solo_button,
        ):
            buttons.addWidget(button)
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Prompt", self.prompt_edit)
        form.addRow("Strength", self.strength_spin)
        form.addRow("Regeneration step", self.regen_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Opacity", self.opacity_spin)
        form.addRow("Feather", self.feather_spin)
        form.addRow("", self.visible_check)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addLayout(form)

    # -- mirror the state -----------------------------------------------------------------

    def sync(self) -> None:
        self._syncing = True
        try:
            self._sync_list()
            self._sync_fields()
        finally:
            self._syncing = False

    def _sync_list(self) -> None:
        self.list.clear()
        for layer in reversed(self.document.layers):  # top of the stack first
            item = QListWidgetItem(layer.name or "(unnamed)")
            item.setData(Qt.ItemDataRole.UserRole, layer.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            self.list.addItem(item)
            if layer.id == self.document.selected_id:
                self.list.setCurrentItem(item)

    def _sync_fields(self) -> None:
        layer = self.document.selected
        enabled = layer is not None
        for widget in (
            self.name_edit,
            self.prompt_edit,
            self.strength_spin,
            self.opacity_spin,
            self.feather_spin,
            self.regen_spin,
            self.seed_spin,
            self.visible_check,
            self.delete_button,
            self.up_button,
            self.down_button,
            self.solo_button,
        ):
            widget.setEnabled(enabled)
        self.add_button.setEnabled(self.document.has_session)
        self.solo_button.setChecked(enabled and self.document.solo_id == layer.id)
        if not enabled:
            return
        self.regen_spin.setRange(0, self.document.max_regen_step)
        self.name_edit.setText(layer.name)
        self.prompt_edit.setText(layer.prompt)
        self.strength_spin.setValue(layer.strength)
        self.opacity_spin.setValue(layer.opacity)
        self.feather_spin.setValue(layer.feather)
        self.regen_spin.setValue(layer.regen_step)
        self.seed_spin.setValue(layer.seed)
        self.visible_check.setChecked(layer.visible)

    # -- user actions ---------------------------------------------------------------------

    def add_layer(self) -> None:
        if self.document.has_session:
            self.undo.push(AddLayer(self.document, self.document.new_layer(), len(self.document.layers)))

    def delete_layer(self) -> None:
        if self.document.selected is not None:
            self.undo.push(DeleteLayer(self.document, self.document.selected_id))

    def move_selected(self, offset: int) -> None:
        """+1 moves the selected layer up the stack (towards the top of the list)."""
        layer = self.document.selected
        if layer is None:
            return
        index = self.document.index_of(layer.id) + offset
        if 0 <= index < len(self.document.layers):
            self.undo.push(MoveLayer(self.document, layer.id, index))

    def toggle_solo(self) -> None:
        layer = self.document.selected
        if layer is not None:
            self.undo.push(SetSolo(self.document, None if self.document.solo_id == layer.id else layer.id))

    def new_seed(self, layer_id: str) -> None:
        self.undo.push(SetLayerProperty(self.document, layer_id, "seed", random.randint(0, MAX_SEED)))

    def _set(self, name: str, value) -> None:
        layer = self.document.selected
        if self._syncing or layer is None or getattr(layer, name) == value:
            return
        self.undo.push(SetLayerProperty(self.document, layer.id, name, value))

    def _on_current(self, current: QListWidgetItem | None, previous) -> None:
        if not self._syncing and current is not None:
            self.document.select(current.data(Qt.ItemDataRole.UserRole))

    def _on_item_checked(self, item: QListWidgetItem) -> None:
        if self._syncing:
            return
        layer_id = item.data(Qt.ItemDataRole.UserRole)
        visible = item.checkState() == Qt.CheckState.Checked
        if self.document.layer(layer_id).visible != visible:
            self.undo.push(SetLayerProperty(self.document, layer_id, "visible", visible))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.list.viewport() and event.type() == QEvent.Type.Wheel:
            item = self.list.itemAt(event.position().toPoint())
            if item is not None:
                self.new_seed(item.data(Qt.ItemDataRole.UserRole))
                return True
        return super().eventFilter(watched, event)
