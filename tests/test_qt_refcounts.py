"""The Qt binding must not leak references to immortal objects.

PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` on every Qt method that returns
nothing; an idle window makes about 25 such calls a second and the interpreter aborts after
about ten minutes with ``none_dealloc: deallocating None``. Python 3.11 keeps real refcounts on
``None``, ``True``, ``False`` and small ints, so a few thousand calls make any such leak visible;
on 3.12+ these objects are immortal and the count does not move either way.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QLabel, QProgressBar, QWidget

CALLS = 5000
BATCH = 100
"""Counts are compared after every batch: a leaky binding would otherwise drive the count of
``None`` to zero and abort the interpreter before the assertion could name the leak."""
IMMORTALS = {"None": None, "True": True, "False": False, "0": 0, "1": 1}


def _counts() -> dict[str, int]:
    return {name: sys.getrefcount(obj) for name, obj in IMMORTALS.items()}


def _label_calls(n: int) -> None:
    label = QLabel()
    for i in range(n):
        label.setText("x")
        label.setVisible(False)
        label.setEnabled(i % 2 == 0)
    label.deleteLater()


def _widget_calls(n: int) -> None:
    widget = QWidget()
    bar = QProgressBar()
    for i in range(n):
        widget.update()
        widget.setMinimumWidth(0)
        bar.setValue(i % 100)
        bar.setRange(0, 100)
    bar.deleteLater()
    widget.deleteLater()


def _painter_calls(n: int) -> None:
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    pen = QPen(QColor(10, 20, 30))
    for _ in range(n):
        painter.setPen(pen)
        painter.drawPoint(1, 1)
    painter.end()


def _object_calls(n: int) -> None:
    timer = QTimer()
    owner = QObject()
    for i in range(n):
        timer.setInterval(i % 50 + 1)
        owner.setObjectName("o")
        owner.blockSignals(False)
    timer.deleteLater()
    owner.deleteLater()


@pytest.mark.parametrize("calls", [_label_calls, _widget_calls, _painter_calls, _object_calls])
def test_void_qt_calls_keep_refcounts_of_immortal_objects(qapp, calls):
    calls(BATCH)  # warm up: first calls may cache type objects or strings
    before = _counts()
    for done in range(BATCH, CALLS + 1, BATCH):
        calls(BATCH)
        after = _counts()
        # Other code may take or drop a few references meanwhile; a leaky binding drops at
        # least one per call.
        drops = {name: before[name] - after[name] for name in IMMORTALS if before[name] - after[name] > 50}
        assert not drops, f"the Qt binding lost references after {done} rounds of void calls: {drops}"
