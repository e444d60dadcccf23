"""Form widgets configured from the job schema: limits, default, step and tooltip come from the
request field's ``param()`` declaration (``workers/schema.py``), never from numbers typed here.

Also what every tab's form shares: its widgets named by request field (a tab's ``form_fields()``),
read into a request by ``request_from_form``, remembered between launches (``form_values`` /
``restore_form``, kept in ``Settings.forms``), and Ctrl+Enter to generate (``add_generate_shortcut``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from workers.schema import ParamInfo, params

QT_INT_MAX = 2**31 - 1
"""A QSpinBox holds a C int: seeds above this are reachable from the CLI and the API only."""


WHOLE_NUMBER_MAX = 2**53
"""The largest whole number a ``WholeNumberBox`` holds: a double is exact up to here."""


class WholeNumberBox(QDoubleSpinBox):
    """A spin box for a whole number past a C int (a seed from another SD app runs to 2^32-1):
    ``value()`` is an int; note that ``valueChanged`` still carries a float."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(0)

    def value(self) -> int:
        return int(super().value())

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return str(int(value))  # never "3.14159e+09" or the locale's group separators


def spin_for(
    request_cls: type,
    name: str,
    parent: QWidget | None = None,
    *,
    value=None,
    suffix: str = "",
    wide: bool = False,
) -> QSpinBox | QDoubleSpinBox:
    """A spin box for one numeric request field, starting at ``value`` or the field's default;
    ``wide``: a whole number up to ``WHOLE_NUMBER_MAX`` instead of a C int (``WholeNumberBox``)."""
    info = params(request_cls)[name]
    wide = wide and info.type is int
    if wide:
        box = WholeNumberBox(parent)
    else:
        box = QSpinBox(parent) if info.type is int else QDoubleSpinBox(parent)
    low, high = _limits(info, WHOLE_NUMBER_MAX if wide else QT_INT_MAX)
    if isinstance(box, QDoubleSpinBox) and not wide:
        box.setDecimals(_decimals(info.spec.step))
    box.setRange(low, high)
    box.setSingleStep(info.spec.step or 1)
    if info.spec.zero_means:
        box.setSpecialValueText(info.spec.zero_means)  # shown at the minimum, 0
    if suffix:
        box.setSuffix(suffix)
    box.setValue(info.default if value is None else value)
    box.setToolTip(tooltip(info))
    return box


def tooltip(info: ParamInfo) -> str:
    span = info.describe_range()
    return f"{info.spec.help[:1].upper()}{info.spec.help[1:]}" + (f" ({span})." if span else ".")


def _limits(info: ParamInfo, int_max: int = QT_INT_MAX) -> tuple[float, float]:
    low = 0 if info.spec.zero_means else info.spec.low
    high = info.spec.high
    if info.type is int:
        return int(low), int(min(high, int_max))
    return float(low), float(high)


def _decimals(step: float | None) -> int:
    if not step or float(step).is_integer():
        return 1
    return max(1, len(f"{step:g}".split(".")[1]))


PICKER_MIN_CHARACTERS = 14


def compact_picker(combo: QComboBox) -> QComboBox:
    """A picker whose minimum width does not follow its longest item: a model's title or a typed
    hub id would otherwise widen the tab, and with it the window, past a laptop's screen."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(PICKER_MIN_CHARACTERS)
    if combo.isEditable():  # a title longer than the box shows its start, not its tail
        combo.currentIndexChanged.connect(lambda _: combo.lineEdit().setCursorPosition(0))
    return combo


GENERATE_KEYS = ("Ctrl+Return", "Ctrl+Enter")
"""Ctrl with the main Enter key and with the keypad's (Qt names that one Enter)."""


def add_generate_shortcut(tab: QWidget, action: Callable[[], object]) -> list[QShortcut]:
    """Ctrl+Enter runs ``action`` while the focus is anywhere inside ``tab`` (one tab at a time)."""
    shortcuts = []
    for keys in GENERATE_KEYS:
        shortcut = QShortcut(QKeySequence(keys), tab)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(action)
        shortcuts.append(shortcut)
    return shortcuts


def form_values(fields: dict[str, QWidget]) -> dict[str, object]:
    """What each field of a form holds, as JSON data (a picker's choice by its item data, or the
    text typed into it), to be saved in ``Settings.forms``."""
    values: dict[str, object] = {}
    for name, widget in fields.items():
        if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            values[name] = widget.value()
        elif isinstance(widget, QCheckBox):
            values[name] = widget.isChecked()
        elif isinstance(widget, QComboBox):
            values[name] = _combo_value(widget)
        elif isinstance(widget, QLineEdit):
            values[name] = widget.text()
        elif isinstance(widget, QPlainTextEdit):
            values[name] = widget.toPlainText()
        else:
            raise TypeError(f"form field {name!r}: cannot remember a {type(widget).__name__}")
    return values


def request_from_form(request_cls: type, fields: dict[str, QWidget], **given):
    """The form as a ``request_cls`` (not yet validated): each request field from the widget named
    after it, read as ``form_values`` reads it (text without its surrounding blanks), unless it is
    ``given``; a field the form has no widget for keeps the schema's default."""
    names = {f.name for f in dataclasses.fields(request_cls)}
    read = form_values({n: w for n, w in fields.items() if n in names and n not in given})
    values = {n: v.strip() if isinstance(v, str) else v for n, v in read.items()}
    return request_cls(**values, **given)


def restore_form(fields: dict[str, QWidget], values: object) -> None:
    """Put saved values back into a form. A value of the wrong type, or a choice the picker no
    longer offers, leaves that field at its default; a spin box clamps a number to its range."""
    if not isinstance(values, dict):
        return
    for name, widget in fields.items():
        if name in values:
            _restore(widget, values[name])


def _combo_value(combo: QComboBox):
    index = combo.currentIndex()
    picked = index >= 0 and combo.currentText() == combo.itemText(index)
    data = combo.itemData(index) if picked else None
    return data if isinstance(data, (str, int, float)) and not isinstance(data, bool) else combo.currentText()


def _restore(widget: QWidget, value) -> None:
    if isinstance(value, bool):
        if isinstance(widget, QCheckBox):
            widget.setChecked(value)
    elif isinstance(widget, QSpinBox) and isinstance(value, int):
        widget.setValue(min(max(value, widget.minimum()), widget.maximum()))  # a C int: clamp first
    elif isinstance(widget, QDoubleSpinBox) and isinstance(value, (int, float)) and math.isfinite(value):
        widget.setValue(float(value))
    elif isinstance(widget, QComboBox) and isinstance(value, (str, int, float)):
        _restore_choice(widget, value)
    elif isinstance(widget, QLineEdit) and isinstance(value, str):
        widget.setText(value)
    elif isinstance(widget, QPlainTextEdit) and isinstance(value, str):
        widget.setPlainText(value)


def _restore_choice(combo: QComboBox, value) -> None:
    index = combo.findData(value)
    if index < 0 and isinstance(value, str):
        index = combo.findText(value)
    if index >= 0:
        combo.setCurrentIndex(index)
    elif combo.isEditable() and isinstance(value, str):
        combo.setEditText(value)  # a hub id or a folder typed in last time
