"""Brush projects: save and reopen exactly, survive a kill mid-save, refuse damaged files clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.brush_fixtures import SIZE, STEPS, base_session, box_mask, layer, tiny_pipeline
from workers.brushes.project_io import BrushProject, read_project, write_project
from workers.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def _params(session_id="s1"):
    return {
        "session_id": session_id,
        "model": "demo-sd",
        "prompt": "a red apple on a wooden table",
        "negative_prompt": "",
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "guidance": 7.5,
        "seed": 3,
        "source": "generated",
    }


def test_saved_and_reopened_project_renders_identically(pipe, tmp_path):
    from workers.brushes.project import open_session, save_session

    session = base_session(pipe)
    layers = [
        layer("a", box_mask(4, 4, 30, 30), prompt="a cat", opacity=0.8),
        layer("b", box_mask(34, 20, 60, 50), prompt="a dog", seed=4, visible=False),
    ]
    before = session.render(layers)
    path = save_session(
        tmp_path / "apple.hearth",
        session,
        _params(),
        [item.to_message() for item in layers],
        render=before.image,
    )
    project = read_project(path)
    assert [item.name for item in project.layers] == ["", ""]
    assert [item.visible for item in project.layers] == [True, False]
    reopened = open_session(pipe, path)
    from workers.brushes.layers import Layer

    after = reopened.render([Layer.from_message(message) for message in project.layers])
    assert torch.equal(before.latents, after.latents)
    assert np.array_equal(np.asarray(before.image), np.asarray(after.image))
    assert np.array_equal(np.asarray(reopened.base_image), np.asarray(session.base_image))


def _small_project(tmp_path) -> BrushProject:
    import io

    from PIL import Image

    from tests.brush_fixtures import box_mask as mask_of
    from workers.brushes.layers import mask_to_png
    from workers.protocol import BrushLayer

    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), "gray").save(buffer, format="PNG")
    layers = [BrushLayer(id="a", mask_png=mask_to_png(mask_of(0, 0, 10, 10)), name="first")]
    return BrushProject(params=_params(), base_png=buffer.getvalue(), trajectory=b"opaque", layers=layers)


def test_kill_during_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "loop.hearth"
    write_project(path, _small_project(tmp_path))
    script = (
        "import io, os, sys\n"
        "from PIL import Image\n"
        "from workers.brushes.project_io import read_project, write_project\n"
        "project = read_project(sys.argv[1])\n"
        "project.trajectory = os.urandom(8 << 20)\n"  # 8 MiB: a kill usually lands mid-write
        "i = 0\n"
        "while True:\n"
        "    project.params['seed'] = i; write_project(sys.argv[1], project); i += 1\n"
        "    print(i, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "1"  # at least one full save happened
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)  # reaps it and closes its pipe
    reopened = read_project(path)
    assert reopened.params["seed"] >= 0 and len(reopened.trajectory) == 8 << 20
    assert reopened.layers[0].name == "first"


def test_corrupt_project_files_are_refused_clearly(tmp_path):
    truncated = tmp_path / "truncated.hearth"
    write_project(truncated, _small_project(tmp_path))
    truncated.write_bytes(truncated.read_bytes()[:100])
    garbage = tmp_path / "garbage.hearth"
    garbage.write_bytes(b"not a zip at all")
    foreign = tmp_path / "foreign.hearth"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("project.json", '{"format": "something-else"}')
    for path in (truncated, garbage, foreign, tmp_path / "missing.hearth"):
        with pytest.raises(BadInput, match=path.name.split(".")[0]):
            read_project(path)


def test_damaged_trajectory_inside_a_valid_zip_is_bad_input(tmp_path, pipe):
    from workers.brushes.project import open_session

    path = write_project(tmp_path / "bad.hearth", _small_project(tmp_path))
    with pytest.raises(BadInput, match="trajectory"):
        open_session(pipe, path)
