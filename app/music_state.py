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

from app.waveform import GenerationWindow, generation_windows
from models.catalog import ModelKind, entries, entry
from workers.errors import BadInput
from workers.protocol import Cancelled, Failed, Finished, JobStatus, MusicRequest, Output, Progress, Started


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
        self.job_id = ""
        self.status = ""
        self.song: Song | None = None
        bridge.event.connect(self.on_event)

    @property
    def busy(self) -> bool:
        return bool(self.job_id)

    def generate(self, request: MusicRequest) -> bool:
        """Submit; a bad request is shown, not raised, and nothing is submitted."""
        if self.busy:
            return False
        try:
            self.job_id = self.bridge.submit(request)
        except BadInput as exc:
            self._set_status(f"Cannot generate: {exc}")
            return False
        self._set_status("Queued" + (" (demo model: its output is noise)" if is_demo(request.model) else ""))
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> None:
        if self.job_id:
            self.bridge.cancel(self.job_id)
            self._set_status("Stopping after the current token...")

    def save_as(self, target: str) -> Path:
        """Copy the result into another file and format (WAV, FLAC, OGG), keeping its tags."""
        from workers.music.export import convert

        if self.song is None:
            raise BadInput("nothing to save yet: generate some music first")
        return convert(self.song.path, Path(target))

    def on_event(self, event) -> None:
        if getattr(event, "job_id", None) != self.job_id or not self.job_id:
            return
        match event:
            case Started():
                self._set_status("Generating...")
            case Progress(step=step, total=total, message=message):
                self.progress_changed.emit(step, total)
                if message:
                    self._set_status(message)
            case JobStatus(message=message):
                self._set_status(message)
            case Output(path=path):
                self._load(Path(path))
            case Finished(elapsed_s=elapsed):
                self._end(f"Done in {elapsed:.1f} s" + self._length_note())
            case Cancelled():
                kept = f": kept {self.song.seconds:.1f} s of finished windows" if self.song else ""
                self._end("Stopped" + kept)
            case Failed(message=message):
                self._end(f"Failed: {message}")

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
        self.job_id = ""
        self._set_status(status)
        self.busy_changed.emit(False)

    def _set_status(self, status: str) -> None:
        self.status = status
        self.status_changed.emit(status)
