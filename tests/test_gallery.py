"""The Gallery tab and recall: every output listed with its thumbnail, searched and filtered; open,
show, delete; "Use these settings" fills the right tab; a PNG from another SD app dropped on the
window fills the image form; an empty data dir and a folder of thousands of files both work."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.fake_bridge import FakeBridge
from app.gallery_tab import EMPTY_TEXT, EntryRole, GalleryTab
from app.main_window import MainWindow
from tests.test_generation_info import a1111_png
from workers.outputs import request_parameters, save_png, write_sidecar
from workers.paths import outputs_dir
from workers.protocol import BrushBaseRequest, ImageRequest, MusicRequest, Output, VideoRequest

A1111_DROP = (
    "a watercolor fox in the snow\n"
    "Negative prompt: blurry, text\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, Size: 512x768, Model: dreamshaper_8"
)


def image_output(name: str, request: ImageRequest, colour=(200, 30, 30), mtime: float | None = None) -> Path:
    """A PNG as the image worker writes it: parameters in the PNG and in the sidecar."""
    path = outputs_dir() / name
    params = request_parameters(request, sampler=request.sampler or "DDIM", seconds=0.1)
    save_png(Image.new("RGB", (request.width, request.height), colour), path, params)
    write_sidecar(path, params)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def music_output(name: str, request: MusicRequest, mtime: float | None = None) -> Path:
    from workers.music.export import save_audio

    t = np.linspace(0, 1, 3200, dtype=np.float32)
    audio = (np.sin(2 * np.pi * 5 * t) * np.linspace(0, 1, t.size)).astype(np.float32)[None]
    path = save_audio(outputs_dir() / name, audio, 3200, request_parameters(request, sample_rate=3200))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def video_output(name: str, request: VideoRequest, mtime: float | None = None) -> Path:
    from workers.video.export import export_video

    frames = [np.full((16, 16, 3), (210, 20, 20), np.uint8), np.full((16, 16, 3), (20, 20, 210), np.uint8)]
    path = export_video(frames, outputs_dir() / name, request.fps, request_parameters(request))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def gallery(qtbot, tmp_path):
    tab = GalleryTab(FakeBridge())
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    yield tab
    tab.shutdown()


def wait_listed(qtbot, tab: GalleryTab, count: int | None = None) -> None:
    qtbot.waitUntil(lambda: tab.scanned, timeout=30_000)
    if count is not None:
        qtbot.waitUntil(lambda: tab.items.rowCount() == count, timeout=30_000)


def on_screen(tab: GalleryTab) -> list:
    view, shown = tab.view, tab.view.viewport().rect()
    rows = [tab.filter.index(r, 0) for r in range(tab.filter.rowCount())]
    return [index.data(EntryRole) for index in rows if view.visualRect(index).intersects(shown)]


def wait_thumbnails(qtbot, tab: GalleryTab) -> None:
    """Every row on screen has its thumbnail (or the reason it has none), and the worker is idle."""

    def laid_out() -> bool:  # a batched layout places rows a hundred at a time
        count = tab.filter.rowCount()
        return count == 0 or tab.view.visualRect(tab.filter.index(count - 1, 0)).isValid()

    def done() -> bool:
        QApplication.processEvents()
        return (
            laid_out()
            and not tab.worker.busy
            and all(e.key in tab.items.pixmaps or e.key in tab.items.problems for e in on_screen(tab))
        )

    qtbot.waitUntil(done, timeout=60_000)


@pytest.fixture
def window(qtbot):
    win = MainWindow(FakeBridge())
    qtbot.addWidget(win)
    win.show()
    yield win
    win.memory_state.stop(wait_s=5)


# --------------------------------------------------------------------------- listing


def test_an_empty_data_dir_says_there_is_nothing_yet(qtbot, gallery, hearth_dirs):
    assert not (hearth_dirs / "data" / "outputs").exists()
    gallery.show()  # the first look starts the listing
    wait_listed(qtbot, gallery, 0)
    assert gallery.stack.currentWidget() is gallery.empty and gallery.empty.text() == EMPTY_TEXT
    assert gallery.count_label.text() == "0 outputs"
    assert not gallery.use_button.isEnabled() and not gallery.delete_button.isEnabled()
    gallery.use_current()
    assert gallery.delete_current() is False  # nothing selected: nothing happens


def test_outputs_are_listed_newest_first_with_thumbnails_search_and_filters(qtbot, gallery):
    boat = image_output("boat.png", ImageRequest(prompt="a red boat", seed=1), (200, 30, 30), mtime=1_000)
    hill = image_output(
        "hill.png", ImageRequest(prompt="a green hill", model="org/other-model"), (30, 200, 30), mtime=2_000
    )
    song = music_output("song.wav", MusicRequest(prompt="lofi beat", seconds=1.0), mtime=3_000)
    clip = video_output("cat.mp4", VideoRequest(prompt="a cat walking", frames=2), mtime=4_000)
    (outputs_dir() / "notes.txt").write_text("not an output")
    (outputs_dir() / ".boat.png.hearth-tmp-1234.png").write_bytes(b"a save in progress")
    gallery.show()
    wait_listed(qtbot, gallery, 4)
    assert [e.path for e in gallery.entries()] == [clip, song, hill, boat]
    assert [e.kind for e in gallery.entries()] == ["video", "music", "image", "image"]
    wait_thumbnails(qtbot, gallery)

    pixmaps = {e.path.name: gallery.items.pixmaps[e.key].toImage() for e in gallery.entries()}
    assert pixmaps["boat.png"].pixelColor(80, 80).red() == 200  # the picture, scaled up to 160 px
    assert (pixmaps["song.wav"].width(), pixmaps["song.wav"].height()) == (160, 90)  # a waveform strip
    first_frame = pixmaps["cat.mp4"].pixelColor(80, 80)
    assert first_frame.red() > 150 and first_frame.blue() < 80  # the first frame (red), not the second

    gallery.search.setText("BOAT red")
    assert [e.path for e in gallery.entries()] == [boat]
    gallery.search.setText("")
    gallery.kind_box.setCurrentIndex(gallery.kind_box.findData("music"))
    assert [e.path for e in gallery.entries()] == [song]
    gallery.kind_box.setCurrentIndex(0)
    gallery.model_box.setCurrentIndex(gallery.model_box.findData("org/other-model"))
    assert [e.path for e in gallery.entries()] == [hill]
    assert gallery.count_label.text() == "1 of 4"


def test_an_item_shows_how_it_was_made(qtbot, gallery):
    boat = image_output("boat.png", ImageRequest(prompt="a red boat", seed=77, steps=9))
    gallery.show()
    wait_listed(qtbot, gallery, 1)
    gallery.select(gallery.entries()[0])
    text = gallery.details.toPlainText()
    assert str(boat) in text and "prompt: a red boat" in text and "seed: 77" in text and "steps: 9" in text
    assert gallery.use_button.isEnabled() and gallery.edit_button.isEnabled()
    assert not gallery.preview.pixmap().isNull()


def test_a_new_output_appears_at_the_top(qtbot, gallery):
    image_output("old.png", ImageRequest(prompt="old"), mtime=1_000)
    gallery.show()
    wait_listed(qtbot, gallery, 1)
    new = image_output("new.png", ImageRequest(prompt="just made"))
    gallery.on_event(Output(job_id="j1", path=str(new), media_type="image/png"))
    qtbot.waitUntil(lambda: gallery.items.rowCount() == 2, timeout=10_000)
    assert gallery.entries()[0].path == new and gallery.entries()[0].prompt == "just made"


def test_delete_asks_then_removes_the_file_and_its_sidecar(qtbot, gallery, monkeypatch):
    boat = image_output("boat.png", ImageRequest(prompt="a red boat"))
    gallery.show()
    wait_listed(qtbot, gallery, 1)
    gallery.select(gallery.entries()[0])
    asked = []
    monkeypatch.setattr(gallery, "confirm_delete", lambda entry: asked.append(entry.path) or False)
    gallery.view.setFocus()
    qtbot.keyClick(gallery.view, Qt.Key.Key_Delete)  # the Delete key asks too
    assert asked == [boat] and boat.exists()
    assert gallery.delete_current() is False and boat.exists()
    monkeypatch.setattr(gallery, "confirm_delete", lambda entry: True)
    with qtbot.waitSignal(gallery.deleted):
        assert gallery.delete_current() is True
    assert not boat.exists() and not Path(str(boat) + ".json").exists()
    assert gallery.entries() == [] and gallery.stack.currentWidget() is gallery.empty


def test_open_and_show_in_folder_go_to_the_desktop(qtbot, gallery, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    boat = image_output("boat.png", ImageRequest(prompt="a red boat"))
    gallery.show()
    wait_listed(qtbot, gallery, 1)
    gallery.select(gallery.entries()[0])
    gallery.open_button.click()
    gallery.reveal_button.click()
    assert opened == [str(boat), str(boat.parent)]


def test_thousands_of_outputs_list_in_the_background_and_only_rows_on_screen_get_thumbnails(qtbot, tmp_path):
    count = 2500
    folder = outputs_dir()
    Image.new("RGB", (8, 8), (90, 90, 200)).save(folder / "0.png")
    for i in range(1, count):
        shutil.copyfile(folder / "0.png", folder / f"{i}.png")
    for i in range(count):
        (folder / f"{i}.png.json").write_text(json.dumps({"job": "ImageRequest", "prompt": f"item {i}"}))
    cache = tmp_path / "thumbs"
    first = GalleryTab(FakeBridge(), thumbnails_dir=cache)
    qtbot.addWidget(first)
    first.resize(1000, 700)
    first.show()
    assert first.scanning and first.items.rowCount() == 0  # listing runs off the GUI thread
    wait_listed(qtbot, first, count)
    assert len({e.prompt for e in first.entries()}) == count
    wait_thumbnails(qtbot, first)
    made = first.worker.made
    assert 0 < made <= len(on_screen(first)), made  # the rows on screen, not 2,500
    first.search.setText("item 1234")
    assert [e.prompt for e in first.entries()] == ["item 1234"]
    first.shutdown()

    again = GalleryTab(FakeBridge(), thumbnails_dir=cache)
    qtbot.addWidget(again)
    again.resize(1000, 700)
    again.show()
    wait_listed(qtbot, again, count)
    wait_thumbnails(qtbot, again)
    assert again.worker.made == 0 and again.items.pixmaps  # all from the disk cache
    again.shutdown()


# --------------------------------------------------------------------------- recall


def _use(qtbot, window, path: Path) -> None:
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    gallery.refresh()
    qtbot.waitUntil(lambda: any(e.path == path for e in gallery.entries()), timeout=30_000)
    gallery.select(next(e for e in gallery.entries() if e.path == path))
    gallery.use_button.click()


def test_use_these_settings_fills_the_image_form_model_and_all(qtbot, window):
    original = ImageRequest(
        prompt="a red boat at dawn",
        negative_prompt="fog",
        width=96,
        height=128,
        steps=7,
        guidance=6.5,
        seed=424242,
        sampler="Euler a",
        model="demo-sd",
    )
    path = image_output("boat.png", original)
    tab = window.image_tab
    tab.prompt.setPlainText("something else")
    tab.random_seed.setChecked(True)
    _use(qtbot, window, path)
    assert window.tabs.currentWidget() is window.image_tabs and window.image_tabs.currentWidget() is tab
    assert tab.request() == original
    assert not tab.random_seed.isChecked()  # the seed it was made with, not a fresh one
    assert window.recall.last_message == "Settings of boat.png restored in the Image tab"


def test_use_these_settings_fills_the_video_and_music_forms(qtbot, window):
    video = VideoRequest(
        prompt="a cat walking",
        negative_prompt="dog",
        frames=6,
        fps=12,
        steps=3,
        seed=9,
        memory_mode="slices:2",
    )
    _use(qtbot, window, video_output("cat.mp4", video))
    assert window.tabs.currentWidget() is window.video_tab
    window.video_tab.generate()
    assert window.bridge.last_request() == video

    rehashed = dataclasses.replace(video, step_rehash=True, rehash_interval=3)
    _use(qtbot, window, video_output("rehashed.mp4", rehashed))
    assert "rehash interval 3 is not in this form (the next run uses 2)" in window.recall.last_message

    music = MusicRequest(
        prompt="calm piano", seconds=3.0, chords="C G Am F", bpm=96, meter="3/4", seed=11, temperature=0.8
    )
    _use(qtbot, window, music_output("piano.wav", music))
    assert window.tabs.currentWidget() is window.music_tab
    assert window.music_tab.request() == music


def drop(window, path: Path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(
        window.rect().center(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(
        QPointF(window.rect().center()),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    return True


def test_dropping_a_png_from_another_sd_app_fills_the_image_form(window, tmp_path):
    path = a1111_png(tmp_path / "00042-123.png", A1111_DROP)
    window.tabs.setCurrentWidget(window.chat_tab)
    assert drop(window, path)
    tab = window.image_tab
    assert window.tabs.currentWidget() is window.image_tabs
    assert tab.prompt.toPlainText() == "a watercolor fox in the snow"
    assert tab.negative_prompt.text() == "blurry, text"
    assert (tab.steps.value(), tab.guidance.value(), tab.seed.value()) == (20, 7.0, 123)
    assert (tab.width_box.value(), tab.height_box.value()) == (512, 768)
    assert tab.sampler.currentData() == "DPM++ 2M Karras"
    assert tab.model_box.model() == "demo-sd"  # dreamshaper_8 is not on this machine
    assert "its model 'dreamshaper_8' is not on this machine" in window.recall.last_message
    assert window.statusBar().currentMessage() == window.recall.last_message
    tab.generate()
    sent = window.bridge.last_request()
    assert (sent.prompt, sent.negative_prompt, sent.steps, sent.sampler, sent.guidance, sent.seed) == (
        "a watercolor fox in the snow",
        "blurry, text",
        20,
        "DPM++ 2M Karras",
        7.0,
        123,
    )
    assert (sent.width, sent.height) == (512, 768)


def test_a_seed_past_a_c_int_from_another_app_is_restored(window, tmp_path):
    """A1111's seeds run to 2^32 - 1: half of them do not fit a QSpinBox."""
    path = a1111_png(tmp_path / "big-seed.png", A1111_DROP.replace("Seed: 123", "Seed: 3141592653"))
    assert drop(window, path)
    assert window.image_tab.seed.value() == 3141592653
    window.image_tab.generate()
    assert window.bridge.last_request().seed == 3141592653


