"""Stands in for a sub-app whose tab is not built yet, saying what will be there and what works now."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

COMING = {
    "Chat": (
        "Chat with a local language model, streaming token by token.",
        'hearth run chat --prompt "What is the capital of France?"',
    ),
    "Video": (
        "Text-to-video with memory-sliced diffusion.",
        'hearth run video --prompt "a cat playing piano"',
    ),
    "Music": ("Text-to-music with chords, tempo and meter.", 'hearth run music --prompt "upbeat drums"'),
    "Brushes": ("Layered diffusion brushes: paint regions and regenerate them in seconds.", ""),
}


class PlaceholderTab(QWidget):
    """A calm note in place of a tab: what it will do, and the command line that may work meanwhile."""

    def __init__(self, title: str, bridge=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        what, command = COMING.get(title, (f"{title} is not available in this build.", ""))
        text = f"<h2>{html.escape(title)}</h2><p>{html.escape(what)}</p><p>This tab is not part of this build yet.</p>"
        if command:
            text += f"<p>From a terminal, meanwhile:<br><code>{html.escape(command)}</code></p>"
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.label)
        layout.addStretch(2)
