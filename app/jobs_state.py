"""View-state of the Jobs panel: every job of this session (and recent history) as plain entries.

``JobsState`` listens to the bridge's protocol events and says what changed through signals;
the panel only binds to it. It never talks to the supervisor except to cancel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
)

MAX_JOBS = 200
"""Older finished jobs drop out of the panel (they stay in the job store)."""
DESCRIPTION_CHARS = 60
ENDED = (JobState.finished, JobState.cancelled, JobState.failed)


@dataclass
class JobEntry:
    """One row of the Jobs panel."""

    job_id: str
    kind: str
    description: str
    state: JobState = JobState.queued
    step: int = 0
    total: int = 0
    message: str = ""
    preview_png: bytes | None = None
    started_at: float | None = None
    """``time.monotonic()`` when it started running, for the live elapsed time."""
    elapsed_s: float | None = None
    error_kind: str = ""
    error_message: str = ""
    traceback: str = ""
    outputs: list[str] = field(default_factory=list)
    image_path: str = ""
    """The last image the job wrote: the row's thumbnail once it is there."""
    origin: JobOrigin = JobOrigin.window
    """An API job's row says so: the user sees who asked for the work, and may cancel it."""

    @property
    def cancellable(self) -> bool:
        return self.state in (JobState.queued, JobState.running)

    def elapsed(self, now: float | None = None) -> float | None:
        if self.elapsed_s is not None:
            return self.elapsed_s
        if self.started_at is not None and self.state is JobState.running:
            return (now or time.monotonic()) - self.started_at
        return None


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


def _describe_record(record) -> str:
    """A stored job's line; one this version cannot read says so (older rows must never stop the window)."""
    if record.request is not None:
        return describe_request(record.request)
    origin = record.unreadable.split(" (", 1)[0] or "from another version of Hearth"
    text = " ".join(record.prompt.split())
    if len(text) > DESCRIPTION_CHARS // 2:
        text = text[: DESCRIPTION_CHARS // 2 - 1] + "…"
    return f"{text} ({origin})" if text else f"a job {origin}"


def _last_image(paths) -> str:
    return next((p for p in reversed(paths) if p.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))), "")


class JobsState(QObject):
    """Jobs by id, newest first. ``jobs_changed``: rows added or removed; ``job_changed(id)``: one row."""

    jobs_changed = Signal()
    job_changed = Signal(str)

    def __init__(self, bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._jobs: dict[str, JobEntry] = {}
        bridge.event.connect(self.on_event)

    def jobs(self) -> list[JobEntry]:
        """Newest first."""
        return list(reversed(self._jobs.values()))

    def job(self, job_id: str) -> JobEntry | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None and entry.cancellable:
            self._bridge.cancel(job_id)

    def clear_ended(self) -> None:
        """Drop finished, cancelled and failed jobs from the panel (not from the job store)."""
        self._jobs = {k: v for k, v in self._jobs.items() if v.state not in ENDED}
        self.jobs_changed.emit()

    def load_history(self) -> None:
        """Recent jobs from the supervisor's job store, when there is a real supervisor."""
        supervisor = getattr(self._bridge, "supervisor", None)
        if supervisor is None:
            return
        for record in reversed(supervisor.store.history(MAX_JOBS)):
            if record.state not in ENDED:
                continue  # ours arrive as Queued events; others' run in another Hearth process
            self._jobs[record.job_id] = JobEntry(
                job_id=record.job_id,
                kind=record.kind,
                description=_describe_record(record),
                state=record.state,
                error_kind=record.error_kind,
                error_message=record.error_message,
                outputs=list(record.outputs),
                image_path=_last_image(record.outputs),
            )
        self.jobs_changed.emit()

    @Slot(object)
    def on_event(self, event: object) -> None:
        if isinstance(event, Queued):
            self._on_queued(event)
            return
        entry = self._jobs.get(getattr(event, "job_id", None))
        if entry is None:
            return
        if self._apply(entry, event):
            self.job_changed.emit(entry.job_id)

    def _on_queued(self, event: Queued) -> None:
        entry = self._jobs.pop(event.job_id, None)  # a restored job moves to the top again
        if entry is None:
            entry = JobEntry(
                job_id=event.job_id,
                kind=event.request.kind.value,
                description=describe_request(event.request),
            )
        entry.origin = event.origin
        entry.state, entry.started_at, entry.elapsed_s = JobState.queued, None, None
        self._jobs[event.job_id] = entry
        self._trim()
        self.jobs_changed.emit()

    @staticmethod
    def _apply(entry: JobEntry, event: object) -> bool:
        match event:
            case Started():
                entry.state, entry.started_at = JobState.running, time.monotonic()
            case Progress(step=step, total=total, message=message, preview_png=preview):
                entry.step, entry.total = step, total
                entry.message = message or entry.message
                entry.preview_png = preview or entry.preview_png
            case JobStatus(message=message):
                entry.message = message
            case Output(path=path, media_type=media_type):
                entry.outputs.append(path)
                if media_type.startswith("image/"):
                    entry.image_path = path
            case Finished(elapsed_s=elapsed):
                entry.state, entry.elapsed_s = JobState.finished, elapsed or entry.elapsed()
            case Cancelled():
                entry.state, entry.elapsed_s = JobState.cancelled, entry.elapsed()
            case Failed(kind=kind, message=message, traceback=tb):
                entry.state, entry.elapsed_s = JobState.failed, entry.elapsed()
                entry.error_kind, entry.error_message, entry.traceback = kind.value, message, tb
            case _:
                return False
        return True

    def _trim(self) -> None:
        ended = [k for k, v in self._jobs.items() if v.state in ENDED]
        for job_id in ended[: max(0, len(self._jobs) - MAX_JOBS)]:
            del self._jobs[job_id]
