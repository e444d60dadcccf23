"""``hearth info FILE [--json]``: the parameters of Hearth's outputs and other apps' PNGs, a clear
refusal (exit 2) for a file without any, and neither Qt nor torch imported to say so."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests.test_cli_entry import run_entry
from tests.test_generation_info import A1111_TEXT, a1111_png
from workers.outputs import save_png, write_sidecar


def test_info_prints_an_a1111_pngs_settings(tmp_path, capsys):
    path = a1111_png(tmp_path / "foreign.png")
    assert main(["info", str(path)]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"file: {path}"
    assert "kind: image" in out and "source: the image's A1111 parameters" in out
    assert "prompt: a lighthouse on a cliff, (masterpiece:1.2)\\ngolden hour" in out
    assert "negative prompt: blurry, lowres\\nwatermark" in out
    for line in ("steps: 28", "sampler: DPM++ 2M Karras", "CFG scale: 6.5", "seed: 3141592", "size: 512x768"):
        assert line in out


def test_info_json_of_a_hearth_image(tmp_path, capsys):
    params = {"job": "ImageRequest", "prompt": "a red boat", "seed": 7, "steps": 4, "width": 8, "height": 8}
    path = tmp_path / "boat.png"
    save_png(Image.new("RGB", (8, 8)), path, params)
    write_sidecar(path, params)
    assert main(["info", str(path), "--json"]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed["parameters"] == params
    assert printed["kind"] == "image" and printed["file"] == str(path)
    assert printed["a1111"].startswith("a red boat\nSteps: 4")


def test_info_of_a_song(tmp_path, capsys):
    from workers.music.export import save_audio

    params = {"job": "MusicRequest", "prompt": "calm piano", "seconds": 0.1, "bpm": 90.0}
    path = save_audio(tmp_path / "piano.flac", np.zeros((1, 320), np.float32), 3200, params, sidecar=False)
    assert main(["info", str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["parameters"] == params


def test_a_file_without_parameters_exits_2_naming_why(tmp_path, capsys):
    path = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(path)
    assert main(["info", str(path)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == "hearth: error: photo.png carries no generation parameters"
    assert main(["info", str(tmp_path / "gone.wav")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_info_runs_without_qt_or_torch(tmp_path):
    path = a1111_png(tmp_path / "foreign.png")
    result = run_entry("info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["a1111"] == A1111_TEXT
    assert "imported: []" in result.stderr


def test_info_into_a_pipe_that_closes_early_ends_quietly(tmp_path):
    """``hearth info F | head -1``: no traceback when the reader stops reading."""
    import os
    import subprocess
    import sys

    path = a1111_png(tmp_path / "foreign.png")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "info", str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == EXIT_OK and "BrokenPipeError" not in result.stderr, result.stderr
