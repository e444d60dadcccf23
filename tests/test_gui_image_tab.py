"""The Image tab against a fake bridge: what a user types is what is submitted, and what the
worker reports (progress, preview, result, errors) is what the user sees."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.fake_bridge import FakeBridge
from app.image_tab import ImageTab
from workers.errors import ErrorKind
from workers.protocol import Cancelled, Failed, Finished, ImageRequest, Output, Progress, Queued, Started


def png_bytes(size=(16, 16), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def bridge():
    return FakeBridge()


@pytest.fixture
def tab(qtbot, bridge):
    widget = ImageTab(bridge)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    return widget


def fill_form(tab, prompt="a lighthouse at dusk", width=128, height=96):
    tab.prompt.setPlainText(prompt)
    tab.negative_prompt.setText("blurry")
    tab.width_box.setValue(width)
    tab.height_box.setValue(height)
    tab.steps.setValue(6)
    tab.guidance.setValue(5.5)
    tab.seed.setValue(1234)


def test_generate_submits_the_form_as_an_image_request(qtbot, tab, bridge):
    fill_form(tab)
    tab.model_box.set_model("my-org/my-model")
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.last_request() == ImageRequest(
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        width=128,
        height=96,
        steps=6,
        guidance=5.5,
        seed=1234,
        model="my-org/my-model",
    )
    assert not tab.generate_button.isEnabled() and tab.cancel_button.isEnabled()
    assert tab.error.isHidden()


def test_model_box_offers_the_catalog_demo_model(tab):
    items = [tab.model_box.itemText(i) for i in range(tab.model_box.count())]
    assert "demo-sd" in items
    assert "Demo model" in tab.model_note.text()


def test_random_seed_picks_a_new_seed_and_submits_it(qtbot, tab, bridge):
    fill_form(tab)
    tab.random_seed.setChecked(True)
    tab.seed.setValue(0)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.last_request().seed == tab.seed.value()


def test_empty_prompt_shows_a_bad_input_error_and_submits_nothing(qtbot, tab, bridge):
    fill_form(tab, prompt="   ")
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.submitted == []
    assert tab.error.isVisible()
    assert "Check the input" in tab.error.text() and "prompt is empty" in tab.error.text()
    assert tab.generate_button.isEnabled()


def test_width_not_a_multiple_of_8_is_refused_before_submitting(qtbot, tab, bridge):
    fill_form(tab, width=65)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    assert bridge.submitted == []
    assert tab.error.isVisible() and "width must be a multiple of 8" in tab.error.text()


def test_progress_preview_and_result_are_shown(qtbot, tab, bridge, tmp_path):
    fill_form(tab)
    tab.generate()
    job = bridge.submitted[-1][0]
    for event in (
        Queued(job_id=job, request=bridge.last_request(), priority="single_shot"),
        Started(job_id=job),
    ):
        bridge.emit_event(event)
    bridge.emit_event(Progress(job_id=job, step=3, total=6, preview_png=png_bytes()))
    assert tab.progress.isVisible() and tab.progress.value() == 3 and tab.progress.maximum() == 6
    assert tab.image.pixmap() is not None and not tab.image.pixmap().isNull()
    result = tmp_path / "result.png"
    Image.new("RGB", (128, 96), (10, 120, 200)).save(result)
    with qtbot.waitSignal(tab.result_shown, timeout=2000) as shown:
        bridge.emit_event(Output(job_id=job, path=str(result), media_type="image/png"))
    bridge.emit_event(Finished(job_id=job, elapsed_s=2.5))
    assert shown.args == [str(result)]
    assert str(result) in tab.caption.text() and "128×96" in tab.caption.text()
    assert "Done in 2.5 s" in tab.status.text()
    assert tab.generate_button.isEnabled() and not tab.cancel_button.isEnabled()


def test_events_of_other_jobs_are_ignored(tab, bridge):
    fill_form(tab)
    tab.generate()
    bridge.emit_event(Failed(job_id="someone-else", kind=ErrorKind.internal, message="not ours"))
    assert tab.error.isHidden() and not tab.generate_button.isEnabled()


def test_failed_job_shows_its_kind_and_message(tab, bridge):
    fill_form(tab)
    tab.generate()
    job = bridge.submitted[-1][0]
    bridge.emit_event(
        Failed(
            job_id=job,
            kind=ErrorKind.missing_model,
            message="no model at /nowhere",
            traceback="Traceback: ...",
        )
    )
    assert tab.error.isVisible()
    assert tab.error.text() == "Model not found: no model at /nowhere"
    assert tab.error.toolTip() == "Traceback: ..."
    assert tab.generate_button.isEnabled()


def test_cancel_asks_the_bridge_and_the_tab_reports_it(qtbot, tab, bridge):
    fill_form(tab)
    tab.generate()
    job = bridge.submitted[-1][0]
    qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    assert bridge.cancelled == [job]
    bridge.emit_event(Cancelled(job_id=job, at_step=2))
    assert "Cancelled at step 2" in tab.status.text()
    assert tab.generate_button.isEnabled() and not tab.cancel_button.isEnabled()
