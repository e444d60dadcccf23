"""The Image tab's LoRA list: LoRA files or linked LoRA models, each with its weight.

It reads and writes the request's one-line ``loras`` field (``workers/lora_list.py``), so what the
list shows is exactly what is submitted, saved and recalled. LoRAs linked with ``hearth models``
are offered from the model registry when the Add menu opens (not before: a first run with no
registry has nothing to open).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workers.errors import BadInput
from workers.lora_list import MAX_LORA_WEIGHT, MAX_LORAS, LoraChoice, format_loras, parse_loras

ROW_HEIGHT = 24


class LoraList(QWidget):
    """Rows of (LoRA, weight); ``text()`` is the request's ``loras`` field."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["LoRA", "Weight"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFixedHeight(ROW_HEIGHT * 3 + 28)
        self.table.setToolTip("LoRAs applied on top of the model for this image, strongest weight wins")
        self.add_button = QToolButton()
        self.add_button.setText("Add")
        self.add_button.setToolTip("Add a LoRA file (.safetensors) or a LoRA linked with `hearth models`")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_menu = QMenu(self.add_button)
        self.add_menu.aboutToShow.connect(self._fill_add_menu)
        self.add_button.setMenu(self.add_menu)
        self.remove_button = QToolButton()
        self.remove_button.setText("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    # ------------------------------------------------------------------ the field

    def choices(self) -> list[LoraChoice]:
        return [
            LoraChoice(
                self.table.item(row, 0).data(_NAME_ROLE), round(self.table.cellWidget(row, 1).value(), 2)
            )
            for row in range(self.table.rowCount())
        ]

    def text(self) -> str:
        """The ``loras`` field of the request this list describes."""
        return format_loras(self.choices())

    def set_text(self, text: str) -> None:
        """Show the LoRAs of a ``loras`` field (``BadInput`` if it does not parse)."""
        choices = parse_loras(text)
        self.table.setRowCount(0)
        for choice in choices:
            self.add(choice.name, choice.weight)

    def add(self, name: str, weight: float = 1.0) -> None:
        if self.table.rowCount() >= MAX_LORAS:
            raise BadInput(f"at most {MAX_LORAS} LoRAs at once", field="loras")
        row = self.table.rowCount()
        self.table.insertRow(row)
        item = QTableWidgetItem(Path(name).name if Path(name).suffix else name)
        item.setData(_NAME_ROLE, name)
        item.setToolTip(name)
        self.table.setItem(row, 0, item)
        spin = QDoubleSpinBox()
        spin.setRange(-MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)
        spin.setSingleStep(0.05)
        spin.setDecimals(2)
        spin.setValue(weight)
        spin.setToolTip(
            "How strongly the LoRA applies: 0 leaves the image as without it, negative reverses it"
        )
        spin.valueChanged.connect(self.changed)
        self.table.setCellWidget(row, 1, spin)
        self.changed.emit()

    @Slot()
    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        if rows:
            self.changed.emit()

    # ------------------------------------------------------------------ adding

    @Slot()
    def _fill_add_menu(self) -> None:
        self.add_menu.clear()
        self.add_menu.addAction("File…", self._browse)
        linked = linked_loras()
        if linked:
            self.add_menu.addSeparator()
        for model_id, name in linked:
            self.add_menu.addAction(name, lambda model_id=model_id: self.add(model_id))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a LoRA", "", "LoRA files (*.safetensors);;All files (*)"
        )
        if path:
            self.add(path)


_NAME_ROLE = 0x0100 + 1  # Qt.UserRole + 1: the full path or id behind the short name shown


def linked_loras() -> list[tuple[str, str]]:
    """(id, name) of every LoRA linked in the model registry whose file is there."""
    from models.identity import FoundKind
    from models.registry import ModelRegistry
    from workers.paths import data_dir

    if not (data_dir() / "models.db").exists():
        return []  # nothing linked yet; opening the registry would create it
    with ModelRegistry() as registry:
        return [(m.id, m.name) for m in registry.models(FoundKind.lora) if not m.missing]
