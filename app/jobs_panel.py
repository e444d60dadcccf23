"""The Jobs panel: one row per job with its state, progress, preview, elapsed time and a Cancel button."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.job import Job
from app.jobs_state import JobsState
from app.style import coloured, error_text, pixmap_from_png, show_pixmap
from workers.protocol import JobOrigin, JobState

THUMB = 40
DOCK_WIDTH = 380


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


class JobRow(QFrame):
    """One job: thumbnail | kind + state, description, progress or error | elapsed, Cancel."""

    def __init__(self, entry: Job, state: JobsState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job_id = entry.job_id
        self._thumbnail_source = ""
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMB, THUMB)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet("background: #e5e7eb;")
        self.title = QLabel()
        self.description = QLabel()
        self.description.setTextFormat(Qt.TextFormat.PlainText)
        self.description.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setMaximumHeight(16)
        self.progress.setTextVisible(False)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b91c1c;")
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.elapsed = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop this job (a running job stops at its next step)")
        self.cancel_button.clicked.connect(lambda: state.cancel(self.job_id))
        self._lay_out()
        self.update_from(entry)

    def _lay_out(self) -> None:
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.cancel_button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.elapsed)
        footer = QHBoxLayout()
        footer.addWidget(self.progress, 1)
        footer.addWidget(self.cancel_button)
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        grid.addWidget(self.thumbnail, 0, 0, 3, 1, Qt.AlignmentFlag.AlignTop)
        grid.addLayout(header, 0, 1)
        grid.addWidget(self.description, 1, 1)
        grid.addLayout(footer, 2, 1)
        grid.addWidget(self.error, 3, 0, 1, 2)
        grid.setColumnStretch(1, 1)

    def update_from(self, entry: Job, now: float | None = None) -> None:
        state = entry.state.value
        steps = (
            f" · step {entry.step}/{entry.total}" if entry.state is JobState.running and entry.total else ""
        )
        origin = " · from the API" if entry.origin is JobOrigin.api else ""
        self.title.setText(f"<b>{entry.kind}</b>{origin} · {coloured(state, state)}{steps}")
        self.description.setText(entry.description)
        self.description.setToolTip(self._tooltip(entry))
        self.progress.setVisible(entry.state in (JobState.queued, JobState.running))
        self.progress.setRange(0, entry.total or 0)  # (0, 0): busy indicator while queued
        self.progress.setValue(entry.step)
        failed = entry.state is JobState.failed
        self.error.setVisible(failed)
        if failed:
            self.error.setText(error_text(entry.error_kind, entry.error_message))
            self.error.setToolTip(entry.traceback or entry.error_message)
        self.cancel_button.setVisible(entry.cancellable)
        self.elapsed.setText(format_elapsed(entry.elapsed(now)))
        self._show_thumbnail(entry)

    def _show_thumbnail(self, entry: Job) -> None:
        if entry.image_path:
            if entry.image_path != self._thumbnail_source:  # load a result image once, not per event
                self._thumbnail_source = entry.image_path
                pixmap = QPixmap(entry.image_path)
                if not pixmap.isNull():
                    show_pixmap(self.thumbnail, pixmap, THUMB, THUMB)
            return
        pixmap = pixmap_from_png(entry.preview_png)
        if pixmap is not None:
            show_pixmap(self.thumbnail, pixmap, THUMB, THUMB)

    @staticmethod
    def _tooltip(entry: Job) -> str:
        lines = [entry.description, f"job {entry.job_id}"]
        lines += [f"output: {path}" for path in entry.outputs]
        return "\n".join(lines)


class JobsPanel(QWidget):
    """Binds to a ``JobsState``: rebuilds rows when jobs come and go, updates one row per event."""

    def __init__(self, state: JobsState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._rows: dict[str, JobRow] = {}
        self._list = QVBoxLayout()
        self._list.setContentsMargins(4, 4, 4, 4)
        self._list.setSpacing(4)
        self._empty = QLabel("No jobs yet. Generated images, answers, videos and music appear here.")
        self._empty.setWordWrap(True)
        self._empty.setStyleSheet("color: #6b7280;")
        self._build()
        state.jobs_changed.connect(self.rebuild)
        state.job_changed.connect(self.refresh_job)
        self._clock = QTimer(self)  # running jobs show a live elapsed time
        self._clock.timeout.connect(self._tick)
        self._clock.start(1000)
        self.rebuild()

    def _build(self) -> None:
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self._empty)
        column.addLayout(self._list)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(holder)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        clear = QPushButton("Clear finished")
        clear.setToolTip("Remove finished, cancelled and failed jobs from this list (history stays saved)")
        clear.clicked.connect(self.state.clear_ended)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(clear)
        buttons.setContentsMargins(4, 0, 4, 4)
        layout.addLayout(buttons)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override: the dock's first width
        return QSize(DOCK_WIDTH, 360)

    def row(self, job_id: str) -> JobRow | None:
        return self._rows.get(job_id)

    def rows(self) -> list[JobRow]:
        """In display order, newest first."""
        return [self._list.itemAt(i).widget() for i in range(self._list.count())]

    def rebuild(self) -> None:
        entries = self.state.jobs()
        wanted = {e.job_id for e in entries}
        for job_id in [j for j in self._rows if j not in wanted]:
            row = self._rows.pop(job_id)
            self._list.removeWidget(row)
            row.deleteLater()
        for index, entry in enumerate(entries):
            row = self._rows.get(entry.job_id)
            if row is None:
                row = self._rows[entry.job_id] = JobRow(entry, self.state)
            else:
                row.update_from(entry)
            if self._list.indexOf(row) != index:
                self._list.removeWidget(row)
                self._list.insertWidget(index, row)
                row.show()  # now, not on the layout's next queued show
        self._empty.setVisible(not entries)

    def refresh_job(self, job_id: str) -> None:
        entry, row = self.state.job(job_id), self._rows.get(job_id)
        if entry is not None and row is not None:
            row.update_from(entry)

    def shutdown(self) -> None:
        """The window closes: running jobs' elapsed times stop ticking."""
        self._clock.stop()

    def _tick(self) -> None:
        now = time.monotonic()
        for job_id, row in self._rows.items():
            entry = self.state.job(job_id)
            if entry is not None and entry.state is JobState.running:
                row.elapsed.setText(format_elapsed(entry.elapsed(now)))
