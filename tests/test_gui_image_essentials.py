"""The Image tab's essentials: sampler, batch, init image and strength, LoRAs with weights,
negative presets and Upscale, against a fake bridge, and once through a real image worker
(previews at every step in the tab and the Jobs panel, a batch, an upscale)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.fake_bridge import FakeBridge
from app.image_tab import NEGATIVE_PRESETS, UPSCALE_FACTOR, ImageTab
from workers.errors import BadInput
from workers.protocol import IMAGE_SAMPLERS, UPSCALE_STRENGTH, Finished, ImageRequest, Output
from workers.schema import params


@pytest.fixture
def bridge():
    return FakeBridge()


@pytest.fixture
def tab(qtbot, bridge):
    widget = ImageTab(bridge)
    qtbot.addWidget(widget)
    widget.resize(1000, 760)
    widget.show()
    return widget


def picture(path: Path, size=(48, 40), colour=(30, 90, 200)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def test_sampler_combo_offers_every_schema_sampler_and_submits_its_name(qtbot, tab, bridge):
    assert [tab.sampler.itemData(i) for i in range(tab.sampler.count())] == list(IMAGE_SAMPLERS)
    assert tab.sampler.currentText() == "Model's own"
    assert params(ImageRequest)["sampler"].spec.help[4:30] in tab.sampler.toolTip()
    tab.prompt.setPlainText("a boat")
    tab.sampler.setCurrentIndex(tab.sampler.findText("DPM++ 2M Karras"))
    tab.batch_count.setValue(3)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    request = bridge.last_request()
    assert (request.sampler, request.batch_count) == ("DPM++ 2M Karras", 3)


def test_new_fields_take_limits_and_defaults_from_the_schema(tab):
    declared = params(ImageRequest)
    for name, box in (("batch_count", tab.batch_count), ("strength", tab.strength)):
        assert (box.minimum(), box.maximum()) == pytest.approx(
            (declared[name].spec.low, declared[name].spec.high)
        )
        assert box.value() == pytest.approx(declared[name].default)
    assert tab.request() == ImageRequest(prompt="", model="demo-sd")


def test_an_init_image_switches_to_image_to_image(qtbot, tab, bridge, tmp_path):
    assert not tab.strength.isEnabled() and tab.width_box.isEnabled()
    init = picture(tmp_path / "init.png")
    tab.prompt.setPlainText("a boat at night")
    tab.init_image.setText(init)
    assert tab.strength.isEnabled() and not tab.width_box.isEnabled() and not tab.height_box.isEnabled()
    tab.strength.setValue(0.4)
    tab.generate()
    request = bridge.last_request()
    assert (request.init_image, request.strength, request.upscale) == (init, 0.4, 1)
    tab.init_clear.click()
    assert tab.init_image.text() == "" and tab.width_box.isEnabled() and not tab.strength.isEnabled()


def test_a_missing_init_image_is_refused_before_submitting(tab, bridge, tmp_path):
    tab.prompt.setPlainText("a boat")
    tab.init_image.setText(str(tmp_path / "gone.png"))
    tab.generate()
    assert bridge.submitted == [] and tab.error.isVisible() and "is not a file" in tab.error.text()


def test_negative_presets_fill_the_negative_prompt(tab):
    actions = tab.negative_presets.menu().actions()
    assert [a.text() for a in actions] == list(NEGATIVE_PRESETS)
    actions[1].trigger()
    assert tab.negative_prompt.text() == NEGATIVE_PRESETS[actions[1].text()]


def test_lora_list_rows_and_weights_are_the_requests_loras_field(tab, bridge, tmp_path):
    tab.loras.add(str(tmp_path / "detail.safetensors"), 0.8)
    tab.loras.add("my-style-lora")
    assert tab.loras.table.item(0, 0).text() == "detail.safetensors"  # the name; the path is its tooltip
    tab.loras.table.cellWidget(1, 1).setValue(-0.5)
    tab.prompt.setPlainText("a boat")
    tab.generate()
    assert bridge.last_request().loras == f"{tmp_path / 'detail.safetensors'}:0.8, my-style-lora:-0.5"
    tab.loras.table.selectRow(0)
    tab.loras.remove_selected()
    assert tab.loras.text() == "my-style-lora:-0.5"
    tab.loras.set_text("a:0.25, b")
    assert tab.loras.text() == "a:0.25, b:1"
    with pytest.raises(BadInput, match="between -4 and 4"):
        tab.loras.set_text("a:12")


def test_add_menu_offers_loras_linked_in_the_registry(tab, tmp_path):
    from models.registry import ModelRegistry
    from tests.model_fixtures import write_safetensors

    tab.loras._fill_add_menu()
    assert [a.text() for a in tab.loras.add_menu.actions()] == ["File…"]  # first run: nothing linked
    lora = write_safetensors(
        tmp_path / "ink.safetensors", {"lora_unet_down_blocks_0_attn.lora_down.weight": (4, 320)}
    )
    with ModelRegistry() as registry:
        model = registry.add(lora)
    tab.loras._fill_add_menu()
    linked = [a for a in tab.loras.add_menu.actions() if a.text() == model.name]
    assert linked
    linked[0].trigger()
    assert tab.loras.text() == f"{model.id}:1"


def test_a_batch_shows_every_image_and_upscale_sends_the_one_shown(qtbot, tab, bridge, tmp_path):
    assert not tab.upscale_button.isEnabled()
    tab.prompt.setPlainText("a boat")
    tab.seed.setValue(11)
    tab.batch_count.setValue(3)
    tab.generate()
    job = bridge.submitted[-1][0]
    paths = [picture(tmp_path / f"b{i}.png", colour=(40 * i, 20, 20)) for i in range(3)]
    for path in paths:
        bridge.emit_event(Output(job_id=job, path=path, media_type="image/png"))
    bridge.emit_event(Finished(job_id=job, elapsed_s=1.0))
    assert tab.thumbnails.isVisible() and tab.thumbnails.count() == 3
    assert tab.result_path == paths[2] and tab.caption.text().startswith("3 of 3")
    tab.thumbnails.setCurrentRow(1)
    assert tab.result_path == paths[1] and tab.caption.text().startswith("2 of 3")
    assert tab.upscale_button.isEnabled()
    qtbot.mouseClick(tab.upscale_button, Qt.MouseButton.LeftButton)
    request = bridge.last_request()
    assert (request.init_image, request.upscale, request.strength) == (
        paths[1],
        UPSCALE_FACTOR,
        UPSCALE_STRENGTH,
    )
    assert (request.batch_count, request.prompt, request.seed) == (1, "a boat", 11)
    assert tab.status.text() == f"Queued: upscaling b1.png {UPSCALE_FACTOR}×…"
    assert not tab.upscale_button.isEnabled() and tab.thumbnails.isHidden()
    assert tab.batch_count.value() == 3 and tab.init_image.text() == ""  # the form is left as it was


def test_use_as_init_image_fills_the_picker(tab, bridge, tmp_path):
    tab.prompt.setPlainText("a boat")
    tab.generate()
    path = picture(tmp_path / "r.png")
    bridge.emit_event(Output(job_id=bridge.submitted[-1][0], path=path, media_type="image/png"))
    bridge.emit_event(Finished(job_id=bridge.submitted[-1][0], elapsed_s=1.0))
    tab.use_as_init_button.click()
    assert tab.init_image.text() == path and tab.strength.isEnabled()


# --------------------------------------------------------------------------- a real worker


@pytest.mark.timeout(300)
def test_previews_batch_and_upscale_through_a_real_worker(qtbot, tmp_path):
    from app.bridge import Bridge
    from app.main_window import MainWindow
    from workers.protocol import Progress, WorkerKind
    from workers.supervisor import Supervisor

    supervisor = Supervisor(kinds=[WorkerKind.image], restore_queue=False)
    bridge = Bridge(supervisor)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.resize(1440, 900)
    window.show()
    supervisor.start()
    try:
        tab = window.image_tab
        window.tabs.setCurrentIndex(window.tab_titles().index("Image"))
        seen = []  # after the tab handled each step: its pixmap, and the Jobs panel row's thumbnail

        def after_step(event):
            if (
                isinstance(event, Progress)
                and tab.job is not None
                and event.job_id == tab.job.job_id
                and event.preview_png
            ):
                row = window.jobs_panel.row(event.job_id)
                seen.append(
                    (tab.image.pixmap().cacheKey(), row is not None and not row.thumbnail.pixmap().isNull())
                )

        bridge.event.connect(after_step)
        tab.prompt.setPlainText("a tiny red boat")
        tab.width_box.setValue(48)
        tab.height_box.setValue(48)
        tab.steps.setValue(4)  # the upscale at strength 0.3 then runs int(4 * 0.3) = 1 step per tile
        tab.sampler.setCurrentIndex(tab.sampler.findText("Euler a"))
        tab.batch_count.setValue(2)
        tab.generate()
        qtbot.waitUntil(lambda: tab.job is None, timeout=200_000)
        assert tab.error.isHidden(), tab.error.text()
        assert len(tab.outputs) == 2 and tab.thumbnails.count() == 2
        assert len(seen) == 8 and all(in_panel for _, in_panel in seen)
        assert len({key for key, _ in seen}) == 8, "the tab did not show each step's preview"
        source = tab.result_path
        qtbot.mouseClick(tab.upscale_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tab.job is None, timeout=200_000)
        assert tab.error.isHidden(), tab.error.text()
        with Image.open(tab.result_path) as big, Image.open(source) as small:
            assert big.size == (small.width * UPSCALE_FACTOR, small.height * UPSCALE_FACTOR)
            assert "Sampler: Euler a" in big.info["parameters"]
        window.grab().save(str(tmp_path / "image-tab.png"))
    finally:
        window.close()
        supervisor.shutdown()
        supervisor.store.close()


def test_sampler_batch_strength_negative_and_loras_come_back_next_launch(qtbot, bridge):
    from app.settings import Settings, load_settings, save_settings

    first = ImageTab(bridge, settings=Settings())
    qtbot.addWidget(first)
    first.sampler.setCurrentIndex(first.sampler.findText("UniPC"))
    first.batch_count.setValue(4)
    first.strength.setValue(0.35)
    first.negative_prompt.setText("blurry")
    first.loras.add("my-style-lora", 0.6)
    first.init_image.setText("/somewhere/picture.png")
    settings = Settings()
    first.store_settings(settings)
    save_settings(settings)
    again = ImageTab(bridge, settings=load_settings())
    qtbot.addWidget(again)
    assert again.sampler.currentData() == "UniPC" and again.batch_count.value() == 4
    assert again.strength.value() == pytest.approx(0.35) and again.negative_prompt.text() == "blurry"
    assert again.loras.text() == "my-style-lora:0.6" and again.init_image.text() == ""
