"""The window through a real image worker process: type a prompt, press Generate, see the image."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import Qt

from app.bridge import Bridge
from app.main_window import MainWindow
from workers.protocol import WorkerKind
from workers.supervisor import Supervisor

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def real_window(qtbot):
    supervisor = Supervisor(kinds=[WorkerKind.image], restore_queue=False)
    bridge = Bridge(supervisor)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    supervisor.start()
    try:
        yield window, supervisor
    finally:
        window.close()
        supervisor.shutdown()
        supervisor.store.close()


def test_generate_an_image_from_the_window(qtbot, real_window):
    real_window, supervisor = real_window
    tab = real_window.image_tab
    real_window.tabs.setCurrentIndex(real_window.tab_titles().index("Image"))
    tab.prompt.setPlainText("a tiny red boat")
    tab.width_box.setValue(64)
    tab.height_box.setValue(64)
    tab.steps.setValue(4)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    job = tab.job.job_id
    assert job is not None
    qtbot.waitUntil(lambda: real_window.jobs_panel.row(job) is not None, timeout=5000)

    qtbot.waitUntil(lambda: bool(tab.result_path), timeout=120_000)
    qtbot.waitUntil(lambda: tab.job is None, timeout=10_000)

    assert Path(tab.result_path).is_file()
    assert tab.image.pixmap() is not None and not tab.image.pixmap().isNull()
    assert tab.error.isHidden() and tab.status.text().startswith("Done")
    row = real_window.jobs_panel.row(job)
    assert "finished" in row.title.text() and not row.thumbnail.pixmap().isNull()
    qtbot.waitUntil(lambda: "ready" in real_window.worker_status.text(WorkerKind.image), timeout=5000)

    worker = psutil.Process(supervisor.worker_pid(WorkerKind.image))
    real_window.close()
    supervisor.shutdown()
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


def test_first_brush_session_on_an_empty_data_dir(qtbot, real_window, hearth_dirs):
    """The first thing a creator does in the Brushes tab: Generate base, on a fresh install."""
    real_window, _ = real_window
    assert not (hearth_dirs / "data" / "projects").exists()
    real_window.tabs.setCurrentIndex(real_window.tab_titles().index("Image"))
    real_window.image_tabs.setCurrentIndex(1)
    editor = real_window.image_tabs.widget(1)
    editor.prompt_edit.setText("a mountain lake")
    editor.steps_spin.setValue(4)
    failures = []
    editor.bridge.event.connect(lambda e: failures.append(e) if type(e).__name__ == "Failed" else None)
    assert editor.generate_base() is not None
    qtbot.waitUntil(lambda: editor.document.has_session or bool(failures), timeout=120_000)
    assert not failures, failures[0].message
    assert editor.document.project_path.is_file()
    assert editor.document.project_path.parent == hearth_dirs / "data" / "projects"
