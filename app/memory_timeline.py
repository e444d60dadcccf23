"""The Memory panel's timeline: each app's leased memory stacked over time, memory used outside
Hearth on top, and the budget line, from the arbiter snapshots the panel already polls."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

from workers.arbiter.units import format_bytes

WINDOW_S = 300.0
OWNER_COLOURS = {"chat": "#4e79a7", "image": "#f28e2b", "video": "#59a14f", "music": "#b07aa1"}
OUTSIDE_COLOUR = "#9c9c9c"
OTHER_COLOUR = "#edc948"


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    at: float
    by_app: dict[str, int]
    outside: int
    budget: int


def app_of(owner: str) -> str:
    """``image-worker`` -> ``image``; other clients (CLI, tests) are grouped as ``other``."""
    name = owner.split("-", 1)[0]
    return name if name in OWNER_COLOURS else "other"


class MemoryTimeline(QWidget):
    def __init__(self, parent: QWidget | None = None, window_s: float = WINDOW_S) -> None:
        super().__init__(parent)
        self.window_s = window_s
        self.points: deque[TimelinePoint] = deque()
        self.setMinimumHeight(90)
        self.setToolTip("Leased memory per app over the last 5 minutes; grey: used outside Hearth")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(360, 110)

    def add_snapshot(self, snapshot, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        by_app: dict[str, int] = {}
        for lease in snapshot.leases:
            by_app[app_of(lease.owner)] = by_app.get(app_of(lease.owner), 0) + lease.bytes
        self.points.append(TimelinePoint(now, by_app, snapshot.used_outside, snapshot.budget))
        while self.points and now - self.points[0].at > self.window_s:
            self.points.popleft()
        self.update()

    def apps(self) -> list[str]:
        seen = {name for point in self.points for name in point.by_app}
        return [name for name in (*OWNER_COLOURS, "other") if name in seen]

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#1f2329"))
        if len(self.points) < 2:
            painter.setPen(QColor("#cccccc"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "timeline starts with the arbiter")
            return
        area = QRectF(self.rect()).adjusted(4, 14, -4, -4)
        top = max(p.budget + p.outside for p in self.points) or 1
        self._draw_layers(painter, area, top)
        self._draw_budget(painter, area, top)

    def _x(self, area: QRectF, at: float) -> float:
        end = self.points[-1].at
        return area.right() - (end - at) / self.window_s * area.width()

    def _y(self, area: QRectF, value: float, top: float) -> float:
        return area.bottom() - value / top * area.height()

    def _draw_layers(self, painter: QPainter, area: QRectF, top: float) -> None:
        below = [0.0] * len(self.points)
        layers = [(name, OWNER_COLOURS.get(name, OTHER_COLOUR)) for name in self.apps()]
        for name, colour in [*layers, ("outside", OUTSIDE_COLOUR)]:
            above = [
                b + (p.outside if name == "outside" else p.by_app.get(name, 0))
                for b, p in zip(below, self.points, strict=True)
            ]
            xs = [self._x(area, p.at) for p in self.points]
            upper = [QPointF(x, self._y(area, v, top)) for x, v in zip(xs, above, strict=True)]
            lower = [QPointF(x, self._y(area, v, top)) for x, v in zip(xs, below, strict=True)]
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(colour))
            painter.drawPolygon(QPolygonF(upper + lower[::-1]))
            below = above

    def _draw_budget(self, painter: QPainter, area: QRectF, top: float) -> None:
        budget = self.points[-1].budget
        y = self._y(area, budget, top)
        painter.setPen(QPen(QColor("#ff6b6b"), 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        self._draw_legend(painter, area, budget)

    def _draw_legend(self, painter: QPainter, area: QRectF, budget: int) -> None:
        """``budget 7.5 GiB  chat image ...``, each app name in its own colour."""
        x = area.left()
        entries = [(f"budget {format_bytes(budget)}", "#ff6b6b")]
        entries += [(name, OWNER_COLOURS.get(name, OTHER_COLOUR)) for name in self.apps()]
        entries.append(("outside Hearth", OUTSIDE_COLOUR))
        for text, colour in entries:
            painter.setPen(QColor(colour))
            painter.drawText(QPointF(x, 11), text)
            x += painter.fontMetrics().horizontalAdvance(text) + 10