def test_dropping_a_file_without_settings_says_why_and_changes_nothing(window, tmp_path):
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = window.image_tab.request()
    assert drop(window, garbage)
    assert window.recall.last_message.startswith(
        "Nothing restored from broken.png: broken.png is not a readable image"
    )
    assert window.image_tab.request() == before
    assert not drop(window, tmp_path)  # a folder, or any file Hearth reads nothing from, is not taken


def test_a_sampler_hearth_does_not_offer_falls_back_to_the_models_own(window, tmp_path):
    path = a1111_png(tmp_path / "x.png", A1111_DROP.replace("DPM++ 2M Karras", "DPM++ SDE Karras"))
    window.image_tab.sampler.setCurrentIndex(window.image_tab.sampler.findData("Euler"))
    assert drop(window, path)
    assert window.image_tab.sampler.currentData() == ""
    assert "sampler 'DPM++ SDE Karras' is not one Hearth offers" in window.recall.last_message


def test_edit_with_brushes_inverts_an_image_from_elsewhere_under_its_own_prompt(qtbot, window):
    path = a1111_png(outputs_dir() / "foreign.png", A1111_DROP, size=(64, 96))
    window.tabs.setCurrentWidget(window.gallery)
    window.gallery.refresh()
    qtbot.waitUntil(lambda: len(window.gallery.entries()) == 1, timeout=30_000)
    window.gallery.select(window.gallery.entries()[0])
    window.gallery.edit_button.click()
    sent = window.bridge.last_request()
    assert isinstance(sent, BrushBaseRequest) and sent.photo_path == str(path)
    assert (sent.prompt, sent.negative_prompt, sent.steps, sent.seed, sent.guidance) == (
        "a watercolor fox in the snow",
        "blurry, text",
        20,
        123,
        7.0,
    )
    assert sent.model == "demo-sd"  # dreamshaper_8 is not on this machine
    assert (sent.width, sent.height) == (40, 64)  # the largest brush size not above its own (96), sides of 8
    assert window.image_tabs.currentWidget() is window.brush_editor
    assert "through DDIM inversion" in window.recall.last_message


