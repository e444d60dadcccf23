"""``hearth run brush``: a project with its base image, then a layer from a mask, through the real
image worker on an empty data dir; bad input refused before any worker starts, writing nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from app.cli import main
from tests.cli_inprocess import hearth_in_process
from workers.arbiter.address import arbiter_running, running_pid
from workers.brushes.project_io import read_project
from workers.protocol import BRUSH_MERGE_STEPS, BrushBaseRequest, BrushLayer
from workers.schema import default_of

STEPS = 8
PROMPT = "a red apple on a wooden table"
SIZE = default_of(BrushBaseRequest, "width")  # the protocol's default, not ours


def hearth(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return hearth_in_process("run", "brush", *args, env=env)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Hearth folders nobody has created yet (a new user's first run), and one real ``--new``."""
    root = tmp_path_factory.mktemp("brush-cli")
    folders = {var: root / "hearth" / var.lower() for var in ("DATA", "CONFIG", "RUNTIME", "LOG")}
    env = {f"HEARTH_{var}_DIR": str(path) for var, path in folders.items()}
    env |= {"HEARTH_ARBITER_DEVICE": "sim:8GiB", "HEARTH_ARBITER_SOCKET": str(folders["RUNTIME"] / "a.sock")}
    project = root / "apple.hearth"
    assert not (root / "hearth").exists()
    result = hearth("--new", PROMPT, "--project", str(project), "--steps", str(STEPS), env=env)
    yield result, project, env
    sock = folders["RUNTIME"] / "a.sock"
    pid = running_pid(sock)
    if pid and arbiter_running(sock):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def mask_file(folder: Path, box=(16, 16, 48, 48), size=(SIZE, SIZE), name="mask.png") -> Path:
    mask = Image.new("L", size, 0)
    if box:
        mask.paste(255, box)
    mask.save(folder / name)
    return folder / name


def test_new_writes_a_project_with_its_base_image(first_run):
    result, project, _ = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(project)
    opened = read_project(project)  # the window's checked loader accepts it
    assert opened.params["prompt"] == PROMPT
    assert opened.steps == STEPS
    assert opened.size == (SIZE, SIZE)
    assert opened.layers == []
    with Image.open(io.BytesIO(opened.base_png)) as base:
        assert base.size == (SIZE, SIZE)


