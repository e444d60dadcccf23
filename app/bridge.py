"""The GUI's handle on the supervisor: supervisor events become Qt signals on the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal, Slot

from app.job import JobBook
from workers.protocol import Priority, WorkerState
from workers.supervisor import Supervisor


class Bridge(QObject):
    """Thin QObject over ``workers.supervisor.Supervisor`` (which knows nothing of Qt).

    The supervisor calls its listener on its monitor thread; emitting ``_incoming`` from there
    queues the event into the GUI thread, where ``event`` is re-emitted for widgets.
    """

    event = Signal(object)
    workers_changed = Signal()
    cancel_requested = Signal(str)
    """A cancel for a job that runs outside the workers (a model download) reaches it here."""
    _incoming = Signal(object)

    def __init__(self, supervisor: Supervisor, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.supervisor = supervisor
        self._incoming.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self.jobs = JobBook(self)
        """Every job's state, first to hear each event: tabs bind to the jobs they start here."""
        supervisor.add_listener(self._incoming.emit)

    def submit(self, request, priority: Priority | None = None) -> str:
        """Queue a job; raises ``BadInput`` (show it to the user) if the request is wrong."""
        return self.supervisor.submit(request, priority)

    def cancel(self, job_id: str) -> None:
        self.supervisor.cancel(job_id)
        self.cancel_requested.emit(job_id)

    def worker_states(self):
        return self.supervisor.worker_states()

    def forget_conversation(self, conversation_id: str) -> None:
        """A deleted conversation's prompts leave the jobs history too."""
        self.supervisor.store.delete_conversation(conversation_id)

    @Slot(object)
    def _deliver(self, event: object) -> None:
        self.event.emit(event)
        if isinstance(event, WorkerState):
            self.workers_changed.emit()
