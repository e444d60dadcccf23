"""One job as the app sees it: the only place where the supervisor's events become job state.

A tab starts its work with ``bridge.jobs.start(request)`` and binds to the ``Job`` it gets back
(its status line, progress bar, preview, outputs, end); the Jobs panel lists the same objects.
No widget matches protocol events against job ids itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot

from workers.protocol import (
    BrushBaseRequest,
    BrushRenderRequest,
    Cancelled,
    ChatRequest,
    EmbedRequest,
    Failed,
    Finished,
    JobOrigin,
    JobState,
    JobStatus,
    Output,
    Progress,
    Queued,
    Started,
    TextDelta,
)

ENDED = (JobState.finished, JobState.cancelled, JobState.failed)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DESCRIPTION_CHARS = 60


def describe_request(request) -> str:
    """A short line a person recognises the job by."""
    match request:
        case ChatRequest(messages=messages):
            text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        case EmbedRequest(texts=texts):
            text = f"embeddings of {len(texts)} text{'s' if len(texts) != 1 else ''}"
        case BrushRenderRequest(layers=layers):
            text = f"brush edit ({len(layers)} layer{'s' if len(layers) != 1 else ''})"
        case BrushBaseRequest(prompt=prompt, photo_path=photo):
            text = f"brush base: {prompt or photo}"
        case _:
            text = getattr(request, "prompt", "") or type(request).__name__
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1] + "…"


class Job(QObject):
    """A job's state, progress, status line, preview, outputs and end, with a signal per change.

    ``changed`` follows every change (the Jobs panel's row); the other signals say which one,
    so a tab binds only what it shows."""

    changed = Signal()
    started = Signal()
    status_changed = Signal(str)
    """The job's status line: what it is doing between steps, or what its last step said."""
    progressed = Signal(int, int, str)
    """(step, total, what the step said or ""). Never a status line in disguise."""
    preview_changed = Signal(bytes)
    output_added = Signal(str, str)
    """(path, media type) of a file the job wrote."""
    text_added = Signal(str)
    """Streamed text (a chat answer's tokens), in order."""
    ended = Signal(object)
    """(this job) It finished, was cancelled or failed: read ``state`` and the fields that go with it."""

    def __init__(self, job_id: str, request=None, *, kind: str = "", description: str = "") -> None:
        super().__init__()
        self.job_id = job_id
        self.request = request
        self.kind = kind or (request.kind.value if request is not None else "")
        self.description = description
        self.state = JobState.queued
        self.origin = JobOrigin.window
        self.step = 0
        self.total = 0
        self.message = ""
        self.preview_png: bytes | None = None
        self.outputs: list[str] = []
        self.image_path = ""
        """The last image the job wrote: the Jobs panel's thumbnail once it is there."""
        self.started_at: float | None = None
        """``time.monotonic()`` when it started running, for the live elapsed time."""
        self.elapsed_s: float | None = None
        self.metrics: dict[str, float] = {}
        self.cancelled_at_step = -1
        self.error_kind = ""
        self.error_message = ""
        self.traceback = ""

    @property
    def ended_state(self) -> bool:
        return self.state in ENDED

    @property
    def cancellable(self) -> bool:
        return self.state in (JobState.queued, JobState.running)

    def elapsed(self, now: float | None = None) -> float | None:
        if self.elapsed_s is not None:
            return self.elapsed_s
        if self.started_at is not None and self.state is JobState.running:
            return (now or time.monotonic()) - self.started_at
        return None

    def add_output(self, path: str, media_type: str = "") -> None:
        """A file of this job's; without its media type (a stored job's outputs, read back from the
        job store) its suffix says whether it is an image."""
        self.outputs.append(path)
        if media_type.startswith("image/") if media_type else path.lower().endswith(IMAGE_SUFFIXES):
            self.image_path = path

    def apply(self, event: object) -> bool:
        """Take one of this job's events; False for an event that says nothing about the job
        (and for anything after its end: a late event never reopens an ended job)."""
        if self.ended_state and not isinstance(event, Queued):
            return False
        match event:
            case Queued(origin=origin):
                self.state, self.origin = JobState.queued, origin
                self.started_at = self.elapsed_s = None
            case Started():
                self.state, self.started_at = JobState.running, time.monotonic()
                self.started.emit()
            case Progress(step=step, total=total, message=message, preview_png=preview):
                self.step, self.total = step, total
                self.progressed.emit(step, total, message)
                if message:
                    self._set_message(message)
                if preview:
                    self.preview_png = preview
                    self.preview_changed.emit(preview)
            case JobStatus(message=message):
                self._set_message(message)
            case TextDelta(text=text):
                self.text_added.emit(text)
            case Output(path=path, media_type=media_type):
                self.add_output(path, media_type)
                self.output_added.emit(path, media_type)
            case Finished(elapsed_s=elapsed, metrics=metrics):
                self.metrics = {m.name: m.value for m in metrics}
                self._end(JobState.finished, elapsed or None)
            case Cancelled(at_step=step):
                self.cancelled_at_step = step
                self._end(JobState.cancelled)
            case Failed(kind=kind, message=message, traceback=tb):
                self.error_kind, self.error_message, self.traceback = kind.value, message, tb
                self._end(JobState.failed)
            case _:
                return False
        self.changed.emit()
        return True

    def _set_message(self, message: str) -> None:
        self.message = message
        self.status_changed.emit(message)

    def _end(self, state: JobState, elapsed: float | None = None) -> None:
        self.elapsed_s = elapsed if elapsed is not None else self.elapsed()
        self.state = state
        self.ended.emit(self)


def bind_job(
    job: Job,
    *,
    started: Callable[[], object] | None = None,
    status: Callable[[str], object] | None = None,
    progressed: Callable[[int, int, str], object] | None = None,
    preview: Callable[[bytes], object] | None = None,
    output: Callable[[str, str], object] | None = None,
    text: Callable[[str], object] | None = None,
    ended: Callable[[Job], object] | None = None,
) -> Job:
    """Connect what a tab shows to the job it started: the one way every tab follows its work."""
    for signal, handler in (
        (job.started, started),
        (job.status_changed, status),
        (job.progressed, progressed),
        (job.preview_changed, preview),
        (job.output_added, output),
        (job.text_added, text),
        (job.ended, ended),
    ):
        if handler is not None:
            signal.connect(handler)
    return job


class JobBook(QObject):
    """The jobs that have not ended, by id, fed by one bridge's events.

    ``queued(job)``: a job entered the queue (one of ours, or one the HTTP API submitted);
    ``job_changed(job)``: one of its events was applied."""

    queued = Signal(object)
    job_changed = Signal(object)

    def __init__(self, bridge) -> None:
        super().__init__(bridge)
        self._bridge = bridge
        self._live: dict[str, Job] = {}
        bridge.event.connect(self.on_event)

    def start(self, request, priority=None) -> Job:
        """Submit ``request`` and return its job; raises ``BadInput`` (nothing is submitted) for a
        request the schema refuses."""
        job_id = self._bridge.submit(request, priority)
        return self._track(job_id, request)

    def get(self, job_id: str) -> Job | None:
        return self._live.get(job_id)

    def cancel(self, job: Job) -> None:
        if job.cancellable:
            self._bridge.cancel(job.job_id)

    @Slot(object)
    def on_event(self, event: object) -> None:
        job_id = getattr(event, "job_id", None)
        if not isinstance(job_id, str):
            return
        if isinstance(event, Queued):
            job = self._track(job_id, event.request)
            job.apply(event)
            self.queued.emit(job)
            return
        job = self._live.get(job_id)
        if job is None or not job.apply(event):
            return
        if job.ended_state:
            del self._live[job_id]
        self.job_changed.emit(job)

    def _track(self, job_id: str, request) -> Job:
        job = self._live.get(job_id)
        if job is None:
            job = self._live[job_id] = Job(job_id, request, description=describe_request(request))
        return job