def test_every_image_request_field_has_a_widget_to_restore_into(qtbot):
    """A field added to ImageRequest without a form widget could not be restored: it fails here."""
    from app.image_tab import ImageTab

    tab = ImageTab(FakeBridge())
    qtbot.addWidget(tab)
    names = {f.name for f in dataclasses.fields(ImageRequest)} - {"out_path", "upscale"}
    assert names <= set(tab.form_fields()), names - set(tab.form_fields())


# --------------------------------------------------------------------------- through a real worker


@pytest.mark.timeout(480)
def test_use_these_settings_makes_the_same_image_bit_for_bit(qtbot, hearth_dirs):
    """Make an image, scramble the form, "Use these settings" from the gallery, make it again:
    the same pixels (same seed, model, sampler), through the real image worker on the demo model."""
    from app.bridge import Bridge
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    supervisor = Supervisor(kinds=[WorkerKind.image], restore_queue=False)
    window = MainWindow(Bridge(supervisor))
    qtbot.addWidget(window)
    window.show()
    supervisor.start()
    try:
        tab = window.image_tab
        made = ImageRequest(
            prompt="a tiny red boat",
            negative_prompt="fog",
            steps=4,
            guidance=5.5,
            seed=31337,
            sampler="Euler a",
        )
        for name, widget in tab.form_fields().items():
            if name in ("prompt", "negative_prompt", "steps", "guidance", "seed", "sampler"):
                _set(widget, getattr(made, name))
        first = _generate(qtbot, tab)

        tab.prompt.setPlainText("something else entirely")
        tab.seed.setValue(1)
        tab.steps.setValue(6)
        tab.sampler.setCurrentIndex(tab.sampler.findData("DDIM"))
        tab.random_seed.setChecked(True)
        _use(qtbot, window, first)
        assert tab.request() == dataclasses.replace(made, model=tab.request().model)
        assert tab.request().model == "demo-sd"

        second = _generate(qtbot, tab)
        assert second != first
        assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    finally:
        window.close()
        supervisor.shutdown()
        supervisor.store.close()