def test_a_layer_from_a_mask_renders_and_is_saved(first_run, tmp_path):
    result, made, env = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    project = shutil.copy(made, tmp_path / "apple.hearth")
    out = tmp_path / "pear.png"
    rendered = hearth(
        "--project", str(project), "--mask", str(mask_file(tmp_path)), "--prompt", "a green pear",
        "--seed", "5", "--out", str(out), env=env,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert rendered.stdout.strip().splitlines()[-1] == str(out)
    assert "saved" in rendered.stderr
    saved = read_project(project)
    [layer] = saved.layers
    assert (layer.prompt, layer.seed) == ("a green pear", 5)
    assert layer.strength == default_of(BrushLayer, "strength")
    assert layer.regen_step == min(default_of(BrushLayer, "regen_step"), STEPS - 1 - BRUSH_MERGE_STEPS)
    assert saved.render_png == out.read_bytes()
    with Image.open(out) as image:
        params = json.loads(image.text["hearth"])  # the PNG carries its parameters
        composite = image.convert("RGB")
    assert params["layers"][0]["prompt"] == "a green pear"
    assert params["steps"] == STEPS
    with Image.open(io.BytesIO(saved.base_png)) as base:
        inside = (16, 16, 48, 48)
        assert composite.crop(inside).tobytes() != base.convert("RGB").crop(inside).tobytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"


@pytest.fixture
def made_project(first_run, tmp_path) -> Path:
    result, made, _ = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(shutil.copy(made, tmp_path / "apple.hearth"))


def refuse(args: list[str], capsys, hearth_dirs) -> str:
    """Exit 2 with a message, and not a byte written: not even Hearth's data folder."""
    assert main(["run", "brush", *args]) == 2
    assert not (hearth_dirs / "data").exists()
    return capsys.readouterr().err


def test_a_mask_of_the_wrong_size_is_refused(made_project, tmp_path, capsys, hearth_dirs):
    before = made_project.read_bytes()
    small = mask_file(tmp_path, size=(32, 32), name="small.png")
    out = tmp_path / "x.png"
    err = refuse(
        ["--project", str(made_project), "--mask", str(small), "--out", str(out)], capsys, hearth_dirs
    )
    assert f"is 32x32, the project's image is {SIZE}x{SIZE}" in err
    assert made_project.read_bytes() == before and not out.exists()


def test_an_empty_mask_is_refused(made_project, tmp_path, capsys, hearth_dirs):
    before = made_project.read_bytes()
    empty = mask_file(tmp_path, box=None, name="empty.png")
    err = refuse(["--project", str(made_project), "--mask", str(empty)], capsys, hearth_dirs)
    assert "has no white pixels" in err
    assert made_project.read_bytes() == before


def test_a_missing_project_is_refused(tmp_path, capsys, hearth_dirs):
    mask = mask_file(tmp_path)
    err = refuse(["--project", str(tmp_path / "nope.hearth"), "--mask", str(mask)], capsys, hearth_dirs)
    assert "nope.hearth" in err and "does not exist" in err


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04 broken"])
def test_a_file_that_is_not_a_project_is_refused(content, tmp_path, capsys, hearth_dirs):
    fake = tmp_path / "fake.hearth"
    fake.write_bytes(content)
    err = refuse(["--project", str(fake), "--mask", str(mask_file(tmp_path))], capsys, hearth_dirs)
    assert "fake.hearth" in err
    assert fake.read_bytes() == content


def test_a_mask_that_is_not_an_image_is_refused(made_project, tmp_path, capsys, hearth_dirs):
    bad = tmp_path / "mask.png"
    bad.write_text("hello")
    err = refuse(["--project", str(made_project), "--mask", str(bad)], capsys, hearth_dirs)
    assert "is not a readable image" in err


@pytest.mark.parametrize(
    "extra, problem",
    [
        (["--regen-step", str(STEPS)], "regeneration step must be between 0 and"),
        (["--strength", "2"], "strength must be between 0 and 1"),
        (["--out", "x.jpg"], "must be a .png file"),
        (["--steps", "4"], "--steps cannot be used with --mask"),
    ],
)
def test_bad_layer_options_are_refused(made_project, tmp_path, capsys, hearth_dirs, extra, problem):
    args = ["--project", str(made_project), "--mask", str(mask_file(tmp_path)), *extra]
    assert problem in refuse(args, capsys, hearth_dirs)


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--new", "x", "--mask", "m.png"], "--mask cannot be used with --new"),
        (["--new", ""], "prompt is empty"),
        (["--new", "x", "--size", "100"], "width must be a multiple of 8"),
        (["--new", "x", "--steps", "2"], "steps must be between"),
        ([], "give --new PROMPT to start a project, or --mask MASK.png"),
    ],
)
def test_bad_new_options_are_refused(args, problem, tmp_path, capsys, hearth_dirs):
    project = tmp_path / "new.hearth"
    assert problem in refuse(["--project", str(project), *args], capsys, hearth_dirs)
    assert not project.exists()


def test_new_never_overwrites_a_project(made_project, capsys, hearth_dirs):
    before = made_project.read_bytes()
    assert "already exists" in refuse(["--new", "x", "--project", str(made_project)], capsys, hearth_dirs)
    assert made_project.read_bytes() == before


def test_new_needs_the_hearth_suffix(tmp_path, capsys, hearth_dirs):
    assert "must end in .hearth" in refuse(
        ["--new", "x", "--project", str(tmp_path / "p.zip")], capsys, hearth_dirs
    )
