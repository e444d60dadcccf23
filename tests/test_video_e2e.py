"""Video through a real spawned worker: previews arrive, the MP4 is readable, cancel ends Cancelled."""

from __future__ import annotations

import pytest

from tests.supervisor_helpers import running_supervisor
from workers.protocol import Cancelled, Finished, Output, Progress, VideoRequest, WorkerKind

pytestmark = pytest.mark.timeout(480)


@pytest.fixture(scope="module")
def video_supervisor(isolated_hearth_env):
    with running_supervisor(WorkerKind.video) as running:
        yield running


def test_render_streams_previews_and_writes_a_readable_mp4(video_supervisor, tmp_path):
    import imageio.v3 as iio

    supervisor, recorder = video_supervisor
    out = tmp_path / "cat.mp4"
    job = supervisor.submit(VideoRequest(prompt="a cat", frames=8, steps=3, out_path=str(out)))
    preview = recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.total == 3)
    assert preview.preview_png and preview.preview_png.startswith(b"\x89PNG")
    output = recorder.wait_for(lambda e: isinstance(e, Output) and e.job_id == job, timeout=300)
    assert isinstance(recorder.job_end(job), Finished)
    assert output.path == str(out) and output.media_type == "video/mp4"
    frames = iio.imread(out, plugin="pyav") if _has_pyav() else iio.imread(out)
    assert len(frames) == 8 and frames.shape[1:3] == (64, 64)
    assert not list(tmp_path.glob(".cat*"))  # no temp file left beside it


def test_cancel_mid_render_ends_cancelled_without_a_file(video_supervisor, tmp_path):
    supervisor, recorder = video_supervisor
    out = tmp_path / "long.mp4"
    job = supervisor.submit(VideoRequest(prompt="a long render", frames=8, steps=200, out_path=str(out)))
    recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.step >= 1, timeout=300)
    supervisor.cancel(job)
    end = recorder.job_end(job)
    assert isinstance(end, Cancelled) and end.at_step < 200
    assert not out.exists()


def _has_pyav() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None
