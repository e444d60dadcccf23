"""The Video tab against a fake bridge: what is submitted, progress with ETA and previews, playback
of the finished clip, stop, errors and re-export."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.fake_bridge import FakeBridge
from app.video_state import VideoState, format_eta
from app.video_tab import VideoTab
from workers.errors import ErrorKind
from workers.protocol import Cancelled, Failed, Finished, Output, Progress, VideoRequest
from workers.video.export import export_video, read_frames, read_metadata


@pytest.fixture
def tab(qtbot):
    bridge = FakeBridge()
    widget = VideoTab(bridge)
    qtbot.addWidget(widget)
    return widget, bridge


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_generate_submits_the_form_as_a_video_request(tab):
    widget, bridge = tab
    widget.prompt.setPlainText("a cat playing piano")
    widget.negative_prompt.setText("blurry")
    widget.frames_box.setValue(12)
    widget.fps_box.setValue(10)
    widget.width_box.setValue(96)
    widget.steps_box.setValue(6)
    widget.seed_box.setValue(42)
    widget.memory_mode.setCurrentIndex(1)
    widget.slices_box.setValue(3)
    widget.rehash_box.setChecked(True)
    widget.format_picker.setCurrentIndex(widget.format_picker.findData("gif"))
    widget.generate_button.click()
    request = bridge.last_request()
    assert (request.prompt, request.negative_prompt, request.frames, request.fps) == (
        "a cat playing piano",
        "blurry",
        12,
        10,
    )
    assert (request.width, request.steps, request.seed, request.model) == (96, 6, 42, "demo-animatediff")
    assert (request.memory_mode, request.step_rehash, request.format) == ("slices:3", True, "gif")
    assert widget.stop_button.isEnabled() and not widget.generate_button.isEnabled()


def test_a_typed_model_is_submitted_as_typed(tab):
    widget, bridge = tab
    widget.prompt.setPlainText("a dog")
    widget.model_picker.setEditText("guoyww/animatediff-motion-adapter-v1-5-2")
    widget.generate_button.click()
    assert bridge.last_request().model == "guoyww/animatediff-motion-adapter-v1-5-2"


def test_bad_settings_show_the_reason_and_submit_nothing(tab):
    widget, bridge = tab
    widget.prompt.setPlainText("   ")
    widget.generate_button.click()
    assert bridge.submitted == []
    assert "prompt is empty" in widget.status_label.text()


def test_progress_shows_steps_eta_and_each_preview(qtbot):
    bridge, now = FakeBridge(), [100.0]
    state = VideoState(bridge, clock=lambda: now[0])
    assert state.generate(VideoRequest(prompt="a cat", steps=4))
    seen = []
    state.progress_changed.connect(lambda *args: seen.append(args))
    previews = []
    state.preview_changed.connect(previews.append)
    for step, t in ((1, 102.0), (2, 104.0), (3, 106.0)):
        now[0] = t
        bridge.emit_event(
            Progress(job_id=state.job.job_id, step=step, total=4, message="", preview_png=_png())
        )
    assert seen == [(1, 4, ""), (2, 4, "ETA 4 s"), (3, 4, "ETA 2 s")]
    assert len(previews) == 3
    bridge.emit_event(Progress(job_id="someone-else", step=4, total=4))
    assert len(seen) == 3, "events of other jobs are ignored"
    assert format_eta(75) == "1:15"


def test_finished_clip_plays_and_can_be_exported_to_another_format(tab, qtbot, tmp_path):
    widget, bridge = tab
    frames = [np.full((32, 32, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    clip = export_video(frames, tmp_path / "clip.gif", 8, {"prompt": "a cat", "seed": 3})
    widget.prompt.setPlainText("a cat")
    widget.generate_button.click()
    job_id = widget.state.job.job_id
    bridge.emit_event(Output(job_id=job_id, path=str(clip), media_type="image/gif"))
    bridge.emit_event(Finished(job_id=job_id, elapsed_s=3.2))
    assert widget.playing_path == str(clip)  # it plays: tests/test_gui_playback.py follows the player
    assert "done in 3.2 s" in widget.status_label.text() and widget.generate_button.isEnabled()
    assert widget.export_buttons["mp4"].isEnabled()
    exported = widget.state.export_as(str(tmp_path / "again.mp4"))
    assert len(read_frames(exported)[0]) == 4 and read_metadata(exported)["seed"] == 3


def test_stop_cancels_the_job_and_the_end_is_shown(tab):
    widget, bridge = tab
    widget.prompt.setPlainText("a cat")
    widget.generate_button.click()
    job_id = widget.state.job.job_id
    widget.stop_button.click()
    assert bridge.cancelled == [job_id]
    bridge.emit_event(Cancelled(job_id=job_id, at_step=2))
    assert "cancelled at step 2" in widget.status_label.text() and not widget.stop_button.isEnabled()
    widget.generate_button.click()
    bridge.emit_event(
        Failed(job_id=widget.state.job.job_id, kind=ErrorKind.bad_input, message="too many frames")
    )
    assert "too many frames" in widget.status_label.text()
