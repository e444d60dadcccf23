"""The Gallery's background thread: scans, reads parameters and makes thumbnails off the GUI thread.

One thread at most, started when there is work and ending as soon as there is none, so an idle
gallery holds no thread. Scans run first, then single entries (a new output), then thumbnails,
newest request first: the rows on screen asked last, so they are made before the ones scrolled
past. Results come back as Qt signals, delivered queued on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.gallery_index import GalleryEntry, entry_for, folders, scan
from app.gallery_thumbs import thumbnail
from workers.errors import BadInput

MAX_PENDING_THUMBNAILS = 400
"""Older thumbnail requests are dropped past this: their rows have scrolled away (they ask again)."""


class GalleryWorker(QObject):
    """Runs gallery work on one short-lived thread; ``shutdown`` stops it and waits for it."""

    batch = Signal(int, list)
    """(scan generation, entries): part of a scan, newest first."""
    scan_done = Signal(int)
    entry = Signal(object)
    """A ``GalleryEntry`` read on request (a new output)."""
    thumbnail_ready = Signal(str, bytes, str)
    """(entry key, PNG bytes or b"", why it could not be made)."""

    def __init__(
        self, roots=folders, thumbnails_dir: Path | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.roots = roots
        self.thumbnails_dir = thumbnails_dir
        self.made = 0
        """Thumbnails rendered (not read from the cache) since this worker was made."""
        self._lock = threading.Lock()
        self._scans: deque[int] = deque()
        self._entries: deque[Path] = deque()
        self._thumbs: deque[GalleryEntry] = deque()
        self._pending: set[str] = set()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- requests (GUI thread) --------------------------------------------------------------

    def rescan(self) -> int:
        """Start a new scan (an older one still running stops); returns its generation."""
        with self._lock:
            self._generation += 1
            self._scans.clear()
            self._scans.append(self._generation)
            self._wake()
            return self._generation

    def read_entry(self, path: Path) -> None:
        with self._lock:
            self._entries.append(Path(path))
            self._wake()

    def request_thumbnail(self, entry: GalleryEntry) -> None:
        with self._lock:
            if entry.key in self._pending:
                return
            self._pending.add(entry.key)
            self._thumbs.append(entry)
            while len(self._thumbs) > MAX_PENDING_THUMBNAILS:
                self._pending.discard(self._thumbs.popleft().key)
            self._wake()

    def forget_thumbnail(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None

    def shutdown(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._scans.clear()
            self._entries.clear()
            self._thumbs.clear()
            self._pending.clear()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _wake(self) -> None:
        """Under the lock: start the thread unless it runs (it takes everything queued)."""
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="gallery-index", daemon=True)
            self._thread.start()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    job = self._next()
                    if job is None:
                        return
                job()
        except RuntimeError:  # the window is gone, and its signals with it
            pass
        finally:  # also after a bug in a job (it is reported): the next request starts a thread
            with self._lock:
                self._thread = None

    def _next(self):
        if self._stopping:
            return None
        if self._scans:
            generation = self._scans.popleft()
            return lambda: self._scan(generation)
        if self._entries:
            path = self._entries.popleft()
            return lambda: self.entry.emit(self._entry(path))
        if self._thumbs:
            entry = self._thumbs.pop()  # newest request first: the rows on screen now
            return lambda: self._thumbnail(entry)
        return None

    def _scan(self, generation: int) -> None:
        def stale() -> bool:
            # Called between two files: a zero sleep hands the GIL to the GUI thread if it waits, so
            # a scan of thousands of files never holds the window up for more than one file.
            time.sleep(0)
            return self._stopping or self._generation != generation

        for entries in scan(self.roots(), stop=stale):
            if stale():
                return
            self.batch.emit(generation, entries)
        if not stale():
            self.scan_done.emit(generation)

    def _entry(self, path: Path) -> GalleryEntry:
        try:
            stat = path.stat()
        except OSError as exc:
            return GalleryEntry(path=path, mtime=0.0, size=0, kind="image", problem=str(exc))
        return entry_for(path, stat.st_mtime, stat.st_size)

    def _thumbnail(self, entry: GalleryEntry) -> None:
        try:
            png, made = thumbnail(entry.path, entry.kind, entry.mtime, entry.size, self.thumbnails_dir)
            problem = ""
        except BadInput as exc:
            png, made, problem = b"", False, str(exc)
        with self._lock:
            self._pending.discard(entry.key)
            self.made += int(made)
        self.thumbnail_ready.emit(entry.key, png, problem)
