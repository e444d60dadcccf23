"""Projects from someone else: a ``.hearth`` file crafted to write outside Hearth's folders, to
exhaust memory, or to smuggle links and odd entries is refused whole, with the check named,
through the code the window (``BrushEditor.open_project``) and the image worker (``brushes.job``)
use; and saves killed mid-write leave nothing behind for long."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from workers.brushes.project_io import BrushProject, read_project, write_project
from workers.errors import BadInput
from workers.protocol import BrushBaseRequest, BrushLayer, BrushRenderRequest, ChatMessage, ChatRequest

ROOT = Path(__file__).resolve().parents[1]
TEMP_MARK = ".hearth-tmp-"
"""How a user (and the sweep) recognises Hearth's temp files: ``.NAME.hearth-tmp-XXXXXXXX.SUFFIX``."""
TWO_HOURS_AGO = time.time() - 7200
SIZE = 64
STEPS = 6
ONE_GIB = 1 << 30


# --------------------------------------------------------------------------- building archives


def _png(size=(SIZE, SIZE), mode="RGB", color=90) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` RGB pixels, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _params(session_id="s1", **changes) -> dict:
    params = {
        "session_id": session_id,
        "model": "demo-sd",
        "prompt": "a red apple",
        "negative_prompt": "",
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "guidance": 7.5,
        "seed": 3,
        "source": "generated",
    }
    params.update(changes)
    return params


def _manifest(params=None, layers=None, **extra) -> bytes:
    layers = [{"id": "a", "name": "sky", "regen_step": 2}] if layers is None else layers
    manifest = {"format": "hearth-brushes", "version": 1, "params": params or _params(), "layers": layers}
    manifest.update(extra)
    return json.dumps(manifest).encode()


def _entries(**overrides) -> dict:
    """A valid small project as {entry name: bytes}; ``None`` drops an entry."""
    entries = {
        "project.json": _manifest(),
        "base.png": _png(),
        "trajectory.safetensors": b"opaque",
        "masks/a.png": _png(mode="L", color=255),
    }
    entries.update(overrides)
    return {name: data for name, data in entries.items() if data is not None}


def write_zip(path: Path, entries, extra_infos=()) -> Path:
    """``entries`` by name, then ready-made ``ZipInfo``s (links, odd names) with their bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in dict(entries).items():
                archive.writestr(name, data)
            for info, data in extra_infos:
                archive.writestr(info, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode in external_attr counts
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@contextlib.contextmanager
def footprint():
    """Seconds and peak memory (MB above the resident size at the start) of the block."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = _status_kb("VmRSS")
    measured: dict[str, float] = {}
    start = time.perf_counter()
    yield measured
    measured["seconds"] = time.perf_counter() - start
    measured["extra_mb"] = (_status_kb("VmHWM") - before) / 1024


def _status_kb(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


@pytest.fixture
def new_editor(qtbot):
    """Editors on a fake bridge, as the window makes them (each test may need a fresh one)."""
    from app.brush_editor import BrushEditor
    from app.fake_bridge import FakeBridge

    def make():
        widget = BrushEditor(FakeBridge())
        qtbot.addWidget(widget)
        return widget

    return make


@pytest.fixture
def editor(new_editor):
    return new_editor()


def _refused_by_editor(editor, path: Path, *words: str) -> None:
    """The window refuses the file, says why, and opens nothing."""
    assert editor.open_project(path) is False
    message = editor.status.text()
    assert path.name in message and all(word in message for word in words), message
    assert not editor.document.has_session and editor.bridge.submitted == []


# --------------------------------------------------------------------------- ids that escape

ESCAPING_IDS = {
    "dot-dot": "../../../elsewhere/PWNED",
    "absolute": "{elsewhere}/PWNED",
    "backslash": "..\\..\\..\\elsewhere\\PWNED",
    "dot-dot-inside": "a/../../../../elsewhere/PWNED",
}


def _escaping(kind: str, tmp_path: Path) -> str:
    return ESCAPING_IDS[kind].format(elsewhere=tmp_path / "elsewhere")


def _nothing_written_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert not elsewhere.exists() or list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("kind", sorted(ESCAPING_IDS))
def test_a_session_id_that_leads_elsewhere_is_refused_when_opened(editor, tmp_path, kind):
    (tmp_path / "elsewhere").mkdir()
    path = write_zip(
        tmp_path / "gift.hearth", _entries(**{"project.json": _manifest(_params(_escaping(kind, tmp_path)))})
    )
    with pytest.raises(BadInput, match="session id"):
        read_project(path)
    _refused_by_editor(editor, path, "session id")
    _nothing_written_elsewhere(tmp_path)


@pytest.mark.parametrize("kind", sorted(ESCAPING_IDS))
def test_a_layer_id_that_leads_elsewhere_is_refused_when_opened_and_saved(editor, tmp_path, kind):
    layer_id = _escaping(kind, tmp_path)
    entries = _entries(**{"project.json": _manifest(layers=[{"id": layer_id}]), "masks/a.png": None})
    path = write_zip(tmp_path / "layers.hearth", {**entries, f"masks/{layer_id}.png": _png(mode="L")})
    _refused_by_editor(editor, path, "entry")  # its mask's entry name already points out
    with pytest.raises(BadInput, match="layer id"):
        read_project(write_zip(tmp_path / "named.hearth", entries | {"masks/a.png": _png(mode="L")}))

    layer = BrushLayer(id=layer_id, mask_png=_png(mode="L"))
    project = BrushProject(params=_params(), base_png=_png(), trajectory=b"x", layers=[layer])
    with pytest.raises(BadInput, match="layer id"):
        write_project(tmp_path / "out.hearth", project)
    assert not (tmp_path / "out.hearth").exists()


def test_project_path_for_a_session_stays_in_the_projects_folder(tmp_path):
    from workers.brushes.project_io import project_path_for

    assert project_path_for("abc123").parent.name == "projects"
    for kind in ESCAPING_IDS:
        with pytest.raises(BadInput, match="session id"):
            project_path_for(_escaping(kind, tmp_path))


# --------------------------------------------------------------------------- the worker's call sites


class StubRuntime:
    """The parts of ``WorkerRuntime`` a brush job touches, without an arbiter."""

    def __init__(self) -> None:
        from workers.runtime import WarmCache

        self.cache = WarmCache()

    def honour_revokes(self, ctx) -> None:
        pass

    def lease_memory(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        return tiers[0]


def _context(job_id="j1"):
    from workers.context import CancelToken, JobContext
    from workers.protocol import Priority

    events: list = []
    ctx = JobContext(
        job_id=job_id,
        priority=Priority.interactive,
        send=events.append,
        cancel_token=CancelToken(),
        runtime=StubRuntime(),
    )
    return ctx, events


@pytest.fixture(scope="module")
def real_project(tmp_path_factory) -> dict:
    """A real project (tiny demo model, real trajectory) as {entry: bytes}, made once."""
    from workers.brushes.job import run

    root = tmp_path_factory.mktemp("real-project")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DATA", "CONFIG", "OUTPUTS"):
            patch.setenv(f"HEARTH_{name}_DIR", str(root / name.lower()))
        request = BrushBaseRequest(
            session_id="s1", prompt="a red apple", steps=STEPS, project_path=str(root / "real.hearth")
        )
        run(_context()[0], request)
    with zipfile.ZipFile(root / "real.hearth") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _hostile_copy(real_project: dict, path: Path, session_id: str) -> Path:
    manifest = json.loads(real_project["project.json"])
    manifest["params"]["session_id"] = session_id
    return write_zip(path, real_project | {"project.json": json.dumps(manifest).encode()})


def _render_request(session_id: str, project: Path, layer_id: str = "a") -> BrushRenderRequest:
    from workers.brushes.layers import mask_to_png

    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (8, 8, 40, 40))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    layer = BrushLayer(id=layer_id, mask_png=buffer.getvalue(), prompt="a cat", regen_step=2)
    assert mask_to_png  # the mask format the editor sends: 8-bit grayscale PNG
    return BrushRenderRequest(
        session_id=session_id,
        project_path=str(project),
        width=SIZE,
        height=SIZE,
        steps=STEPS,
        layers=(layer,),
    )


@pytest.mark.parametrize("kind", ["dot-dot", "absolute"])
def test_the_worker_never_writes_a_render_where_a_hostile_session_id_points(real_project, tmp_path, kind):
    """Before: the window opened such a file, sent its session id, and the worker wrote the PNG."""
    from workers.brushes.job import run

    (tmp_path / "elsewhere").mkdir()
    session_id = _escaping(kind, tmp_path)
    project = _hostile_copy(real_project, tmp_path / "gift.hearth", session_id)
    ctx, events = _context()
    with pytest.raises(BadInput, match="session id"):
        run(ctx, _render_request(session_id, project))
    _nothing_written_elsewhere(tmp_path)


def test_a_link_in_the_renders_folder_that_points_out_is_not_followed(real_project, tmp_path):
    from workers.brushes.job import run
    from workers.paths import data_dir

    project = _hostile_copy(real_project, tmp_path / "mine.hearth", "s1")
    target = tmp_path / "elsewhere" / "victim.png"
    target.parent.mkdir()
    renders = data_dir() / "brush-renders"
    renders.mkdir(parents=True)
    (renders / "s1.png").symlink_to(target)
    with pytest.raises(BadInput, match="outside"):
        run(_context()[0], _render_request("s1", project))
    assert not target.exists()


def test_the_worker_refuses_hostile_ids_in_requests_before_any_work(tmp_path):
    from workers.brushes.job import run

    (tmp_path / "elsewhere").mkdir()
    for kind in ESCAPING_IDS:
        hostile = _escaping(kind, tmp_path)
        base = BrushBaseRequest(session_id=hostile, prompt="a red apple", steps=STEPS)
        with pytest.raises(BadInput, match="session id"):
            run(_context()[0], base)  # its project would have gone to projects/<session id>.hearth
        with pytest.raises(BadInput, match="layer id"):
            run(_context()[0], _render_request("s1", tmp_path / "none.hearth", layer_id=hostile))
    _nothing_written_elsewhere(tmp_path)


def test_job_ids_and_conversation_ids_never_name_a_file_outside(tmp_path):
    from workers.jobs.chat import run as run_chat
    from workers.outputs import output_path
    from workers.video.decode import checkpoint_path

    assert checkpoint_path("job-1").name == "video-job-1.safetensors"
    for kind in ESCAPING_IDS:
        hostile = _escaping(kind, tmp_path)
        with pytest.raises(BadInput, match="job id"):
            checkpoint_path(hostile)
        with pytest.raises(BadInput, match="job id"):
            output_path("", hostile, ".png")
        request = ChatRequest(messages=(ChatMessage(role="user", content="hi"),), conversation_id=hostile)
        with pytest.raises(BadInput, match="conversation id"):
            run_chat(_context()[0], request)


def test_path_inside_refuses_every_way_out(tmp_path):
    from workers.safe_names import path_inside

    base = tmp_path / "base"
    base.mkdir()
    (base / "out").symlink_to(tmp_path)
    assert path_inside(base, "a.png") == base.resolve() / "a.png"
    for part in ("/etc/passwd", "../x", "a/../../x", "..\\x", "C:\\x", "C:x", "out/x.png", ""):
        with pytest.raises(BadInput):
            path_inside(base, part)


# --------------------------------------------------------------------------- untrusted archives


@pytest.mark.parametrize(
    "entries, infos, words",
    [
        (_entries(), [(zipfile.ZipInfo("/etc/cron.d/x"), b"x")], ["absolute"]),
        (_entries(), [(zipfile.ZipInfo("masks/../../x.png"), b"x")], [".."]),
        (_entries(), [(zipfile.ZipInfo("masks\\..\\x.png"), b"x")], ["absolute or foreign"]),
        (_entries(), [(zipfile.ZipInfo("base.png"), _png())], ["twice"]),
        (_entries(**{"base.png": None}), [(_symlink_info("base.png"), b"/etc/passwd")], ["symbolic link"]),
        (_entries(), [(zipfile.ZipInfo("run-me.sh"), b"rm -rf ~")], ["unexpected entry"]),
        (_entries(), [(zipfile.ZipInfo("masks/b.png"), _png(mode="L"))], ["unexpected entry", "no layer"]),
    ],
    ids=["absolute", "dot-dot", "backslash", "duplicate", "symlink", "stranger", "orphan-mask"],
)
def test_archive_entries_are_checked_before_anything_is_read(editor, tmp_path, entries, infos, words):
    path = write_zip(tmp_path / "odd.hearth", entries, infos)
    with pytest.raises(BadInput) as refused:
        read_project(path)
    assert all(word in str(refused.value) for word in words), refused.value
    _refused_by_editor(editor, path, *words)


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A project whose trajectory entry is 1 GiB of zeros (about 1 MB compressed)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.hearth"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _entries(**{"trajectory.safetensors": None}).items():
            archive.writestr(name, data)
        with archive.open("trajectory.safetensors", "w", force_zip64=True) as stream:
            for _ in range(ONE_GIB // len(zeros)):
                stream.write(zeros)
    assert path.stat().st_size < 4 << 20
    return path


def test_a_gigabyte_of_zeros_is_refused_quickly_without_inflating_it(editor, zip_bomb):
    with footprint() as used, pytest.raises(BadInput, match="zip bomb") as refused:
        read_project(zip_bomb)
    assert used["seconds"] < 1.0 and used["extra_mb"] < 100, used
    assert "bomb.hearth" in str(refused.value) and "trajectory.safetensors" in str(refused.value)
    with footprint() as used:
        _refused_by_editor(editor, zip_bomb, "zip bomb")
    assert used["seconds"] < 1.0 and used["extra_mb"] < 100, used


@pytest.mark.parametrize("entry", ["base.png", "render.png", "masks/a.png"])
def test_a_50000_pixel_png_is_refused_from_its_header(editor, tmp_path, entry):
    path = write_zip(tmp_path / "huge.hearth", _entries(**{entry: bomb_png(50_000, 50_000)}))
    with footprint() as used, pytest.raises(BadInput, match="refused before decoding"):
        read_project(path)
    assert used["seconds"] < 1.0 and used["extra_mb"] < 100, used
    _refused_by_editor(editor, path, "pixels")


@pytest.mark.parametrize(
    "width, height, words",
    [(50_000, 50_000, "pixels"), (9000, 9000, "pixels"), (8200, 8, "at most 8192 on a side")],
    ids=["far-over", "just-over", "too-wide"],
)
def test_a_photo_claiming_too_many_pixels_is_refused_before_decoding(editor, tmp_path, width, height, words):
    from workers.brushes.job import load_photo

    photo = tmp_path / "huge.png"
    photo.write_bytes(bomb_png(width, height))
    with footprint() as used:
        assert editor.import_photo(str(photo)) is None
    assert used["seconds"] < 1.0 and used["extra_mb"] < 100, used
    assert words in editor.status.text() and editor.bridge.submitted == []
    with pytest.raises(BadInput, match=words):
        load_photo(str(photo), SIZE, SIZE)  # the worker's side, for a request from elsewhere


def test_an_image_of_the_wrong_size_or_not_an_image_is_refused(editor, tmp_path):
    wrong = write_zip(tmp_path / "wrong.hearth", _entries(**{"base.png": _png((128, 64))}))
    _refused_by_editor(editor, wrong, "base image is 128 x 64", "64 x 64")
    broken = write_zip(tmp_path / "broken.hearth", _entries(**{"masks/a.png": b"\x89PNG not really"}))
    _refused_by_editor(editor, broken, "mask of layer 'sky'", "not a readable image")


def test_a_memory_error_while_opening_is_shown_not_raised(editor, tmp_path, monkeypatch):
    import app.brush_editor.editor as editor_module

    path = write_zip(tmp_path / "fine.hearth", _entries())

    def out_of_memory(_path):
        raise MemoryError

    monkeypatch.setattr(editor_module, "read_project", out_of_memory)
    _refused_by_editor(editor, path, "too large to open")


def test_unknown_fields_are_dropped_and_wrong_types_named(editor, new_editor, tmp_path):
    params = _params(future_setting={"anything": 1})
    layers = [{"id": "a", "name": "sky", "glow": True}]
    path = write_zip(
        tmp_path / "newer.hearth", _entries(**{"project.json": _manifest(params, layers, extra=[1])})
    )
    assert editor.open_project(path), editor.status.text()
    assert "future_setting" not in editor.document.params and editor.document.layers[0].name == "sky"

    for field, value, words in [
        ("prompt", {"not": "text"}, ["parameter 'prompt'", "str"]),
        ("width", 50_000, ["parameter 'width'"]),
        ("steps", True, ["parameter 'steps'", "int"]),
        ("guidance", float("nan"), ["parameter 'guidance'"]),
    ]:
        bad = _manifest(_params(**{field: value}))
        path = write_zip(tmp_path / f"bad-{field}.hearth", _entries(**{"project.json": bad}))
        _refused_by_editor(new_editor(), path, *words)
    layers = [{"id": "a", "opacity": "opaque"}]
    path = write_zip(tmp_path / "bad-layer.hearth", _entries(**{"project.json": _manifest(layers=layers)}))
    _refused_by_editor(new_editor(), path, "layer 0 field 'opacity'")


# --------------------------------------------------------------------------- leftovers of killed saves

SAVE_PARKED_MID_WRITE = """
import sys, zipfile
from workers.brushes.project_io import read_project, write_project
project = read_project(sys.argv[1])
project.params["seed"] = int(sys.argv[2])
entry, real_writestr = int(sys.argv[2]), zipfile.ZipFile.writestr
def writestr(self, *args, **kwargs):
    global entry
    entry -= 1
    if entry == 0:
        print("writing", flush=True)
        sys.stdin.readline()  # parked here, half the zip written, until the test kills us
    return real_writestr(self, *args, **kwargs)
zipfile.ZipFile.writestr = writestr
write_project(sys.argv[1], project)
"""


def test_saves_killed_mid_write_leave_only_marked_temp_files_that_the_next_save_sweeps(tmp_path):
    import random

    folder = tmp_path / "my projects"
    folder.mkdir()
    path = write_project(
        folder / "loop.hearth", read_project(write_zip(tmp_path / "seed.hearth", _entries()))
    )
    (folder / "notes.txt").write_text("the user's own file")
    moments = [random.Random(i).randint(1, 4) for i in range(20)]  # which of the 4 entries
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SAVE_PARKED_MID_WRITE, str(path), str(moment)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for moment in moments
    ]
    try:
        lines = [child.stdout.readline() for child in children]
        crashed = [
            child.stderr.read() for child, line in zip(children, lines, strict=True) if line != "writing\n"
        ]
        assert not crashed, f"{len(crashed)} saves never started: {crashed[0][-2000:]}"
    finally:
        for child in children:
            child.kill()
            child.communicate(timeout=30)  # reaps it and closes its pipes
    leftovers = sorted(p.name for p in folder.iterdir() if p.name not in ("loop.hearth", "notes.txt"))
    assert len(leftovers) == 20
    assert all(name.startswith(f".loop.hearth{TEMP_MARK}") and name.endswith(".hearth") for name in leftovers)
    assert read_project(path).params["seed"] == 3, "the saved project is untouched"

    write_project(path, read_project(path))  # fresh temp files may be another window's live save
    assert len([p for p in folder.iterdir() if TEMP_MARK in p.name]) == 20
    for name in leftovers:  # as if killed two hours ago
        os.utime(folder / name, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    write_project(path, read_project(path))
    assert sorted(p.name for p in folder.iterdir()) == ["loop.hearth", "notes.txt"]


def test_the_image_worker_sweeps_stale_temp_files_from_hearths_folders_at_start():
    from workers.jobs.image import warm_up
    from workers.paths import data_dir, outputs_dir

    stale = [
        data_dir() / "projects" / f".a.hearth{TEMP_MARK}x1.hearth",
        outputs_dir() / f".b.png{TEMP_MARK}x2.png",
    ]
    fresh = data_dir() / f".c.db{TEMP_MARK}x3.db"  # may be a save running right now
    mine = data_dir() / ".keep-me"
    for path in (*stale, fresh, mine):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    for path in (*stale, mine):
        os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    warm_up()  # what the image worker runs before it says Hello
    assert [path.exists() for path in (*stale, fresh, mine)] == [False, False, True, True]