def _set(widget, value) -> None:
    from app.recall import fill_form

    assert fill_form({"field": widget}, {"field": value}) == []


def _generate(qtbot, tab) -> Path:
    before = tab.result_path
    tab.generate_button.click()
    assert tab.job is not None, tab.error.text()
    qtbot.waitUntil(lambda: tab.result_path != before, timeout=300_000)
    qtbot.waitUntil(lambda: tab.job is None, timeout=30_000)
    assert tab.error.isHidden(), tab.error.text()
    return Path(tab.result_path)


def test_edit_with_brushes_opens_a_brush_renders_own_project(qtbot, window):
    import io

    from workers.brushes.project_io import BrushProject, project_path_for, write_project
    from workers.paths import data_dir

    params = {
        "session_id": "lake1",
        "model": "demo-sd",
        "prompt": "a mountain lake",
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "steps": 8,
        "guidance": 7.5,
        "seed": 3,
        "source": "generated",
    }
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 90, 160)).save(png, format="PNG")
    project = write_project(
        project_path_for("lake1"),
        BrushProject(params=params, base_png=png.getvalue(), trajectory=b"opaque here"),
    )
    renders = data_dir() / "brush-renders"
    renders.mkdir()
    render = renders / "lake1.png"
    save_png(Image.new("RGB", (64, 64)), render, dict(params, job="BrushRender", sampler="DDIM", layers=[]))
    window.tabs.setCurrentWidget(window.gallery)
    window.gallery.refresh()
    qtbot.waitUntil(lambda: len(window.gallery.entries()) == 1, timeout=30_000)
    window.gallery.select(window.gallery.entries()[0])
    window.gallery.edit_button.click()
    assert window.bridge.submitted == []  # its own project opens: no inversion needed
    assert window.brush_editor.document.project_path == project
    assert window.recall.last_message == "lake1.png: its brush project is open"


