"""The foundation through real worker processes: jobs, cancel, crash recovery, arbiter revokes."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from PIL import Image

from tests.supervisor_helpers import running_supervisor
from workers.errors import ErrorKind
from workers.protocol import (
    Cancelled,
    Failed,
    Finished,
    ImageRequest,
    JobStatus,
    Output,
    Priority,
    Progress,
    WorkerKind,
)

pytestmark = pytest.mark.timeout(480)


@pytest.fixture(scope="module")
def image_supervisor(isolated_hearth_env):
    with running_supervisor(WorkerKind.image, start_timeout=120) as running:
        yield running


def test_image_job_writes_png_with_parameters(image_supervisor, tmp_path):
    supervisor, recorder = image_supervisor
    out = tmp_path / "apple.png"
    job = supervisor.submit(ImageRequest(prompt="a red apple", steps=4, seed=7, out_path=str(out)))
    progress = recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.total == 4)
    assert progress.preview_png.startswith(b"\x89PNG")
    output = recorder.wait_for(lambda e: isinstance(e, Output) and e.job_id == job)
    assert isinstance(recorder.job_end(job), Finished)
    assert output.path == str(out)
    with Image.open(out) as image:
        assert image.size == (64, 64)
        assert "a red apple" in image.text["parameters"]
        assert "Steps: 4" in image.text["parameters"] and "Seed: 7" in image.text["parameters"]
    sidecar = json.loads((tmp_path / "apple.png.json").read_text())
    assert sidecar["prompt"] == "a red apple" and sidecar["seed"] == 7
    assert supervisor.store.get(job).state.value == "finished"


def test_cancel_mid_job_ends_cancelled(image_supervisor, tmp_path):
    supervisor, recorder = image_supervisor
    out = tmp_path / "never.png"
    job = supervisor.submit(ImageRequest(prompt="a long render", steps=400, out_path=str(out)))
    recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.step >= 2)
    supervisor.cancel(job)
    end = recorder.job_end(job)
    assert isinstance(end, Cancelled)
    assert 2 <= end.at_step < 400
    assert not out.exists()
    assert supervisor.store.get(job).state.value == "cancelled"


def test_killed_worker_fails_job_and_next_job_succeeds(image_supervisor, tmp_path):
    supervisor, recorder = image_supervisor
    job = supervisor.submit(ImageRequest(prompt="doomed", steps=400, out_path=str(tmp_path / "x.png")))
    recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.step >= 1)
    os.kill(supervisor.worker_pid(WorkerKind.image), signal.SIGKILL)
    end = recorder.job_end(job)
    assert isinstance(end, Failed) and end.kind is ErrorKind.worker_crashed
    assert "restarted" in end.message
    again = supervisor.submit(
        ImageRequest(prompt="after the crash", steps=2, out_path=str(tmp_path / "y.png"))
    )
    assert isinstance(recorder.job_end(again, timeout=180), Finished)
    assert (tmp_path / "y.png").exists()


def test_interactive_request_preempts_background_job_at_a_step(image_supervisor, tmp_path, arbiter_address):
    """A background render yields its lease at a step boundary, then resumes and finishes."""
    from workers.arbiter.client import ArbiterClient
    from workers.arbiter.messages import Tier

    supervisor, recorder = image_supervisor
    job = supervisor.submit(
        ImageRequest(prompt="background", steps=100, out_path=str(tmp_path / "bg.png")),
        priority=Priority.background,
    )
    recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job and e.step >= 2)
    client = ArbiterClient(owner="test-chat", address=arbiter_address)
    budget = client.status().budget
    granted: list = []
    thread = threading.Thread(
        target=lambda: granted.append(
            client.acquire(
                job="chat",
                priority=Priority.interactive,
                tiers=[Tier(name="all", bytes=budget - 1, est_step_s=0.01)],
                timeout=60,
            )
        )
    )
    thread.start()
    paused = recorder.wait_for(
        lambda e: isinstance(e, JobStatus) and e.job_id == job and "paused" in e.message
    )
    thread.join(60)
    assert granted, "interactive request was not granted after the revoke"
    steps_before_pause = [
        e.step
        for e in recorder.seen[: recorder.seen.index(paused)]
        if isinstance(e, Progress) and e.job_id == job
    ]
    assert max(steps_before_pause, default=0) < 100
    granted[0].release()
    client.close()
    assert isinstance(recorder.job_end(job, timeout=400), Finished)
    assert (tmp_path / "bg.png").exists()


def test_bad_requests_are_refused_before_a_worker_sees_them(image_supervisor, tmp_path):
    from workers.errors import BadInput

    supervisor, _ = image_supervisor
    cases = {
        "prompt is empty": ImageRequest(prompt="  "),
        "steps must be between 1 and 500, got 0": ImageRequest(prompt="x", steps=0),
        "got 10000": ImageRequest(prompt="x", steps=10000),
        "width must be a multiple of 8, got 65": ImageRequest(prompt="x", width=65),
    }
    for message, request in cases.items():
        with pytest.raises(BadInput, match=message):
            supervisor.submit(request)
    stored = supervisor.store.history()
    assert not any(r.request.prompt.strip() in ("", "x") for r in stored), "a refused request was queued"
