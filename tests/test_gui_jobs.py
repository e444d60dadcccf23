"""The Jobs panel: every job with its state, progress, preview and errors; Cancel cancels."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.fake_bridge import FakeBridge
from app.jobs_panel import JobsPanel
from app.jobs_state import JobsState
from workers.errors import ErrorKind
from workers.jobstore import JobStore
from workers.protocol import (
    ChatMessage,
    ChatRequest,
    Failed,
    Finished,
    ImageRequest,
    JobState,
    JobStatus,
    MusicRequest,
    Output,
    Priority,
    Progress,
    Queued,
    Started,
)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 200, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def queue(bridge, job_id, request):
    bridge.emit_event(Queued(job_id=job_id, request=request, priority=request.default_priority))


@pytest.fixture
def bridge():
    return FakeBridge()


@pytest.fixture
def panel(qtbot, bridge):
    state = JobsState(bridge)
    widget = JobsPanel(state)
    qtbot.addWidget(widget)
    widget.resize(380, 500)
    widget.show()
    return widget


def test_panel_lists_queued_running_and_finished_jobs_newest_first(panel, bridge):
    queue(bridge, "a", ImageRequest(prompt="a red apple"))
    queue(
        bridge,
        "b",
        ChatRequest(messages=(ChatMessage(role="user", content="What is the capital of France?"),)),
    )
    queue(bridge, "c", MusicRequest(prompt="slow piano"))
    bridge.emit_event(Started(job_id="a"))
    bridge.emit_event(Progress(job_id="a", step=2, total=4, preview_png=png_bytes()))
    bridge.emit_event(Started(job_id="b"))
    bridge.emit_event(Finished(job_id="b", elapsed_s=1.25))

    assert [row.job_id for row in panel.rows()] == ["c", "b", "a"]
    running, finished, queued = panel.row("a"), panel.row("b"), panel.row("c")
    assert "running" in running.title.text() and "step 2/4" in running.title.text()
    assert running.progress.value() == 2 and running.progress.maximum() == 4
    assert not running.thumbnail.pixmap().isNull()
    assert running.description.text() == "a red apple"
    assert "finished" in finished.title.text() and finished.elapsed.text() == "1.2 s"
    assert finished.description.text() == "What is the capital of France?"
    assert finished.cancel_button.isHidden() and finished.progress.isHidden()
    assert "queued" in queued.title.text() and queued.cancel_button.isVisible()


def test_cancel_button_cancels_a_running_and_a_queued_job(qtbot, panel, bridge):
    queue(bridge, "a", ImageRequest(prompt="one"))
    queue(bridge, "b", ImageRequest(prompt="two"))
    bridge.emit_event(Started(job_id="a"))
    qtbot.mouseClick(panel.row("a").cancel_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.row("b").cancel_button, Qt.MouseButton.LeftButton)
    assert bridge.cancelled == ["a", "b"]


def test_failed_job_shows_kind_and_message_with_traceback_tooltip(panel, bridge):
    queue(bridge, "a", ImageRequest(prompt="x"))
    bridge.emit_event(
        Failed(
            job_id="a",
            kind=ErrorKind.out_of_memory,
            message="needs 6 GiB, 2 GiB free",
            traceback="Traceback (most recent call last): ...",
        )
    )
    row = panel.row("a")
    assert "failed" in row.title.text()
    assert row.error.isVisible() and row.error.text() == "Not enough memory: needs 6 GiB, 2 GiB free"
    assert "Traceback" in row.error.toolTip()
    assert row.cancel_button.isHidden()


def test_clear_finished_keeps_unfinished_jobs(qtbot, panel, bridge):
    queue(bridge, "a", ImageRequest(prompt="x"))
    queue(bridge, "b", ImageRequest(prompt="y"))
    bridge.emit_event(Finished(job_id="a"))
    panel.state.clear_ended()
    assert [row.job_id for row in panel.rows()] == ["b"]


def test_history_from_the_job_store_is_listed_at_start(qtbot, bridge, tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    store.add("old1", ImageRequest(prompt="yesterday's cat"), Priority.single_shot)
    store.set_state("old1", JobState.finished)
    store.add("old2", ImageRequest(prompt="a failed one"), Priority.single_shot)
    store.set_state("old2", JobState.failed, ErrorKind.missing_model.value, "no such model")
    bridge.supervisor = SimpleNamespace(store=store)
    state = JobsState(bridge)
    state.load_history()
    panel = JobsPanel(state)
    qtbot.addWidget(panel)
    assert {row.job_id for row in panel.rows()} == {"old1", "old2"}
    assert "finished" in panel.row("old1").title.text()
    assert panel.row("old2").error.text() == "Model not found: no such model"
    store.close()


def test_history_is_skipped_without_a_supervisor(bridge):
    state = JobsState(bridge)
    state.load_history()
    assert state.jobs() == []


def test_a_finished_image_job_shows_its_result_as_thumbnail(panel, bridge, tmp_path):
    result = tmp_path / "out.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(result)
    queue(bridge, "a", ImageRequest(prompt="blue"))
    bridge.emit_event(Started(job_id="a"))
    bridge.emit_event(Progress(job_id="a", step=1, total=2, preview_png=png_bytes()))  # green preview
    bridge.emit_event(Output(job_id="a", path=str(result), media_type="image/png"))
    bridge.emit_event(Finished(job_id="a"))
    image = panel.row("a").thumbnail.pixmap().toImage()
    colour = image.pixelColor(image.width() // 2, image.height() // 2)
    assert (colour.red(), colour.green(), colour.blue()) == (0, 0, 255)


def test_a_status_line_mid_render_keeps_the_step_count(panel, bridge):
    queue(bridge, "v", ImageRequest(prompt="a long render"))
    bridge.emit_event(Started(job_id="v"))
    bridge.emit_event(Progress(job_id="v", step=3, total=10))
    bridge.emit_event(JobStatus(job_id="v", message="paused: a brush edit needs the GPU"))
    row = panel.row("v")
    assert (row.progress.minimum(), row.progress.maximum(), row.progress.value()) == (0, 10, 3)
    assert "paused" in panel.state.job("v").message
