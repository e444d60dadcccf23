"""SQLite record of every job: the queue that survives a restart, and the history the Jobs panel shows.

Several Hearth processes share one store (two windows, a window and ``hearth run``): each job
row names the process that owns it, and a starting window claims only the unfinished jobs whose
owner is gone, never one another process is running. Jobs queued by a session that does not
restore (``hearth run``) are not left for others to run again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

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
OWNER_COLUMNS = {
    "owner_pid": "INTEGER NOT NULL DEFAULT 0",
    "owner_started": "REAL NOT NULL DEFAULT 0",
    "restorable": "INTEGER NOT NULL DEFAULT 1",
}
"""Added after the first release: a store written by it gains them on open (0 = no owner)."""


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process, told apart from a later one that reuses its pid by when it started."""

    pid: int
    started: float

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(os.getpid(), psutil.Process().create_time())

    def alive(self) -> bool:
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except (psutil.Error, ValueError):
            return False


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

    def __init__(self, path: Path | str, owner: ProcessIdentity | None = None) -> None:
        self._lock = threading.Lock()
        self.owner = owner or ProcessIdentity.current()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in OWNER_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def add(self, job_id: str, request: JobRequest, priority: Priority, restorable: bool = True) -> None:
        """A new queued job, owned by this process; ``restorable``: run again after a crash."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs(job_id, kind, priority, request, state, created, updated, owner_pid, "
                "owner_started, restorable) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    request.kind.value,
                    priority.value,
                    encode(request).decode(),
                    JobState.queued.value,
                    now,
                    now,
                    self.owner.pid,
                    self.owner.started,
                    int(restorable),
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

    def claim_unfinished(self) -> list[JobRecord]:
        """Jobs left queued or running by a Hearth process that is gone, oldest first, now ours.

        In one write transaction, so two windows starting at once never both claim a job.
        """
        unfinished = (JobState.queued.value, JobState.running.value)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT job_id, owner_pid, owner_started FROM jobs "
                    "WHERE state IN (?, ?) AND restorable = 1 ORDER BY created",
                    unfinished,
                ).fetchall()
                orphans = [
                    job_id
                    for job_id, pid, started in rows
                    if ProcessIdentity(pid, started) == self.owner
                    or not ProcessIdentity(pid, started).alive()
                ]
                self._db.executemany(
                    "UPDATE jobs SET owner_pid=?, owner_started=? WHERE job_id=?",
                    [(self.owner.pid, self.owner.started, job_id) for job_id in orphans],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        records = {record.job_id: record for record in self._select_ids(orphans)}
        return [records[job_id] for job_id in orphans if job_id in records]

    def _select_ids(self, job_ids: list[str]) -> list[JobRecord]:
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        return self._select(f"WHERE job_id IN ({marks})", tuple(job_ids))

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
