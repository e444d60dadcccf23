"""Hub downloads started from the window: each a job in the Jobs panel, run on a plain thread.

Why not a worker process: a download needs no GPU, no arbiter lease and no torch, only the
network and the disk, and a worker kind would be one more process spawned at every start (the
supervisor starts one per kind) for a job a user runs now and then. So it runs on a thread of
the window's process, through the torch-free ``models.download``, and speaks the jobs' own
events (``Queued``, ``Started``, ``Progress``, ``Output``, ``Finished``/``Cancelled``/``Failed``)
on the bridge, so it is a ``Job`` like any other: the Jobs panel shows and cancels it. A download
cancelled or cut off keeps its partial files; starting it again (in the window or ``hearth
models download``) resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal, Slot

from app.job import Job
from workers.errors import ErrorKind, HearthError
from workers.protocol import (
    Cancelled,
    Failed,
    Finished,
    JobOrigin,
    Output,
    Priority,
    Progress,
    Queued,
    Started,
)

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


@dataclass(slots=True)
class _Download:
    """What only the download's own thread needs besides its ``Job``."""

    cancel: object
    thread: threading.Thread | None = None


class DownloadJobs(QObject):
    """Starts and cancels downloads. Each is a ``Job`` of the bridge's ``JobBook`` (``app/job.py``),
    like a worker's: the Models tab binds to it as the other tabs bind to theirs, and the Jobs
    panel lists it. A finished download's outputs are the locations of the models it linked."""

    _event = Signal(object)

    def __init__(self, bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._downloads: dict[str, _Download] = {}
        self._event.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        cancel_requested = getattr(bridge, "cancel_requested", None)
        if cancel_requested is not None:  # the Jobs panel's Cancel goes through the bridge
            cancel_requested.connect(self.cancel)

    def start(self, hub_id: str, include: str = "") -> Job:
        from models.download import Cancel

        task = DownloadTask(hub_id.strip(), include.strip())
        job_id = f"dl-{uuid.uuid4().hex[:10]}"
        download = self._downloads[job_id] = _Download(cancel=Cancel())
        self._deliver(
            Queued(job_id=job_id, request=task, priority=Priority.background, origin=JobOrigin.window)
        )
        job = self.bridge.jobs.get(job_id)
        job.ended.connect(lambda _job: self._downloads.pop(job_id, None))
        download.thread = threading.Thread(
            target=self._run, args=(job_id, task, download), name=f"download {hub_id}", daemon=True
        )
        download.thread.start()
        return job

    @Slot(str)
    def cancel(self, job_id: str) -> None:
        download = self._downloads.get(job_id)
        if download is not None:
            download.cancel.set()

    def wait(self, timeout: float = 10.0) -> None:
        """Cancel what still runs and wait for its thread (the window closing)."""
        downloads = list(self._downloads.values())
        for download in downloads:
            download.cancel.set()
        for download in downloads:
            if download.thread is not None:
                download.thread.join(timeout)

    # -- the download thread --------------------------------------------------------------

    def _run(self, job_id: str, task: DownloadTask, download: _Download) -> None:
        from models.download import DownloadCancelled, download_model
        from models.registry import ModelRegistry

        started = time.monotonic()
        self._event.emit(Started(job_id=job_id))
        last = [0.0, -1]

        def progress(state) -> None:
            now = time.monotonic()
            if state.percent != last[1] and (now - last[0] >= PROGRESS_INTERVAL_S or state.percent == 100):
                last[:] = [now, state.percent]
                self._event.emit(
                    Progress(job_id=job_id, step=state.percent, total=100, message=_words(state))
                )

        try:
            with ModelRegistry() as registry:
                models = download_model(
                    registry, task.hub_id, include=task.include, progress=progress, cancel=download.cancel
                )
        except DownloadCancelled:
            self._event.emit(Cancelled(job_id=job_id, at_step=last[1]))
        except HearthError as exc:
            self._event.emit(Failed(job_id=job_id, kind=exc.kind, message=str(exc)))
        except Exception as exc:  # noqa: BLE001 - the job fails with its reason; the window carries on
            log.exception("download of %s failed", task.hub_id)
            self._event.emit(
                Failed(job_id=job_id, kind=ErrorKind.internal, message=f"{type(exc).__name__}: {exc}")
            )
        else:
            for model in models:
                self._event.emit(Output(job_id=job_id, path=model.location, media_type=""))
            self._event.emit(Finished(job_id=job_id, elapsed_s=time.monotonic() - started))

    # -- the GUI thread -------------------------------------------------------------------

    @Slot(object)
    def _deliver(self, event) -> None:
        """Into the bridge's event stream: the JobBook makes it job state, as for a worker's job."""
        self.bridge.event.emit(event)


def _words(state) -> str:
    from workers.arbiter.units import format_bytes

    if state.stage != "downloading":
        return f"{state.stage} {state.file}".strip()
    return f"{format_bytes(state.done)} of {format_bytes(state.total)}"
