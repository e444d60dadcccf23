"""The Chat tab against a fake bridge: typing, sending, streaming, stopping, editing, settings."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer

from app.chat_tab import ADD_MODEL, RENDER_DELAY_MS, ChatTab
from app.fake_bridge import FakeBridge
from workers.errors import ErrorKind
from workers.protocol import Cancelled, ChatRequest, Failed, Finished, JobStatus, Metric, TextDelta


@pytest.fixture
def tab(qtbot):
    bridge = FakeBridge()
    widget = ChatTab(bridge)
    qtbot.addWidget(widget)
    widget.show()
    return widget, bridge


def type_and_press_enter(qtbot, tab_widget, text: str) -> None:
    qtbot.keyClicks(tab_widget.input, text)
    qtbot.keyClick(tab_widget.input, Qt.Key.Key_Return)


def stream(bridge, job_id: str, *pieces: str) -> None:
    for piece in pieces:
        bridge.emit_event(TextDelta(job_id=job_id, text=piece))


def shown(widget) -> str:
    return widget.view.toPlainText()


def test_enter_sends_and_shift_enter_adds_a_line(tab, qtbot):
    widget, bridge = tab
    qtbot.keyClicks(widget.input, "first line")
    qtbot.keyClick(widget.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(widget.input, "second line")
    assert not bridge.submitted
    assert widget.input.toPlainText() == "first line\nsecond line"
    qtbot.keyClick(widget.input, Qt.Key.Key_Return)
    job_id, request = bridge.submitted[0]
    assert isinstance(request, ChatRequest)
    assert request.messages[-1].content == "first line\nsecond line"
    assert request.messages[0].role == "system"
    assert widget.input.toPlainText() == ""
    assert widget.stop_button.isEnabled() and not widget.send_button.isEnabled()


def test_streamed_deltas_appear_and_speed_is_shown_after_the_answer(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "What is the capital of France?")
    job_id = bridge.submitted[0][0]
    bridge.emit_event(JobStatus(job_id=job_id, message="Loading model ..."))
    assert widget.status_label.text() == "Loading model ..."
    stream(bridge, job_id, "The capital", " of France", " is **Paris**.")
    qtbot.waitUntil(lambda: "The capital of France is Paris." in shown(widget))
    assert "What is the capital of France?" in shown(widget)
    bridge.emit_event(
        Finished(
            job_id=job_id,
            metrics=(
                Metric(name="decode_tok_s", value=21.5),
                Metric(name="ttft_s", value=0.42),
                Metric(name="new_tokens", value=9),
            ),
        )
    )
    assert widget.metrics_label.text() == "21.5 tokens/s · first token 0.42 s · 9 tokens"
    assert widget.send_button.isEnabled() and not widget.stop_button.isEnabled()
    stored = widget.state.messages()
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == "The capital of France is **Paris**."


def test_answer_the_worker_stores_while_streaming_is_shown_once(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "hello")
    job_id = bridge.submitted[0][0]
    store = widget.state.store  # play the worker: it writes the answer into the store as it streams
    answer = store.add_message(widget.state.current_id, "assistant", "", state="streaming", job_id=job_id)
    for piece in ("Hi", " there"):
        store.append_to_message(answer, piece)
        stream(bridge, job_id, piece)
    qtbot.waitUntil(lambda: "Hi there" in shown(widget))
    assert shown(widget).count("Hi there") == 1
    store.set_message_state(answer, "done")
    bridge.emit_event(Finished(job_id=job_id))
    qtbot.waitUntil(lambda: not widget.state.busy)
    assert [(m.content, m.state) for m in widget.state.messages()] == [
        ("hello", "done"),
        ("Hi there", "done"),
    ]
    qtbot.wait(60)
    assert shown(widget).count("Hi there") == 1


def test_other_jobs_events_are_ignored(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "hello")
    stream(bridge, "someone-elses-job", "not for this tab")
    bridge.emit_event(Finished(job_id="someone-elses-job"))
    assert widget.state.busy
    qtbot.wait(60)
    assert "not for this tab" not in shown(widget)


def test_stop_cancels_the_job_and_keeps_the_partial_answer(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "Tell me a long story")
    job_id = bridge.submitted[0][0]
    stream(bridge, job_id, "Once upon", " a time")
    qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
    assert bridge.cancelled == [job_id]
    bridge.emit_event(Cancelled(job_id=job_id, at_step=2))
    qtbot.waitUntil(lambda: "Once upon a time" in shown(widget))
    assert "stopped" in shown(widget)
    answer = widget.state.messages()[-1]
    assert (answer.role, answer.content, answer.state) == ("assistant", "Once upon a time", "stopped")


def test_failure_is_shown_and_nothing_is_lost(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "hello")
    job_id = bridge.submitted[0][0]
    bridge.emit_event(Failed(job_id=job_id, kind=ErrorKind.missing_model, message="model 'x' not found"))
    assert "model 'x' not found" in widget.status_label.text()
    assert [m.content for m in widget.state.messages()] == ["hello"]
    assert widget.send_button.isEnabled()


def test_empty_message_is_not_sent(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "   ")
    assert not bridge.submitted
    assert "Write a message first" in widget.status_label.text()


def test_regenerate_replaces_the_last_answer(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "hi")
    first = bridge.submitted[0][0]
    stream(bridge, first, "first answer")
    bridge.emit_event(Finished(job_id=first))
    qtbot.mouseClick(widget.regenerate_button, Qt.MouseButton.LeftButton)
    second, request = bridge.submitted[1]
    assert [m.content for m in request.messages if m.role != "system"] == ["hi"]
    stream(bridge, second, "second answer")
    bridge.emit_event(Finished(job_id=second))
    assert [m.content for m in widget.state.messages()] == ["hi", "second answer"]


def test_edit_last_message_and_resend(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "capital of Frnace?")
    job_id = bridge.submitted[0][0]
    stream(bridge, job_id, "I do not know Frnace.")
    bridge.emit_event(Finished(job_id=job_id))
    qtbot.mouseClick(widget.edit_button, Qt.MouseButton.LeftButton)
    assert widget.input.toPlainText() == "capital of Frnace?"
    assert widget.state.messages() == []
    widget.input.setPlainText("capital of France?")
    qtbot.keyClick(widget.input, Qt.Key.Key_Return)
    request = bridge.last_request()
    assert [m.content for m in request.messages if m.role != "system"] == ["capital of France?"]
    assert request.conversation_id == widget.state.current_id


def test_settings_travel_with_the_request(tab, qtbot):
    widget, bridge = tab
    widget.quant_picker.setCurrentIndex(widget.quant_picker.findData("nf4"))
    widget.temperature.setValue(0.0)
    widget.max_tokens.setValue(64)
    widget.system_prompt.setPlainText("Answer in French.")
    # The embedded model is a GGUF: llama.cpp runs it as shipped, and the label says so.
    assert "MiB" in widget.memory_label.text() and "transformers" in widget.memory_label.text()
    type_and_press_enter(qtbot, widget, "hello")
    request = bridge.last_request()
    assert (request.quant, request.temperature, request.max_new_tokens) == ("nf4", 0.0, 64)
    assert request.messages[0].content == "Answer in French."
    assert request.model == "smollm2-135m-instruct"


def test_added_model_is_picked_and_remembered(tab, qtbot, tmp_path, monkeypatch):
    widget, bridge = tab
    from PySide6.QtWidgets import QInputDialog

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (str(tmp_path / "my-model"), True))
    widget.model_picker.activated.emit(widget.model_picker.findData(ADD_MODEL))
    assert widget.model_picker.currentData() == str(tmp_path / "my-model")
    assert widget.form_request().model == str(tmp_path / "my-model")
    again = ChatTab(FakeBridge())
    qtbot.addWidget(again)
    assert again.model_picker.findData(str(tmp_path / "my-model")) >= 0


def test_a_cancelled_add_model_dialog_keeps_the_model_picked_before(tab, tmp_path, monkeypatch):
    widget, bridge = tab
    from PySide6.QtWidgets import QInputDialog

    mine = str(tmp_path / "mine.gguf")
    widget._refresh_models(widget.state.add_model(mine))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("", False))
    widget.model_picker.setCurrentIndex(widget.model_picker.findData(ADD_MODEL))
    widget.model_picker.activated.emit(widget.model_picker.findData(ADD_MODEL))
    assert widget.model_picker.currentData() == mine
    widget.input.setPlainText("hello")
    widget.send()
    assert bridge.last_request().model == mine


def test_conversations_list_new_rename_search_delete(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "about the sea")
    bridge.emit_event(Finished(job_id=bridge.submitted[0][0]))
    sea = widget.state.current_id
    widget.state.rename(sea, "Sea talk")
    widget.new_button.click()
    assert widget.state.current_id != sea
    assert [widget.conversation_list.item(i).text() for i in range(widget.conversation_list.count())][
        -1
    ] == "Sea talk"
    widget.search_box.setText("sea")
    assert widget.conversation_list.count() == 1
    widget.conversation_list.setCurrentRow(0)
    assert widget.state.current_id == sea
    widget.state.delete(sea)
    assert widget.conversation_list.count() == 0
    assert bridge.forgotten == [sea]  # its prompts leave the jobs history too


def test_export_writes_markdown_and_json(tab, qtbot, tmp_path):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "hello")
    job_id = bridge.submitted[0][0]
    stream(bridge, job_id, "```python\nprint('hi')\n```")
    bridge.emit_event(Finished(job_id=job_id))
    widget.state.export(widget.state.current_id, str(tmp_path / "chat.md"))
    widget.state.export(widget.state.current_id, str(tmp_path / "chat.json"))
    assert "```python" in (tmp_path / "chat.md").read_text()
    assert '"role": "assistant"' in (tmp_path / "chat.json").read_text()


def test_code_blocks_render_as_code(tab, qtbot):
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "code please")
    stream(bridge, bridge.submitted[0][0], "Here:\n\n```python\ndef add(a, b):\n    return a + b\n```\n")
    qtbot.waitUntil(lambda: "return a + b" in shown(widget))
    assert "```" not in shown(widget)  # fences are rendered, not shown raw


def test_the_answer_streams_while_tokens_come_faster_than_the_repaint_delay(tab, qtbot):
    """A llama.cpp answer at 35+ tokens/s sends a token every <30 ms: the transcript must grow
    while they arrive, not jump to the whole answer at the end."""
    widget, bridge = tab
    type_and_press_enter(qtbot, widget, "Count to forty.")
    job_id = bridge.submitted[0][0]
    words = [f" w{n}" for n in range(40)]
    seen_before_the_end: list[str] = []
    timer = QTimer(widget)
    timer.setInterval(max(1, RENDER_DELAY_MS // 3))

    def next_token() -> None:
        if not words:
            timer.stop()
            return
        if len(words) == 1:
            seen_before_the_end.append(shown(widget))
        stream(bridge, job_id, words.pop(0))

    timer.timeout.connect(next_token)
    timer.start()
    qtbot.waitUntil(lambda: not timer.isActive(), timeout=10_000)
    assert "w0 w1" in seen_before_the_end[0]
    qtbot.waitUntil(lambda: "w38 w39" in shown(widget))
