"""The editing canvas: the composite (or the live preview) with the selected layer's mask on top.

Wheel zooms about the cursor, middle-drag pans, left-drag paints with the current tool.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QRadialGradient, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.brush_editor.state import BrushDocumentState, ToolState

MASK_TINT = QColor(255, 60, 60)
MASK_OPACITY = 0.45
ZOOM_STEP = 1.25
ZOOM_RANGE = (0.1, 32.0)


class BrushCanvas(QWidget):
    """Paints on the selected layer's mask; emits ``stroke_finished(layer_id, before, after, label)``."""

    stroke_finished = Signal(str, QImage, QImage, str)

    def __init__(self, document: BrushDocumentState, tool: ToolState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document, self.tool = document, tool
        self.zoom, self.pan = 4.0, QPointF(16, 16)
        self._before: QImage | None = None
        self._last: QPointF | None = None
        self._box_start: QPointF | None = None
        self._box_end: QPointF | None = None
        self._pan_from: QPointF | None = None
        self.setMinimumSize(256, 256)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        for signal in (
            document.image_changed,
            document.preview_changed,
            document.layers_changed,
            document.selection_changed,
            document.project_changed,
        ):
            signal.connect(self.update)
        document.project_changed.connect(self.fit)

    # -- view -----------------------------------------------------------------------------

    def transform(self) -> QTransform:
        return QTransform().translate(self.pan.x(), self.pan.y()).scale(self.zoom, self.zoom)

    def to_image(self, point: QPointF) -> QPointF:
        return (point - self.pan) / self.zoom

    def zoom_at(self, factor: float, anchor: QPointF) -> None:
        anchor_image = self.to_image(anchor)
        self.zoom = min(ZOOM_RANGE[1], max(ZOOM_RANGE[0], self.zoom * factor))
        self.pan = anchor - anchor_image * self.zoom
        self.update()

    def fit(self) -> None:
        width, height = self.document.size
        if not width:
            return
        self.zoom = max(ZOOM_RANGE[0], min(self.width() / width, self.height() / height) * 0.95)
        self.pan = QPointF((self.width() - width * self.zoom) / 2, (self.height() - height * self.zoom) / 2)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(40, 40, 40))
        if not self.document.has_session:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter, "Generate a base image or import a photo"
            )
            return
        painter.setTransform(self.transform())
        painter.drawImage(0, 0, self.document.displayed_image())
        self._paint_preview(painter)
        self._paint_mask(painter)
        if self._box_start is not None and self._box_end is not None:
            painter.setPen(QPen(QColor(255, 255, 255), 0, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(self._box_start, self._box_end).normalized())

    def _paint_preview(self, painter: QPainter) -> None:
        preview = self.document.preview
        if preview is not None and not preview.isNull():  # transparent outside the edited region
            painter.drawImage(QRectF(0, 0, *self.document.size), preview)

    def _paint_mask(self, painter: QPainter) -> None:
        layer = self.document.selected
        if layer is None:
            return
        tint = QImage(layer.mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
        tint.fill(MASK_TINT)
        tint.setAlphaChannel(layer.mask)
        painter.setOpacity(MASK_OPACITY)
        painter.drawImage(0, 0, tint)
        painter.setOpacity(1.0)

    # -- input ----------------------------------------------------------------------------

    def wheelEvent(self, event) -> None:  # noqa: N802
        factor = ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP
        self.zoom_at(factor, event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = event.position()
            return
        layer = self.document.selected
        if event.button() != Qt.MouseButton.LeftButton or layer is None:
            return
        self._before = layer.mask.copy()
        point = self.to_image(event.position())
        if self.tool.tool == "box":
            self._box_start = self._box_end = point
        else:
            self._last = point
            self.dab(point)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            self.pan += event.position() - self._pan_from
            self._pan_from = event.position()
            self.update()
        elif self._box_start is not None:
            self._box_end = self.to_image(event.position())
            self.update()
        elif self._last is not None:
            self.stroke_to(self.to_image(event.position()))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = None
            return
        if self._box_start is not None:
            self.fill_box(QRectF(self._box_start, self.to_image(event.position())).normalized())
            self._box_start = self._box_end = None
        self._last = None
        self.finish_stroke()

    # -- painting (image coordinates) -----------------------------------------------------

    def stroke_to(self, point: QPointF) -> None:
        """Dabs every quarter radius from the last point, so fast strokes stay continuous."""
        spacing = max(1.0, self.tool.size / 8)
        delta = point - self._last
        distance = (delta.x() ** 2 + delta.y() ** 2) ** 0.5
        count = max(1, int(distance / spacing))
        for i in range(1, count + 1):
            self.dab(self._last + delta * (i / count))
        self._last = point

    def dab(self, point: QPointF) -> None:
        layer = self.document.selected
        radius = self.tool.size / 2
        color = QColor(0, 0, 0) if self.tool.tool == "eraser" else QColor(255, 255, 255)
        gradient = QRadialGradient(point, radius)
        gradient.setColorAt(0, color)
        gradient.setColorAt(max(0.0, 1 - self.tool.feather), color)
        gradient.setColorAt(1, QColor(color.red(), color.green(), color.blue(), 0))
        painter = QPainter(layer.mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(gradient))
        painter.drawEllipse(point, radius, radius)
        painter.end()
        self.update()

    def fill_box(self, rect: QRectF) -> None:
        layer = self.document.selected
        painter = QPainter(layer.mask)
        painter.fillRect(rect, QColor(255, 255, 255))
        painter.end()
        self.update()

    def finish_stroke(self) -> None:
        layer = self.document.selected
        if self._before is None or layer is None:
            return
        before, self._before = self._before, None
        if before != layer.mask:
            self.stroke_finished.emit(layer.id, before, layer.mask.copy(), f"{self.tool.tool} stroke")
