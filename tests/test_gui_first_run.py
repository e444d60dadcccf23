"""First run: the welcome names the machine and the models; a problem report can be made from Help;
the window keeps its width when a long answer arrives; and on a fresh install, with no folder made
beforehand, every tab's main action works the first time through the real workers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import soundfile
from PySide6.QtWidgets import QApplication

from app.bridge import Bridge
from app.fake_bridge import FakeBridge
from app.main import worker_kinds
from app.main_window import MainWindow
from app.report_dialog import ReportDialog
from app.welcome import WelcomeDialog, welcome_text
from workers.machine import MachineInfo, memory_profile
from workers.protocol import Failed, Finished, Metric, TextDelta, WorkerKind
from workers.supervisor import Supervisor

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


# -- the window must not grow when a long answer arrives


def long_answer() -> str:
    code = "```python\nresult = " + "a_very_long_identifier_" * 30 + "\n```\n"
    return "Here is a long answer. " * 200 + code + "See https://example.com/" + "x" * 400


def test_a_long_answer_does_not_widen_the_window(qtbot):
    bridge = FakeBridge()
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    width, minimum = window.width(), window.minimumSizeHint().width()
    # A 1366 px laptop screen (the commonest) holds the whole window, docks included.
    assert minimum <= 1366, f"the window needs {minimum} px"
    chat = window.chat_tab
    chat.input.setPlainText("Tell me everything")
    chat.send()
    job = bridge.submitted[-1][0]
    text = long_answer()
    for start in range(0, len(text), 80):
        bridge.emit_event(TextDelta(job_id=job, text=text[start : start + 80]))
    bridge.emit_event(
        Finished(
            job_id=job,
            elapsed_s=9.5,
            metrics=(
                Metric(name="decode_tok_s", value=123.4),
                Metric(name="ttft_s", value=0.42),
                Metric(name="new_tokens", value=1024),
            ),
        )
    )
    qtbot.waitUntil(lambda: "a_very_long_identifier_" in chat.view.toPlainText(), timeout=5000)
    qtbot.waitUntil(lambda: "tokens/s" in chat.metrics_label.text(), timeout=5000)
    chat.status_label.setText("Error: cannot read /" + "a_long_folder_name/" * 30)  # a long failure too
    QApplication.processEvents()
    assert (window.width(), window.minimumSizeHint().width()) == (width, minimum)


# -- every tab's main action, once, through the real workers, on a fresh install

FIRST_RUN_TIMEOUT_MS = 420_000
DEFAULT_KINDS = ",".join(kind.value for kind in WorkerKind)  # what `hearth` starts by default


@pytest.fixture
def fresh_install(qtbot, hearth_dirs, monkeypatch):
    """The real window and every worker, on data, config and models folders that do not exist yet
    (the session's shared demo models are left out: a first run builds its own)."""
    monkeypatch.delenv("HEARTH_MODELS_DIR", raising=False)
    assert not hearth_dirs.exists()
    supervisor = Supervisor(kinds=worker_kinds(DEFAULT_KINDS), restore_queue=False)
    bridge = Bridge(supervisor)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.resize(1440, 900)
    window.show()
    supervisor.start()
    failures: list[Failed] = []
    bridge.event.connect(lambda event: failures.append(event) if isinstance(event, Failed) else None)
    try:
        yield window, failures, hearth_dirs
    finally:
        window.close()
        supervisor.shutdown()
        supervisor.store.close()


def _no_failure(failures: list[Failed]) -> None:
    assert not failures, "\n".join(f"{f.kind.value}: {f.message}" for f in failures)


def _paint_square(document, layer_id: str, left: int, top: int, side: int) -> None:
    mask = document.layer(layer_id).mask.copy()
    for y in range(top, top + side):
        for x in range(left, left + side):
            mask.setPixel(x, y, 255)
    document.set_mask(layer_id, mask)


@pytest.mark.slow  # four workers and their demo models built from nothing: 1.5-5 minutes
@pytest.mark.timeout(900)
def test_each_tab_works_the_first_time(qtbot, fresh_install):
    window, failures, root = fresh_install
    width = window.width()
    chat, image, brushes = window.chat_tab, window.image_tab, window.brush_editor
    video, music = window.video_tab, window.music_tab

    # Every tab's main action at once, as a new user clicking through the tabs would.
    chat.max_tokens.setValue(24)
    chat.temperature.setValue(0.0)
    chat.input.setPlainText("Which city is the capital of France?")
    chat.send()
    image.prompt.setPlainText("a tiny red boat")
    image.width_box.setValue(64)
    image.height_box.setValue(64)
    image.steps.setValue(2)
    image.generate()
    brushes.prompt_edit.setText("a mountain lake")
    brushes.size_combo.setCurrentIndex(brushes.size_combo.findData(64))
    brushes.steps_spin.setValue(4)
    assert brushes.generate_base() is not None, brushes.status.text()
    video.prompt.setPlainText("a paper boat on a pond")
    for box, value in (
        (video.frames_box, 4),
        (video.steps_box, 2),
        (video.width_box, 64),
        (video.height_box, 64),
    ):
        box.setValue(value)
    video.generate()
    music.prompt.setPlainText("calm piano")
    music.seconds.setValue(1.5)
    music.window_seconds.setValue(0.5)  # a long piece in miniature: several generation windows
    music.generate()
    assert image.job and video.state.job and music.state.job and chat.state.job, failures

    def all_done() -> bool:
        busy = (
            chat.state.busy,
            image.job is not None,
            brushes.base_job is not None,
            video.state.busy,
            music.state.busy,
        )
        return bool(failures) or not any(busy)

    qtbot.waitUntil(all_done, timeout=FIRST_RUN_TIMEOUT_MS)
    _no_failure(failures)

    answer = [m for m in chat.state.messages() if m.role == "assistant"]
    assert answer and answer[-1].content.strip() and answer[-1].state == "done"
    assert "tokens/s" in chat.metrics_label.text()
    assert window.width() == width, "the answer widened the window"

    assert Path(image.result_path).is_file() and not image.image.pixmap().isNull()

    project = brushes.document.project_path
    assert brushes.document.has_session and project.parent == root / "data" / "projects"
    brushes.panel.add_button.click()  # one layer edit: a square painted on a new layer
    _paint_square(brushes.document, brushes.document.selected.id, 16, 16, 24)
    qtbot.waitUntil(lambda: brushes.render_job is not None, timeout=10_000)  # the edit renders itself
    qtbot.waitUntil(lambda: bool(failures) or brushes.render_job is None, timeout=FIRST_RUN_TIMEOUT_MS)
    _no_failure(failures)
    composite, base = brushes.document.composite, brushes.document.base_image
    assert composite is not None and composite.size() == base.size()
    assert composite.pixelColor(62, 62) == base.pixelColor(62, 62), "outside the mask the base is kept"

    assert Path(video.state.result).is_file()
    qtbot.waitUntil(lambda: video.player.position() > 0, timeout=30_000)  # it plays in the tab

    song = music.state.song
    assert song is not None and song.seconds == pytest.approx(1.5, abs=0.01) and not song.partial
    assert len(song.windows) >= 3 and [w.seed for w in song.windows] == list(range(len(song.windows)))
    assert song.windows[0].start_s == 0 and song.windows[-1].end_s == pytest.approx(song.seconds, abs=1e-3)
    for before, after in zip(song.windows, song.windows[1:], strict=False):
        assert after.start_s == pytest.approx(before.end_s, abs=1e-3) and after.crossfade_s > 0
    # The waveform is the file's own samples, read here independently of the tab.
    samples, _ = soundfile.read(str(song.path), dtype="float32", always_2d=True)
    lows, highs = music.waveform.columns()
    mono = samples.mean(axis=1)
    edges = [(i * mono.size) // len(highs) for i in range(len(highs) + 1)]
    assert highs.tolist() == [mono[a:b].max() for a, b in zip(edges, edges[1:], strict=False)]
    assert lows.tolist() == [mono[a:b].min() for a, b in zip(edges, edges[1:], strict=False)]
    music.play()
    qtbot.waitUntil(lambda: music.player.position() > 0, timeout=30_000)

    # What a first run made, it made in its own folders.
    data = root / "data"
    assert (data / "outputs").is_dir() and (data / "models").is_dir() and (data / "hearth.db").is_file()
    _no_failure(failures)
