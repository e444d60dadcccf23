"""Every tab's form comes back as it was left after the window is closed and opened again, and
Ctrl+Enter starts the tab's job wherever the focus is inside it."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from app.fake_bridge import FakeBridge
from app.form_binding import form_values, restore_form
from app.main_window import MainWindow
from app.settings import load_settings, settings_path
from workers.protocol import BrushBaseRequest, ChatRequest, ImageRequest, MusicRequest, VideoRequest
from workers.schema import default_of


def open_window(qtbot) -> tuple[MainWindow, FakeBridge]:
    bridge = FakeBridge()
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    return window, bridge


def fill_every_form(window: MainWindow, custom_model: str) -> None:
    chat = window.chat_tab
    chat._refresh_models(chat.state.add_model(custom_model))  # what "Add model ..." does
    chat.quant_picker.setCurrentIndex(chat.quant_picker.findData("int8"))
    chat.system_prompt.setPlainText("Answer like a pirate.")
    chat.temperature.setValue(0.3)
    chat.top_p.setValue(0.8)
    chat.top_k.setValue(12)
    chat.max_tokens.setValue(99)
    chat.repetition_penalty.setValue(1.2)

    video = window.video_tab
    video.prompt.setPlainText("a paper boat")
    video.negative_prompt.setText("blurry")
    video.frames_box.setValue(12)
    video.fps_box.setValue(12)
    video.width_box.setValue(96)
    video.steps_box.setValue(6)
    video.seed_box.setValue(1234)
    video.memory_mode.setCurrentIndex(video.memory_mode.findData("manual"))
    video.slices_box.setValue(3)
    video.rehash_box.setChecked(True)
    video.format_picker.setCurrentIndex(video.format_picker.findData("gif"))

    music = window.music_tab
    music.prompt.setPlainText("calm piano")
    music.seconds.setValue(5)
    music.chords.setText("C G Am F")
    music.bpm.setValue(96)
    music.meter.setCurrentText("3/4")
    music.temperature.setValue(0.7)
    music.seed.setValue(77)
    music.window_seconds.setValue(2)
    music.model_picker.setCurrentIndex(music.model_picker.findData("demo-musicgen-melody"))

    brushes = window.brush_editor
    brushes.prompt_edit.setText("a mountain lake")
    brushes.size_combo.setCurrentIndex(brushes.size_combo.findData(128))
    brushes.steps_spin.setValue(9)
    brushes.seed_spin.setValue(5)
    brushes.brush_size.setValue(40)
    brushes.brush_feather.setValue(0.5)


def test_every_form_is_restored_after_closing_and_reopening(qtbot, tmp_path):
    custom_model = str(tmp_path / "my-chat-model.gguf")
    first, _ = open_window(qtbot)
    fill_every_form(first, custom_model)
    first.close()
    saved = json.loads(settings_path().read_text())["forms"]
    # "image": the Image tab's fields beyond Settings' own (sampler, batch, strength, LoRAs...)
    assert set(saved) == {"chat", "video", "music", "brushes", "image"} and saved["music"]["seed"] == 77

    window, bridge = open_window(qtbot)
    chat = window.chat_tab
    assert chat.model_picker.currentData() == custom_model
    assert (chat.quant_picker.currentData(), chat.system_prompt.toPlainText()) == (
        "int8",
        "Answer like a pirate.",
    )
    assert (chat.temperature.value(), chat.top_p.value(), chat.top_k.value()) == (0.3, 0.8, 12)
    assert (chat.max_tokens.value(), chat.repetition_penalty.value()) == (99, 1.2)
    # The restored values are what the next answer is asked with.
    chat.input.setPlainText("Ahoy?")
    chat.send()
    request = bridge.last_request()
    assert request.messages[0].content == "Answer like a pirate."
    assert (request.model, request.quant, request.temperature, request.max_new_tokens) == (
        custom_model,
        "int8",
        0.3,
        99,
    )

    video = window.video_tab
    video.generate()
    request = bridge.last_request()
    assert isinstance(request, VideoRequest)
    assert (request.prompt, request.negative_prompt, request.frames, request.fps, request.width) == (
        "a paper boat",
        "blurry",
        12,
        12,
        96,
    )
    assert (request.steps, request.seed, request.memory_mode, request.step_rehash, request.format) == (
        6,
        1234,
        "slices:3",
        True,
        "gif",
    )
    assert video.slices_box.isEnabled()

    music = window.music_tab.request()
    assert (music.prompt, music.seconds, music.chords, music.bpm, music.meter) == (
        "calm piano",
        5,
        "C G Am F",
        96,
        "3/4",
    )
    assert (music.temperature, music.seed, music.window_seconds, music.model) == (
        0.7,
        77,
        2,
        "demo-musicgen-melody",
    )

    brushes = window.brush_editor
    assert (brushes.prompt_edit.text(), brushes.size_combo.currentData()) == ("a mountain lake", 128)
    assert (brushes.steps_spin.value(), brushes.seed_spin.value()) == (9, 5)
    assert (brushes.tool.size, brushes.tool.feather) == (40, 0.5)  # the brush itself, not only the box


def test_a_damaged_form_entry_leaves_only_that_field_at_its_default(qtbot):
    first, _ = open_window(qtbot)
    first.close()
    data = json.loads(settings_path().read_text())
    data["forms"]["music"].update(
        seed="seventy", seconds=10**12, meter="11/17", prompt=["x"], bpm=float("nan")
    )
    data["forms"]["video"] = "not a form"
    settings_path().write_text(json.dumps(data))
    assert load_settings().forms["music"]["seed"] == "seventy"

    window, _ = open_window(qtbot)
    music = window.music_tab
    assert music.seed.value() == default_of(MusicRequest, "seed")
    assert music.seconds.value() == music.seconds.maximum()  # clamped to the schema's limit
    assert music.meter.currentText() == "4/4" and music.prompt.toPlainText() == ""
    assert music.bpm.value() == 0
    assert window.video_tab.prompt.toPlainText() == ""


def test_form_values_refuse_a_widget_they_cannot_keep(qtbot):
    from PySide6.QtWidgets import QSlider

    with pytest.raises(TypeError, match="slider"):
        form_values({"slider": QSlider()})
    box, combo, line = QSpinBox(), QComboBox(editable=True), QLineEdit()
    box.setRange(0, 10)
    combo.addItem("Demo", "demo-id")
    restore_form({"n": box, "model": combo, "text": line}, {"n": 4, "model": "my/hub-model", "text": "hi"})
    assert (box.value(), combo.currentText(), line.text()) == (4, "my/hub-model", "hi")
    assert form_values({"model": combo}) == {"model": "my/hub-model"}  # typed text, kept as typed
    restore_form({"model": combo}, {"model": "demo-id"})
    assert form_values({"model": combo}) == {"model": "demo-id"}
    spin = QDoubleSpinBox()
    restore_form({"x": spin}, {"x": True})  # a bool is not a number here
    assert spin.value() == 0


def press_ctrl_enter(qtbot, window: MainWindow, widget) -> None:
    window.activateWindow()
    widget.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is widget, timeout=3000)
    qtbot.keyClick(widget, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def test_ctrl_enter_generates_in_every_tab(qtbot):
    window, bridge = open_window(qtbot)
    qtbot.waitExposed(window)
    tabs = window.tabs

    tabs.setCurrentWidget(window.chat_tab)
    qtbot.keyClicks(window.chat_tab.input, "hello there")
    press_ctrl_enter(qtbot, window, window.chat_tab.input)
    assert isinstance(bridge.last_request(), ChatRequest)
    assert bridge.last_request().messages[-1].content == "hello there"

    tabs.setCurrentWidget(window.image_tabs)
    window.image_tabs.setCurrentWidget(window.image_tab)
    window.image_tab.prompt.setPlainText("a red apple")
    press_ctrl_enter(qtbot, window, window.image_tab.prompt)
    assert isinstance(bridge.last_request(), ImageRequest)

    window.image_tabs.setCurrentWidget(window.brush_editor)
    window.brush_editor.prompt_edit.setText("a mountain lake")
    press_ctrl_enter(qtbot, window, window.brush_editor.prompt_edit)
    assert isinstance(bridge.last_request(), BrushBaseRequest)

    tabs.setCurrentWidget(window.video_tab)
    window.video_tab.prompt.setPlainText("a paper boat")
    press_ctrl_enter(qtbot, window, window.video_tab.steps_box)  # from any field of the form
    assert isinstance(bridge.last_request(), VideoRequest)

    tabs.setCurrentWidget(window.music_tab)
    window.music_tab.prompt.setPlainText("calm piano")
    press_ctrl_enter(qtbot, window, window.music_tab.prompt)
    assert isinstance(bridge.last_request(), MusicRequest)
    assert window.music_tab.prompt.toPlainText() == "calm piano", "Ctrl+Enter is not typed as a new line"
    assert len(bridge.submitted) == 5, "one job per press, in the tab that has the focus only"


def test_a_long_model_title_shows_its_start_in_a_narrow_picker(qtbot):
    from app.form_binding import compact_picker

    combo = compact_picker(QComboBox(editable=True))
    qtbot.addWidget(combo)
    combo.addItem("Demo AnimateDiff (tiny, random weights)", "demo")
    combo.addItem("Another model with a very long title indeed", "other")
    combo.setCurrentIndex(1)
    assert combo.lineEdit().cursorPosition() == 0
    assert combo.minimumSizeHint().width() < combo.fontMetrics().horizontalAdvance(combo.itemText(1))
