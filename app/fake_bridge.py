"""A stand-in for ``Bridge`` in widget tests: records submits and replays scripted events."""

from __future__ import annotations

import itertools

from PySide6.QtCore import QObject, Signal

from app.job import JobBook
from workers.errors import BadInput


class FakeBridge(QObject):
    """Same interface as ``app.bridge.Bridge``; nothing runs, tests drive ``emit_event``."""

    event = Signal(object)
    workers_changed = Signal()
    cancel_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[tuple[str, object]] = []
        self.cancelled: list[str] = []
        self.forgotten: list[str] = []
        self._ids = itertools.count(1)
        self.jobs = JobBook(self)

    def submit(self, request, priority=None) -> str:
        request.validate()
        job_id = f"job-{next(self._ids)}"
        self.submitted.append((job_id, request))
        return job_id

    def forget_conversation(self, conversation_id: str) -> None:
        self.forgotten.append(conversation_id)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        self.cancel_requested.emit(job_id)

    def emit_event(self, event: object) -> None:
        self.event.emit(event)

    def last_request(self):
        if not self.submitted:
            raise BadInput("nothing was submitted")
        return self.submitted[-1][1]

    def worker_states(self) -> dict:
        return {}
