"""Hub downloads started from the window: each a job in the Jobs panel, run on a plain thread.

Why not a worker process: a download needs no GPU, no arbiter lease and no torch, only the
network and the disk, and a worker kind would be one more process spawned at every start (the
supervisor starts one per kind) for a job a user runs now and then. So it runs on a thread of
the window's process, through the torch-free ``models.download``, and speaks the jobs' own
events (``Queued``, ``Started``, ``Progress``, ``Finished``/``Cancelled``/``Failed``) on the
bridge, so the Jobs panel shows and cancels it like any other job. A download cancelled or cut
off keeps its partial files; starting it again (in the window or ``hearth models download``)
resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, Signal, Slot

from workers.errors import ErrorKind, HearthError
from workers.protocol import Cancelled, Failed, Finished, JobOrigin, Priority, Progress, Queued, Started

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.2
"""At most this often a progress event per download (a fast disk writes thousands of chunks a second)."""


class DownloadKind:
    """Stands for the job kind in the Jobs panel (``entry.kind``): ``download``."""

    value = "download"


@dataclass(frozen=True, slots=True)
class DownloadTask:
    """What the Jobs panel describes a download by (its ``prompt`` line)."""

    hub_id: str
    include: str = ""
    kind: type = DownloadKind

    @property
    def prompt(self) -> str:
        return f"download {self.hub_id}" + (f" ({self.include})" if self.include else "")


@dataclass
class DownloadJob:
    job_id: str
    task: DownloadTask
    cancel: object
    percent: int = 0
    message: str = ""
    state: str = "queued"
    """``queued``, ``running``, ``finished``, ``cancelled`` or ``failed``."""
    error_kind: str = ""
    models: list = field(default_factory=list)
    thread: threading.Thread | None = None


class DownloadJobs(QObject):
    """Starts, follows and cancels downloads. ``changed(job_id)``: a job's progress or state;
    ``downloaded(job_id)``: it finished and its models are in the registry."""

    changed = Signal(str)
    downloaded = Signal(str)
    _event = Signal(object)

    def __init__(self, bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.jobs: dict[str, DownloadJob] = {}
        self._event.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        cancel_requested = getattr(bridge, "cancel_requested", None)
        if cancel_requested is not None:  # the Jobs panel's Cancel goes through the bridge
            cancel_requested.connect(self.cancel)

    def start(self, hub_id: str, include: str = "") -> str:
        from models.download import Cancel

        job = DownloadJob(
            job_id=f"dl-{uuid.uuid4().hex[:10]}",
            task=DownloadTask(hub_id.strip(), include.strip()),
            cancel=Cancel(),
        )
        self.jobs[job.job_id] = job
        self._deliver(
            Queued(job_id=job.job_id, request=job.task, priority=Priority.background, origin=JobOrigin.window)
        )
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"download {hub_id}", daemon=True)
        job.thread.start()
        return job.job_id

    @Slot(str)
    def cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.state in ("queued", "running"):
            job.cancel.set()

    def running(self) -> list[DownloadJob]:
        return [job for job in self.jobs.values() if job.state in ("queued", "running")]

    def wait(self, timeout: float = 10.0) -> None:
        """Cancel what still runs and wait for its thread (the window closing)."""
        for job in self.running():
            job.cancel.set()
        for job in list(self.jobs.values()):
            if job.thread is not None:
                job.thread.join(timeout)

    # -- the download thread --------------------------------------------------------------

    def _run(self, job: DownloadJob) -> None:
        from models.download import DownloadCancelled, download_model
        from models.registry import ModelRegistry

        started = time.monotonic()
        self._event.emit(Started(job_id=job.job_id))
        last = [0.0, -1]

        def progress(state) -> None:
            now = time.monotonic()
            if state.percent != last[1] and (now - last[0] >= PROGRESS_INTERVAL_S or state.percent == 100):
                last[:] = [now, state.percent]
                self._event.emit(
                    Progress(job_id=job.job_id, step=state.percent, total=100, message=_words(state))
                )

        try:
            with ModelRegistry() as registry:
                job.models = download_model(
                    registry, job.task.hub_id, include=job.task.include, progress=progress, cancel=job.cancel
                )
        except DownloadCancelled:
            self._event.emit(Cancelled(job_id=job.job_id, at_step=last[1]))
        except HearthError as exc:
            self._event.emit(Failed(job_id=job.job_id, kind=exc.kind, message=str(exc)))
        except Exception as exc:  # noqa: BLE001 - the job fails with its reason; the window carries on
            log.exception("download of %s failed", job.task.hub_id)
            self._event.emit(
                Failed(job_id=job.job_id, kind=ErrorKind.internal, message=f"{type(exc).__name__}: {exc}")
            )
        else:
            self._event.emit(Finished(job_id=job.job_id, elapsed_s=time.monotonic() - started))

    # -- the GUI thread -------------------------------------------------------------------

    @Slot(object)
    def _deliver(self, event) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        match event:
            case Started():
                job.state = "running"
            case Progress(step=step, message=message):
                job.percent, job.message = step, message
            case Finished():
                job.state, job.percent = "finished", 100
            case Cancelled():
                job.state, job.message = "cancelled", "cancelled: starting it again resumes where it stopped"
            case Failed(kind=kind, message=message):
                job.state, job.error_kind, job.message = "failed", kind.value, message
        self.bridge.event.emit(event)  # the Jobs panel follows it like any job
        self.changed.emit(job.job_id)
        if job.state == "finished":
            self.downloaded.emit(job.job_id)


def _words(state) -> str:
    from workers.arbiter.units import format_bytes

    if state.stage != "downloading":
        return f"{state.stage} {state.file}".strip()
    return f"{format_bytes(state.done)} of {format_bytes(state.total)}"
