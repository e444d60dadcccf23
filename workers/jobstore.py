"""SQLite record of every job: the queue that survives a restart, and the history the Jobs panel shows."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workers.codec import decode, encode
from workers.protocol import JobRequest, JobState, Priority

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    priority TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    error_kind TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    outputs TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
"""


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    kind: str
    priority: Priority
    request: JobRequest
    state: JobState
    created: float
    error_kind: str
    error_message: str
    outputs: tuple[str, ...]


class JobStore:
    """Thread-safe; every write is committed at once (a crash loses nothing already reported)."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def add(self, job_id: str, request: JobRequest, priority: Priority) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs(job_id, kind, priority, request, state, created, updated) VALUES (?,?,?,?,?,?,?)",
                (
                    job_id,
                    request.kind.value,
                    priority.value,
                    encode(request).decode(),
                    JobState.queued.value,
                    now,
                    now,
                ),
            )

    def set_state(self, job_id: str, state: JobState, error_kind: str = "", error_message: str = "") -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, updated=?, error_kind=?, error_message=? WHERE job_id=?",
                (state.value, time.time(), error_kind, error_message, job_id),
            )

    def add_output(self, job_id: str, path: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET outputs = outputs || ? || char(10), updated=? WHERE job_id=?",
                (path, time.time(), job_id),
            )

    def unfinished(self) -> list[JobRecord]:
        """Jobs queued or running when the app last stopped, oldest first: they are run again."""
        return self._select(
            "WHERE state IN (?, ?) ORDER BY created", (JobState.queued.value, JobState.running.value)
        )

    def history(self, limit: int = 200) -> list[JobRecord]:
        return self._select("ORDER BY created DESC LIMIT ?", (limit,))

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._select("WHERE job_id=?", (job_id,))
        return rows[0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str, args: tuple) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, kind, priority, request, state, created, error_kind, error_message, outputs "
                f"FROM jobs {where}",
                args,
            ).fetchall()
        return [
            JobRecord(
                job_id=r[0],
                kind=r[1],
                priority=Priority(r[2]),
                request=decode(r[3]),
                state=JobState(r[4]),
                created=r[5],
                error_kind=r[6],
                error_message=r[7],
                outputs=tuple(p for p in r[8].split("\n") if p),
            )
            for r in rows
        ]
