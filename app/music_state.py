"""View-state of the Music tab: the request being edited, the running job, the finished song.

Widgets bind to the ``*_changed`` signals and call the methods; nothing here draws. Events from
the bridge are filtered on this tab's own job id. The result is read back from the file the
worker wrote (soundfile + numpy, no torch) for the waveform view and save-as.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.job import Job, bind_job
from app.waveform import GenerationWindow, generation_windows
from models.catalog import ModelKind, entries, entry
from workers.errors import BadInput
from workers.protocol import JobState, MusicRequest


@dataclass
class Song:
    """A finished (or partly finished) piece, as read back from its file."""

    path: Path
    audio: np.ndarray
    """(channels, samples) float32."""
    sample_rate: int
    partial: bool = False
    windows: list[GenerationWindow] = field(default_factory=list)
    """The generation windows it was made of, from the file's parameters (empty when unknown)."""

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


def music_models() -> list[tuple[str, str]]:
    """(id, title) for the model picker; hub ids and folders are typed in freely."""
    return [(item.id, item.title) for item in entries(ModelKind.music)]


def is_demo(model: str) -> bool:
    item = entry(model)
    return bool(item and item.demo)


class MusicState(QObject):
    """Everything the Music tab shows, and the actions its buttons trigger."""

    busy_changed = Signal(bool)
    progress_changed = Signal(int, int)
    status_changed = Signal(str)
    song_changed = Signal()

    def __init__(self, bridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.job: Job | None = None
        self.status = ""
        self.song: Song | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def generate(self, request: MusicRequest) -> bool:
        """Submit; a bad request is shown, not raised, and nothing is submitted."""
        if self.busy:
            return False
        try:
            self.job = self.bridge.jobs.start(request)
        except BadInput as exc:
            self._set_status(f"Cannot generate: {exc}")
            return False
        bind_job(
            self.job,
            started=lambda: self._set_status("Generating..."),
            status=self._set_status,
            progressed=lambda step, total, _: self.progress_changed.emit(step, total),
            output=lambda path, _: self._load(Path(path)),
            ended=self._on_end,
        )
        self._set_status("Queued" + (" (demo model: its output is noise)" if is_demo(request.model) else ""))
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.bridge.jobs.cancel(self.job)
            self._set_status("Stopping after the current token...")

    def save_as(self, target: str) -> Path:
        """Copy the result into another file and format (WAV, FLAC, OGG), keeping its tags."""
        from workers.music.export import convert

        if self.song is None:
            raise BadInput("nothing to save yet: generate some music first")
        return convert(self.song.path, Path(target))

    def _on_end(self, job: Job) -> None:
        match job.state:
            case JobState.finished:
                self._end(f"Done in {job.elapsed_s or 0:.1f} s" + self._length_note())
            case JobState.cancelled:
                kept = f": kept {self.song.seconds:.1f} s of finished windows" if self.song else ""
                self._end("Stopped" + kept)
            case JobState.failed:
                self._end(f"Failed: {job.error_message}")

    def _load(self, path: Path) -> None:
        from workers.music.export import read_audio, read_parameters

        audio, rate = read_audio(path)
        params = read_parameters(path)
        self.song = Song(
            path=path,
            audio=audio,
            sample_rate=rate,
            partial=bool(params.get("partial")),
            windows=generation_windows(params),
        )
        self.song_changed.emit()

    def _length_note(self) -> str:
        return f" - {self.song.seconds:.2f} s written to {self.song.path.name}" if self.song else ""

    def _end(self, status: str) -> None:
        self.job = None
        self._set_status(status)
        self.busy_changed.emit(False)

    def _set_status(self, status: str) -> None:
        self.status = status
        self.status_changed.emit(status)
