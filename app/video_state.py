"""View-state of the Video tab: the running job (progress, ETA, previews) and the result. Widgets
bind to the ``*_changed`` signals; nothing here draws. The render's settings are the form's, read
into a ``VideoRequest`` by the tab when it generates (``request_from_form``), as in every tab."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.job import Job, bind_job
from models.catalog import ModelKind, entries
from workers.errors import HearthError
from workers.protocol import JobState, VideoRequest


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class VideoState(QObject):
    """Everything the Video tab shows, and the actions its buttons trigger."""

    busy_changed = Signal(bool)
    progress_changed = Signal(int, int, str)
    """(step, total, "ETA ..." or "")."""
    preview_changed = Signal(bytes)
    status_changed = Signal(str)
    result_changed = Signal(str)

    def __init__(self, bridge, clock=time.monotonic) -> None:
        super().__init__()
        self.bridge = bridge
        self.clock = clock
        self.request: VideoRequest | None = None
        """What the last render was asked for."""
        self.job: Job | None = None
        self.result = ""
        self.status = ""
        self._started_at = 0.0
        self._first_step: tuple[int, float] | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def models(self) -> list[tuple[str, str]]:
        """(id, title) of the catalog's video models; any hub id, folder or file can be typed too."""
        return [(e.id, e.title) for e in entries(ModelKind.video)]

    # -- actions --------------------------------------------------------------------------

    def generate(self, request: VideoRequest) -> bool:
        """Submit a render; a bad setting is shown as the status and nothing is submitted."""
        if self.busy:
            return False
        try:
            self.job = self.bridge.jobs.start(request)
        except HearthError as exc:
            self._set_status(str(exc))
            return False
        bind_job(
            self.job,
            status=self._set_status,
            progressed=self._on_step,
            preview=self.preview_changed.emit,
            output=lambda path, _: self._on_result(path),
            ended=self._on_end,
        )
        self.request = request
        self._started_at, self._first_step = self.clock(), None
        self._set_status("queued")
        self.progress_changed.emit(0, request.steps, "")
        self.busy_changed.emit(True)
        return True

    def stop(self) -> None:
        if self.job is not None:
            self.bridge.jobs.cancel(self.job)
            self._set_status("stopping at the next step")

    def export_as(self, path: str) -> Path:
        """Re-export the result (frames and parameters) to ``path``; its suffix picks the format."""
        from workers.video.export import export_video, read_frames, read_metadata

        if not self.result:
            raise HearthError("there is no video to export yet")
        frames, fps = read_frames(Path(self.result))
        params = read_metadata(Path(self.result)) or {"prompt": self.request.prompt if self.request else ""}
        written = export_video(frames, Path(path), round(fps), dict(params, exported_from=self.result))
        self._set_status(f"exported {written.name}")
        return written

    # -- events ---------------------------------------------------------------------------

    def _on_result(self, path: str) -> None:
        self.result = path
        self.result_changed.emit(path)

    def _on_end(self, job: Job) -> None:
        match job.state:
            case JobState.finished:
                self._end(f"done in {job.elapsed_s or 0:.1f} s")
            case JobState.cancelled:
                self._end(f"cancelled at step {job.cancelled_at_step}")
            case JobState.failed:
                self._end(f"failed: {job.error_message}")

    def _on_step(self, step: int, total: int, message: str) -> None:
        now = self.clock()
        if self._first_step is None:
            self._first_step = (step, now)
        done_since, since = step - self._first_step[0], now - self._first_step[1]
        eta = ""
        if done_since > 0:
            eta = f"ETA {format_eta(since / done_since * (total - step))}"
        self.progress_changed.emit(step, total, eta)
        if not message:
            self._set_status(f"step {step}/{total}")

    def _end(self, status: str) -> None:
        self.job = None
        self._set_status(status)
        self.busy_changed.emit(False)

    def _set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)
