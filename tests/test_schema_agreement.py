"""Every job parameter is declared once: the GUI forms and the CLI show the schema's defaults
and limits, and the schema refuses what they cannot send."""

from __future__ import annotations

import pytest

from app.brush_editor import BrushEditor
from app.chat_tab import ChatTab
from app.fake_bridge import FakeBridge
from app.form_binding import QT_INT_MAX, WHOLE_NUMBER_MAX, WholeNumberBox
from app.image_tab import ImageTab
from app.music_tab import MusicTab
from app.settings import Settings
from app.video_tab import VideoTab
from workers.errors import BadInput
from workers.protocol import (
    BrushBaseRequest,
    BrushLayer,
    ChatRequest,
    ImageRequest,
    MusicRequest,
    VideoRequest,
)
from workers.schema import check_value, params

FORMS = {
    ImageRequest: (
        lambda bridge: ImageTab(bridge, settings=Settings()),
        {
            "width": "width_box",
            "height": "height_box",
            "steps": "steps",
            "guidance": "guidance",
            "seed": "seed",
        },
    ),
    VideoRequest: (
        VideoTab,
        {
            "frames": "frames_box",
            "fps": "fps_box",
            "width": "width_box",
            "height": "height_box",
            "steps": "steps_box",
            "guidance": "guidance_box",
            "seed": "seed_box",
        },
    ),
    MusicRequest: (
        MusicTab,
        {
            "seconds": "seconds",
            "bpm": "bpm",
            "guidance": "guidance",
            "temperature": "temperature",
            "seed": "seed",
        },
    ),
    ChatRequest: (
        ChatTab,
        {
            "temperature": "temperature",
            "top_p": "top_p",
            "top_k": "top_k",
            "max_new_tokens": "max_tokens",
            "repetition_penalty": "repetition_penalty",
        },
    ),
    BrushBaseRequest: (BrushEditor, {"steps": "steps_spin", "seed": "seed_spin"}),
}


def _widget(tab, path: str):
    for part in path.split("."):
        tab = getattr(tab, part)
    return tab


@pytest.mark.parametrize("request_cls", list(FORMS), ids=lambda c: c.__name__)
def test_gui_form_limits_defaults_and_tooltips_are_the_schema(qtbot, request_cls):
    make, fields = FORMS[request_cls]
    tab = make(FakeBridge())
    qtbot.addWidget(tab)
    declared = params(request_cls)
    for name, widget_name in fields.items():
        info, box = declared[name], _widget(tab, widget_name)
        low = 0 if info.spec.zero_means else info.spec.low
        assert box.minimum() == pytest.approx(low), name
        widest = WHOLE_NUMBER_MAX if isinstance(box, WholeNumberBox) else QT_INT_MAX
        assert box.maximum() == pytest.approx(min(info.spec.high, widest)), name
        assert box.value() == pytest.approx(info.default), name
        assert info.spec.help[:12].lower() in box.toolTip().lower(), name


def test_layer_panel_fields_are_the_schema(qtbot):
    editor = BrushEditor(FakeBridge())
    qtbot.addWidget(editor)
    declared = params(BrushLayer)
    for name, box in {
        "strength": editor.panel.strength_spin,
        "opacity": editor.panel.opacity_spin,
        "feather": editor.panel.feather_spin,
        "seed": editor.panel.seed_spin,
    }.items():
        assert (box.minimum(), box.maximum()) == pytest.approx(
            (declared[name].spec.low, min(declared[name].spec.high, QT_INT_MAX))
        ), name


@pytest.mark.parametrize("request_cls", [*FORMS, BrushLayer], ids=lambda c: c.__name__)
def test_each_declared_limit_is_enforced_just_outside_it(request_cls):
    for info in params(request_cls).values():
        s = info.spec
        if info.type in (int, float) and s.low is not None:
            check_value(info, s.low)
            check_value(info, s.high)
            for outside in (s.low - 1, s.high + 1):
                if s.zero_means and outside == 0:
                    continue
                with pytest.raises(BadInput, match=info.label):
                    check_value(info, outside)


CLI_KINDS = {"image": ImageRequest, "video": VideoRequest, "music": MusicRequest, "chat": ChatRequest}


@pytest.mark.parametrize("kind", list(CLI_KINDS))
def test_cli_options_are_every_declared_field_with_its_default_and_range(kind, capsys):
    from app.cli import build_parser, request_from_args

    request_cls = CLI_KINDS[kind]
    request = request_from_args(build_parser().parse_args(["run", kind, "--prompt", "x"]))
    for info in params(request_cls).values():
        assert getattr(request, info.name) == info.default, info.name  # the schema's default, not a copy
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", kind, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for info in params(request_cls).values():
        assert info.flag in shown, info.name
        assert info.describe_range() in shown, info.name


@pytest.mark.parametrize(
    "argv, problem",
    [
        (
            ["run", "video", "--prompt", "x", "--memory-mode", "slices:2000"],
            "'slices:N' with N from 1 to 1024",
        ),
        (["run", "image", "--prompt", "x", "--steps", "10000"], "steps must be between 1 and 500"),
        (["run", "music", "--prompt", "x", "--window-seconds", "0.1"], "window seconds must be between"),
        (["run", "chat", "--prompt", "x", "--top-p", "2"], "top-p must be between 0 and 1"),
    ],
)
def test_out_of_range_is_refused_before_any_worker_by_the_same_schema(argv, problem):
    from app.cli import build_parser, request_from_args

    with pytest.raises(BadInput, match=problem):
        request_from_args(build_parser().parse_args(argv))
