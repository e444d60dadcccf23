"""The CLI refuses bad input before starting any worker, with a message naming the problem."""

from __future__ import annotations

import pytest

from app.cli import main
from tests.cli_inprocess import hearth_in_process


@pytest.mark.parametrize(
    "args, problem",
    [
        (["run", "image", "--prompt", ""], "prompt is empty"),
        (["run", "image", "--prompt", "x", "--steps", "0"], "steps must be between 1 and 500"),
        (["run", "image", "--prompt", "x", "--steps", "10000"], "got 10000"),
        (["run", "image", "--prompt", "x", "--width", "100"], "width must be a multiple of 8"),
        (["run", "image", "--prompt", "x", "--out", "/nonexistent-folder/x.png"], "does not exist"),
        (["run", "chat", "--prompt", "hi", "--max-new-tokens", "0"], "max new tokens"),
        (["run", "music", "--prompt", "x", "--seconds", "0"], "seconds"),
        (["run", "video", "--prompt", "x", "--frames", "0"], "frames"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, problem, capsys):
    assert main(args) == 2
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize(
    "make_out, problem",
    [
        (lambda tmp: tmp / "a-file" / "x.png", "which is a file, not a folder"),
        (lambda tmp: tmp, "is a directory"),
    ],
)
def test_unwritable_output_path_is_refused(tmp_path, capsys, make_out, problem):
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["run", "image", "--prompt", "x", "--out", str(make_out(tmp_path))]) == 2
    assert problem in capsys.readouterr().err


def test_run_image_writes_the_png_and_prints_its_path(tmp_path):
    out = tmp_path / "cli.png"
    proc = hearth_in_process("run", "image", "--prompt", "a red apple", "--steps", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "4/4" in proc.stderr  # the progress bar reached the last step
    from PIL import Image

    with Image.open(out) as image:
        assert "a red apple" in image.text["parameters"]
