"""The window's cluster setting: Settings → Cluster… keeps the address for the next start.

(Collected only with the Ray extra, like every cluster test.)"""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog

from app.fake_bridge import FakeBridge
from app.main import cluster_transport
from app.main_window import MainWindow
from app.settings import load_settings


def test_settings_cluster_keeps_the_address_for_the_next_start(qtbot, monkeypatch):
    window = MainWindow(FakeBridge())
    qtbot.addWidget(window)
    try:
        settings_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Settings")
        action = next(a for a in settings_menu.actions() if a.text() == "Cluster…")
        monkeypatch.setattr(
            QInputDialog, "getText", staticmethod(lambda *a, **k: (" 192.168.1.10:6379 ", True))
        )
        action.trigger()
        assert load_settings().cluster_address == "192.168.1.10:6379"
        assert "192.168.1.10:6379" in window.statusBar().currentMessage()
        monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("", True)))
        action.trigger()
        assert load_settings().cluster_address == ""
    finally:
        window.memory_state.stop(wait_s=5)


def test_no_cluster_set_means_this_machines_workers():
    assert cluster_transport("") is None
