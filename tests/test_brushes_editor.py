"""The brush editor driven like a user would, against a fake bridge that plays the worker's part."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt

from app.brush_editor import BrushEditor
from app.fake_bridge import FakeBridge
from workers.brushes.project_io import MEDIA_TYPE, BrushProject, read_project, write_project
from workers.protocol import BrushBaseRequest, BrushRenderRequest, Finished, Output, Progress

SIZE = 64


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _worker_writes_base(request: BrushBaseRequest) -> None:
    """What the image worker does for a base request, minus the diffusion."""
    params = {
        "session_id": request.session_id,
        "model": request.model,
        "prompt": request.prompt,
        "negative_prompt": "",
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance": request.guidance,
        "seed": request.seed,
        "source": "generated",
    }
    base = _png(Image.new("RGB", (request.width, request.height), (90, 120, 60)))
    write_project(request.project_path, BrushProject(params=params, base_png=base, trajectory=b"\x00" * 64))


@pytest.fixture
def editor(qtbot):
    bridge = FakeBridge()
    widget = BrushEditor(bridge)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    widget.prompt_edit.setText("a red apple")
    widget.steps_spin.setValue(8)
    job = widget.generate_base()
    request = bridge.last_request()
    assert isinstance(request, BrushBaseRequest) and request.width == SIZE
    _worker_writes_base(request)
    bridge.emit_event(Output(job_id=job, path=request.project_path, media_type=MEDIA_TYPE))
    bridge.emit_event(Finished(job_id=job))
    assert widget.document.has_session
    return widget


def _image_point(editor, x: float, y: float) -> QPoint:
    canvas = editor.canvas
    return (QPointF(x, y) * canvas.zoom + canvas.pan).toPoint()


def _stroke(qtbot, editor, points) -> None:
    canvas = editor.canvas
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=_image_point(editor, *points[0]))
    for point in points[1:]:
        qtbot.mouseMove(canvas, _image_point(editor, *point))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=_image_point(editor, *points[-1]))


def _renders(bridge):
    return [(job, request) for job, request in bridge.submitted if isinstance(request, BrushRenderRequest)]


def _wait_for_render(qtbot, editor, count: int):
    qtbot.waitUntil(lambda: len(_renders(editor.bridge)) >= count, timeout=3000)
    return _renders(editor.bridge)[-1]


def test_paint_add_layer_toggle_visibility_undo_save_and_reopen(qtbot, editor, tmp_path):
    bridge = editor.bridge
    qtbot.mouseClick(editor.panel.add_button, Qt.MouseButton.LeftButton)
    assert editor.panel.list.count() == 1 and editor.document.selected is not None
    _stroke(qtbot, editor, [(10, 10), (20, 14), (30, 20)])
    assert not editor.document.selected.is_empty()
    job, request = _wait_for_render(qtbot, editor, 1)
    assert len(request.layers) == 1 and request.layers[0].visible
    assert request.default_priority.value == "interactive"
    with Image.open(io.BytesIO(request.layers[0].mask_png)) as mask:
        assert mask.size == (SIZE, SIZE) and mask.getpixel((20, 14)) > 200 and mask.getpixel((50, 50)) == 0

    preview = Image.new("RGBA", (SIZE, SIZE), (255, 0, 0, 255))
    bridge.emit_event(Progress(job_id=job, step=1, total=5, preview_png=_png(preview)))
    assert editor.document.preview is not None  # live preview while the render is in flight
    rendered = tmp_path / "render.png"
    Image.new("RGB", (SIZE, SIZE), (1, 2, 3)).save(rendered)
    bridge.emit_event(Output(job_id=job, path=str(rendered), media_type="image/png"))
    bridge.emit_event(Finished(job_id=job))
    assert editor.document.composite.pixelColor(5, 5).blue() == 3 and editor.document.preview is None

    item = editor.panel.list.item(0)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert editor.document.layers[0].visible is False
    assert editor.render_now() is None and editor.document.composite is None  # all hidden: the base image

    editor.undo.undo()  # visibility back on
    assert editor.document.layers[0].visible is True
    editor.undo.undo()  # the stroke
    assert editor.document.layers[0].is_empty()
    editor.undo.redo()
    assert not editor.document.layers[0].is_empty()

    editor.panel.name_edit.setText("sky")
    editor.panel.name_edit.editingFinished.emit()
    saved = editor.save_project(tmp_path / "mine.hearth")
    reopened = BrushEditor(FakeBridge())
    qtbot.addWidget(reopened)
    assert reopened.open_project(saved)
    (layer,) = reopened.document.layers
    assert layer.name == "sky" and layer.visible
    assert layer.mask == editor.document.layers[0].mask
    assert reopened.document.params == editor.document.params
    assert read_project(saved).trajectory == b"\x00" * 64  # the worker's cache travels untouched


def test_a_new_stroke_cancels_the_render_in_flight(qtbot, editor):
    qtbot.mouseClick(editor.panel.add_button, Qt.MouseButton.LeftButton)
    _stroke(qtbot, editor, [(10, 10), (12, 12)])
    first, _ = _wait_for_render(qtbot, editor, 1)
    _stroke(qtbot, editor, [(40, 40), (44, 44)])
    second, request = _wait_for_render(qtbot, editor, 2)
    assert first in editor.bridge.cancelled and second != first
    stale = Image.new("RGBA", (SIZE, SIZE))
    editor.bridge.emit_event(Progress(job_id=first, step=1, total=5, preview_png=_png(stale)))
    assert editor.document.preview is None  # events of the stale render are ignored


def test_layer_settings_solo_reorder_and_wheel_reseed(qtbot, editor):
    panel = editor.panel
    for _ in range(2):
        qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
        editor.tool.set_tool("box")
        _stroke(
            qtbot, editor, [(5, 5), (25, 25)] if len(editor.document.layers) == 1 else [(35, 35), (60, 60)]
        )
    bottom, top = editor.document.layers
    panel.prompt_edit.setText("a dog")
    panel.prompt_edit.editingFinished.emit()
    panel.regen_spin.setValue(3)
    assert top.prompt == "a dog" and top.regen_step == 3
    assert panel.regen_spin.maximum() == 8 - 3  # n <= N-3

    qtbot.mouseClick(panel.solo_button, Qt.MouseButton.LeftButton)

    def solo_rendered():
        renders = _renders(editor.bridge)
        return bool(renders) and [layer.visible for layer in renders[-1][1].layers] == [False, True]

    qtbot.waitUntil(solo_rendered, timeout=3000)  # edits close together coalesce into one render

    qtbot.mouseClick(panel.down_button, Qt.MouseButton.LeftButton)
    assert [layer.id for layer in editor.document.layers] == [top.id, bottom.id]

    seed = bottom.seed
    rect = panel.list.visualItemRect(panel.list.item(0))  # the list shows the top of the stack first
    qtbot.wait(1)
    from PySide6.QtCore import QPoint as Point
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    viewport = panel.list.viewport()
    center = QPointF(rect.center())
    wheel = QWheelEvent(
        center,
        QPointF(viewport.mapToGlobal(rect.center())),
        Point(0, 0),
        Point(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, wheel)
    assert editor.document.layer(bottom.id).seed != seed


def test_autosave_export_and_bad_files(qtbot, editor, tmp_path):
    qtbot.mouseClick(editor.panel.add_button, Qt.MouseButton.LeftButton)
    _stroke(qtbot, editor, [(10, 10), (30, 30)])
    path = editor.document.project_path
    with qtbot.waitSignal(editor.saved, timeout=5000):
        pass  # autosave fires on its own after an edit
    assert len(read_project(path).layers) == 1

    exported = editor.export_png(tmp_path / "out.png")
    with Image.open(exported) as image:
        params = json.loads(image.text["hearth"])
    assert (
        params["prompt"] == "a red apple"
        and params["layers"][0]["regen_step"] == editor.document.layers[0].regen_step
    )

    corrupt = tmp_path / "corrupt.hearth"
    corrupt.write_bytes(b"PK\x03\x04 broken")
    assert not editor.open_project(corrupt)
    assert "corrupt.hearth" in editor.status.text() and len(editor.document.layers) == 1  # nothing lost

    broken_photo = tmp_path / "photo.jpg"
    broken_photo.write_bytes(b"not an image")
    assert editor.import_photo(str(broken_photo)) is None and "photo" in editor.status.text()


def test_import_photo_submits_an_inversion(qtbot, editor, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (200, 100), "white").save(photo)
    editor.size_combo.setCurrentIndex(1)  # 128 px
    assert editor.import_photo(str(photo))
    request = editor.bridge.last_request()
    assert request.photo_path == str(photo) and (request.width, request.height) == (128, 64)
