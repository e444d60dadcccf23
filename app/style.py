"""Small shared look-and-feel helpers: state colours, error text, pixmaps from PNG bytes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QLabel

RESOURCES = Path(__file__).resolve().parent.parent / "resources"

STATE_COLOURS = {
    "queued": "#6b7280",
    "running": "#2563eb",
    "finished": "#15803d",
    "cancelled": "#a16207",
    "failed": "#b91c1c",
    "starting": "#a16207",
    "ready": "#15803d",
    "busy": "#2563eb",
    "crashed": "#b91c1c",
    "stopped": "#6b7280",
}

ERROR_STYLE = "QLabel { color: #7f1d1d; background: #fee2e2; border: 1px solid #fca5a5; border-radius: 4px; padding: 6px; }"
NOTICE_STYLE = "QFrame#notice { background: #fef3c7; border-bottom: 1px solid #f59e0b; }"

ERROR_TITLES = {
    "bad_input": "Check the input",
    "missing_model": "Model not found",
    "out_of_memory": "Not enough memory",
    "worker_crashed": "Worker crashed",
    "node_lost": "Cluster node lost",
    "revoked": "Memory taken back",
    "interrupted": "Interrupted",
    "internal": "Internal error",
}


def coloured(text: str, state: str) -> str:
    """Rich text: ``text`` in the colour of ``state``."""
    return f'<span style="color:{STATE_COLOURS.get(state, "#111827")}">{text}</span>'


def error_text(kind: str, message: str) -> str:
    """What an error label shows: the kind in words, then the message."""
    return f"{ERROR_TITLES.get(kind, kind)}: {message}"


def pixmap_from_png(data: bytes | None) -> QPixmap | None:
    if not data:
        return None
    pixmap = QPixmap()
    return pixmap if pixmap.loadFromData(data, "PNG") else None


def show_pixmap(label: QLabel, pixmap: QPixmap, max_w: int, max_h: int) -> None:
    """Fit ``pixmap`` into the label's box; tiny demo images are scaled up with hard edges."""
    if pixmap.width() <= 0 or pixmap.height() <= 0:
        return
    smooth = pixmap.width() >= max_w or pixmap.height() >= max_h
    mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
    label.setPixmap(pixmap.scaled(max(1, max_w), max(1, max_h), Qt.AspectRatioMode.KeepAspectRatio, mode))


def app_icon() -> QIcon:
    for name in ("hearth.svg", "hearth.png"):
        path = RESOURCES / name
        if path.exists():
            icon = QIcon(str(path))
            if not icon.isNull():
                return icon
    return QIcon()
