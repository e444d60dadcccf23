"""The app's one job model: the tab that starts a job and the Jobs panel see the same object,
fed once from the bridge's events."""

from __future__ import annotations

from app.fake_bridge import FakeBridge
from app.jobs_state import JobsState
from workers.errors import ErrorKind
from workers.protocol import (
    Cancelled,
    Failed,
    Finished,
    ImageRequest,
    JobState,
    JobStatus,
    Metric,
    Output,
    Progress,
    Queued,
    Started,
)


def started(bridge: FakeBridge, request=None):
    request = request or ImageRequest(prompt="a red apple", steps=4)
    job = bridge.jobs.start(request)
    bridge.emit_event(Queued(job_id=job.job_id, request=request, priority=request.default_priority))
    return job


def test_the_tab_and_the_jobs_panel_follow_one_job_object(qtbot):
    bridge = FakeBridge()
    panel = JobsState(bridge)
    job = started(bridge)
    assert panel.jobs() == [job]
    seen: list[tuple[int, int, str]] = []
    job.progressed.connect(lambda step, total, message: seen.append((step, total, message)))
    bridge.emit_event(Started(job_id=job.job_id))
    bridge.emit_event(Progress(job_id=job.job_id, step=2, total=4, preview_png=b"png"))
    assert seen == [(2, 4, "")]
    assert panel.job(job.job_id) is job and (job.state, job.step, job.total) == (JobState.running, 2, 4)
    assert job.preview_png == b"png"


def test_a_status_line_is_not_a_progress_step(qtbot):
    bridge = FakeBridge()
    job = started(bridge)
    steps: list[tuple[int, int, str]] = []
    statuses: list[str] = []
    job.progressed.connect(lambda *step: steps.append(step))
    job.status_changed.connect(statuses.append)
    bridge.emit_event(Progress(job_id=job.job_id, step=3, total=4))
    bridge.emit_event(JobStatus(job_id=job.job_id, message="writing the file"))
    assert steps == [(3, 4, "")] and statuses == ["writing the file"]
    assert (job.step, job.total, job.message) == (3, 4, "writing the file")  # the bar keeps its step


def test_each_end_carries_what_the_tab_shows(qtbot):
    bridge = FakeBridge()
    finished, cancelled, failed = started(bridge), started(bridge), started(bridge)
    ends: list[object] = []
    for job in (finished, cancelled, failed):
        job.ended.connect(ends.append)
    bridge.emit_event(Output(job_id=finished.job_id, path="/out/a.png", media_type="image/png"))
    bridge.emit_event(
        Finished(job_id=finished.job_id, elapsed_s=1.5, metrics=(Metric(name="decode_tok_s", value=9.0),))
    )
    bridge.emit_event(Cancelled(job_id=cancelled.job_id, at_step=2))
    bridge.emit_event(Failed(job_id=failed.job_id, kind=ErrorKind.out_of_memory, message="too big"))
    assert ends == [finished, cancelled, failed]
    assert (finished.state, finished.elapsed_s, finished.metrics) == (
        JobState.finished,
        1.5,
        {"decode_tok_s": 9.0},
    )
    assert finished.outputs == ["/out/a.png"] and finished.image_path == "/out/a.png"
    assert (cancelled.state, cancelled.cancelled_at_step) == (JobState.cancelled, 2)
    assert (failed.state, failed.error_kind, failed.error_message) == (
        JobState.failed,
        "out_of_memory",
        "too big",
    )


def test_an_event_after_the_end_does_not_reopen_the_job(qtbot):
    bridge = FakeBridge()
    job = started(bridge)
    bridge.emit_event(Cancelled(job_id=job.job_id))
    bridge.emit_event(Progress(job_id=job.job_id, step=4, total=4))
    bridge.emit_event(Finished(job_id=job.job_id))
    assert job.state is JobState.cancelled and job.step == 0
    assert bridge.jobs.get(job.job_id) is None  # the book keeps live jobs only


def test_a_job_someone_else_submitted_appears_in_the_book(qtbot):
    """An HTTP API job is queued by the supervisor, not by a tab: the panel still gets its Job."""
    bridge = FakeBridge()
    panel = JobsState(bridge)
    request = ImageRequest(prompt="from curl")
    bridge.emit_event(Queued(job_id="api-1", request=request, priority=request.default_priority))
    job = bridge.jobs.get("api-1")
    assert job is not None and panel.jobs() == [job] and job.description == "from curl"


def test_cancel_asks_the_bridge_once_and_never_for_an_ended_job(qtbot):
    bridge = FakeBridge()
    job = started(bridge)
    bridge.jobs.cancel(job)
    bridge.emit_event(Cancelled(job_id=job.job_id))
    bridge.jobs.cancel(job)
    assert bridge.cancelled == [job.job_id]
