"""First run: the welcome names the machine and the models; a problem report can be made from Help."""

from __future__ import annotations

import zipfile

from app.fake_bridge import FakeBridge
from app.main_window import MainWindow
from app.report_dialog import ReportDialog
from app.welcome import WelcomeDialog, welcome_text
from workers.machine import MachineInfo, memory_profile

GIB = 1024**3


def test_welcome_describes_gpu_memory_profile_and_models(qtbot):
    info = MachineInfo(gpu_name="NVIDIA GeForce RTX 4060", vram_bytes=8 * GIB, ram_bytes=32 * GIB, cpus=16)
    text = welcome_text(info)
    assert "RTX 4060" in text and "Mid GPU" in text
    assert "SmolLM2" in text and "— ready" in text  # the embedded chat model ships with the install
    assert "Demo image model" in text and "hub id" in text
    dialog = WelcomeDialog(info)
    qtbot.addWidget(dialog)
    assert not dialog.isModal()


def test_memory_profile_without_a_gpu_says_cpu_only():
    assert (
        memory_profile(MachineInfo(gpu_name="", vram_bytes=0, ram_bytes=8 * GIB, cpus=2)).name == "CPU only"
    )


def test_welcome_is_remembered_once_shown(qtbot):
    window = MainWindow(FakeBridge())
    qtbot.addWidget(window)
    assert not window.settings.welcome_shown
    window.show_welcome()
    assert window.settings.welcome_shown and window.welcome.isVisible()
    window.welcome.close()


def test_report_dialog_writes_a_zip(qtbot, hearth_dirs):
    dialog = ReportDialog()
    qtbot.addWidget(dialog)
    dialog.create_report()
    assert dialog.report_path is not None
    with zipfile.ZipFile(dialog.report_path) as archive:
        assert "versions.json" in archive.namelist()
