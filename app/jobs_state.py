"""View-state of the Jobs panel: this session's jobs (and recent history), newest first.

The jobs themselves are the ``app.job.Job`` objects of the bridge's ``JobBook``, the same ones
the tabs bind to; this adds the panel's order, its history from the job store and its trimming.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from app.job import DESCRIPTION_CHARS, ENDED, Job, JobBook, describe_request

MAX_JOBS = 200
"""Older finished jobs drop out of the panel (they stay in the job store)."""


def _describe_record(record) -> str:
    """A stored job's line; one this version cannot read says so (older rows must never stop the window)."""
    if record.request is not None:
        return describe_request(record.request)
    origin = record.unreadable.split(" (", 1)[0] or "from another version of Hearth"
    text = " ".join(record.prompt.split())
    if len(text) > DESCRIPTION_CHARS // 2:
        text = text[: DESCRIPTION_CHARS // 2 - 1] + "…"
    return f"{text} ({origin})" if text else f"a job {origin}"


def job_from_record(record) -> Job:
    """A job of an earlier session, as the job store kept it."""
    job = Job(record.job_id, record.request, kind=record.kind, description=_describe_record(record))
    job.state = record.state
    job.error_kind, job.error_message = record.error_kind, record.error_message
    for path in record.outputs:
        job.add_output(path)
    return job


class JobsState(QObject):
    """Jobs by id, newest first. ``jobs_changed``: rows added or removed; ``job_changed(id)``: one row."""

    jobs_changed = Signal()
    job_changed = Signal(str)

    def __init__(self, bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._jobs: dict[str, Job] = {}
        book: JobBook = bridge.jobs
        book.queued.connect(self._on_queued)
        book.job_changed.connect(self._on_job_changed)

    def jobs(self) -> list[Job]:
        """Newest first."""
        return list(reversed(self._jobs.values()))

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            self._bridge.jobs.cancel(job)

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
            self._jobs[record.job_id] = job_from_record(record)
        self.jobs_changed.emit()

    @Slot(object)
    def _on_queued(self, job: Job) -> None:
        self._jobs.pop(job.job_id, None)  # a job queued again moves to the top
        self._jobs[job.job_id] = job
        self._trim()
        self.jobs_changed.emit()

    @Slot(object)
    def _on_job_changed(self, job: Job) -> None:
        if self._jobs.get(job.job_id) is job:
            self.job_changed.emit(job.job_id)

    def _trim(self) -> None:
        ended = [k for k, v in self._jobs.items() if v.state in ENDED]
        for job_id in ended[: max(0, len(self._jobs) - MAX_JOBS)]:
            del self._jobs[job_id]