def test_a_foreign_model_linked_with_hearth_models_is_used(window, tmp_path):
    """A1111 names its checkpoint by file stem: one `hearth models` linked under it is picked."""
    from models.registry import ModelRegistry
    from tests.model_fixtures import SD15, write_safetensors

    checkpoint = write_safetensors(tmp_path / "dreamshaper_8.safetensors", SD15)
    with ModelRegistry() as registry:
        registry.add(checkpoint)
    assert drop(window, a1111_png(tmp_path / "x.png", A1111_DROP))
    assert window.image_tab.model_box.model() == str(checkpoint)
    assert f"its model 'dreamshaper_8' is your linked {checkpoint}" in window.recall.last_message


def test_dropping_a_song_or_a_clip_without_its_sidecar_restores_it_from_its_tags(window, tmp_path):
    music = MusicRequest(prompt="calm piano", seconds=2.0, bpm=80, meter="3/4", seed=21)
    song = shutil.copy(
        music_output("piano.flac", music), tmp_path / "piano.flac"
    )  # the tags travel, the sidecar not
    assert drop(window, Path(song))
    assert window.tabs.currentWidget() is window.music_tab and window.music_tab.request() == music
    assert window.recall.last_message == "Settings of piano.flac restored in the Music tab"

    video = VideoRequest(prompt="a cat walking", frames=4, fps=6, steps=2, seed=8)
    clip = shutil.copy(video_output("cat.mp4", video), tmp_path / "cat.mp4")
    assert drop(window, Path(clip))
    window.video_tab.generate()
    assert window.tabs.currentWidget() is window.video_tab and window.bridge.last_request() == video


def test_a_png_dropped_on_a_text_box_restores_its_settings_instead_of_pasting_its_path(window, tmp_path):
    path = a1111_png(tmp_path / "onto-the-prompt.png", A1111_DROP)
    tab = window.image_tab
    window.tabs.setCurrentWidget(window.image_tabs)
    target = tab.prompt.viewport()  # where a plain-text box takes its drops
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(target.rect().center())
    enter = QDragEnterEvent(
        where.toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    dropped = QDropEvent(
        where, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, dropped)
    assert tab.prompt.toPlainText() == "a watercolor fox in the snow"  # not "file:///…/onto-the-prompt.png"
    assert tab.seed.value() == 123

    text = QMimeData()
    text.setText("just words")
    plain = QDragEnterEvent(
        where.toPoint(),
        Qt.DropAction.CopyAction,
        text,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, plain)
    assert plain.isAccepted()  # text still drops into the box as before
