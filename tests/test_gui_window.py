"""The main window: every tab is there, worker states and the demo notice show. That the GUI
process never loads torch is tests/test_import_boundaries.py's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.brush_editor import BrushEditor
from app.chat_tab import ChatTab
from app.fake_bridge import FakeBridge
from app.image_tab import ImageTab
from app.main_window import DEMO_NOTICE, MainWindow
from app.music_tab import MusicTab
from app.settings import load_settings
from app.video_tab import VideoTab
from models.catalog import HOW_TO_ADD_MODELS
from workers.protocol import WorkerKind, WorkerState, WorkerStatus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def window(qtbot):
    bridge = FakeBridge()
    win = MainWindow(bridge)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.memory_state.stop(wait_s=5)


def test_window_has_all_tabs_and_docks(window):
    assert window.tab_titles()[:4] == ["Chat", "Image", "Video", "Music"] and "Gallery" in window.tab_titles()
    image_titles = [window.image_tabs.tabText(i) for i in range(window.image_tabs.count())]
    assert image_titles == ["Text to image", "Brushes"]
    assert isinstance(window.image_tabs.widget(0), ImageTab)
    assert isinstance(window.image_tabs.widget(1), BrushEditor)
    tabs = [type(window.tabs.widget(i)) for i in range(window.tabs.count())]
    assert tabs[0] is ChatTab and tabs[2] is VideoTab and tabs[3] is MusicTab
    assert window.jobs_dock.isVisible() and window.memory_dock.isVisible()


def test_demo_notice_tells_how_to_add_a_real_model(qtbot, window):
    assert window.notice.isVisible()
    assert window.notice.label.text().startswith(
        "Demo models: image, video and music run tiny random-weight models"
    )
    assert HOW_TO_ADD_MODELS.split(": ", 1)[1] in DEMO_NOTICE


def test_status_bar_follows_worker_states(window):
    bridge = window.bridge
    bridge.emit_event(WorkerState(kind=WorkerKind.image, status=WorkerStatus.starting))
    assert "image" in window.worker_status.text("image") and "starting" in window.worker_status.text("image")
    bridge.emit_event(WorkerState(kind=WorkerKind.image, status=WorkerStatus.ready, pid=123))
    bridge.emit_event(WorkerState(kind=WorkerKind.chat, status=WorkerStatus.crashed, detail="keeps crashing"))
    assert "ready" in window.worker_status.text("image")
    assert "crashed" in window.worker_status.text("chat")
    assert "keeps crashing" in window.worker_status.labels[WorkerKind.chat].toolTip()


def test_closing_the_window_remembers_the_form_and_layout(qtbot, window):
    window.image_tab.width_box.setValue(256)
    window.close()
    settings = load_settings()
    assert settings.image_width == 256 and settings.window_state


def test_hearth_opens_its_window_and_saves_a_screenshot(tmp_path):
    shot = tmp_path / "window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [
        sys.executable,
        "-m",
        "app",
        "--workers",
        "",
        "--tab",
        "image",
        "--screenshot",
        str(shot),
        "--screenshot-delay",
        "200",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width >= 800 and image.height >= 600
