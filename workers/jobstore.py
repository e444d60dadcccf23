"""SQLite record of every job: the queue that survives a restart, and the history the Jobs panel shows.

Several Hearth processes share one store (two windows, a window and ``hearth run``): each job
row names the process that owns it, and a starting window claims only the unfinished jobs whose
owner is gone, never one another process is running. Jobs queued by a session that does not
restore (``hearth run``) are not left for others to run again.

The schema is versioned (``PRAGMA user_version``, ``MIGRATIONS``). A row another Hearth version
wrote that this one cannot decode never stops the store from opening: the history lists it,
marked, and it is never run again. Opening the store keeps the newest ``KEEP_JOBS`` jobs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from workers.codec import MalformedMessage, VersionMismatch, decode, encode
from workers.errors import ErrorKind
from workers.migrations import columns, migrate
from workers.protocol import JobRequest, JobState, Priority

log = logging.getLogger(__name__)

KEEP_JOBS = 1000
"""Retention: opening the store deletes ended jobs beyond the newest this many (their output
files stay). Unfinished jobs are never pruned."""
ENDED = (JobState.finished.value, JobState.cancelled.value, JobState.failed.value)


def _create_jobs(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs ("
        " job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, priority TEXT NOT NULL, request TEXT NOT NULL,"
        " state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,"
        " error_kind TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',"
        " outputs TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created)")


OWNER_COLUMNS = {
    "owner_pid": "INTEGER NOT NULL DEFAULT 0",
    "owner_started": "REAL NOT NULL DEFAULT 0",
    "restorable": "INTEGER NOT NULL DEFAULT 1",
}
"""Added after the first release (0 = no owner). Stores from before schema versions may have them."""


def _add_owner_columns(db: sqlite3.Connection) -> None:
    present = columns(db, "jobs")
    for name, declaration in OWNER_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")


def _add_conversation_column(db: sqlite3.Connection) -> None:
    """Chat jobs name their conversation, so deleting it deletes its prompts here too."""
    if "conversation_id" not in columns(db, "jobs"):
        db.execute("ALTER TABLE jobs ADD COLUMN conversation_id TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT job_id, request FROM jobs WHERE kind = 'chat'").fetchall()
    for job_id, request in rows:
        conversation = _raw_field(request, "conversation_id")
        if isinstance(conversation, str) and conversation:
            db.execute("UPDATE jobs SET conversation_id = ? WHERE job_id = ?", (conversation, job_id))
    db.execute("CREATE INDEX IF NOT EXISTS jobs_conversation ON jobs(conversation_id)")


MIGRATIONS = (_create_jobs, _add_owner_columns, _add_conversation_column)
"""Oldest first; never edit one that shipped, append a new one (the schema version is their count)."""


def _raw_field(request: str, name: str) -> object:
    """One field of a stored request read as plain JSON (it may not decode as a message)."""
    try:
        payload = json.loads(request)
    except ValueError:
        return None
    return payload.get(name) if isinstance(payload, dict) else None


def _raw_prompt(request: str) -> str:
    """What the person asked for: the prompt, or a chat's last user message ("" if neither)."""
    prompt = _raw_field(request, "prompt")
    if isinstance(prompt, str):
        return prompt
    messages = _raw_field(request, "messages")
    messages = messages if isinstance(messages, list) else []
    said = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return next((text for text in reversed(said) if isinstance(text, str)), "")


def _unreadable_reason(exc: MalformedMessage) -> str:
    if isinstance(exc, VersionMismatch):
        theirs = exc.theirs if isinstance(exc.theirs, int) else 0
        age = "an older" if theirs < exc.ours else "a newer"
        return f"from {age} version of Hearth (protocol version {exc.theirs!r}, this one speaks {exc.ours})"
    return f"from another version of Hearth ({exc})"


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
    """One stored job. ``request`` is None for a row this version cannot read (``unreadable``
    says why, e.g. "from an older version of Hearth ..."); such a job is listed, never run."""

    job_id: str
    kind: str
    priority: Priority
    request: JobRequest | None
    state: JobState
    created: float
    error_kind: str
    error_message: str
    outputs: tuple[str, ...]
    unreadable: str = ""
    prompt: str = ""
    """The request's prompt as stored, read even when the request itself is unreadable."""


class JobStore:
    """Thread-safe; every write is committed at once (a crash loses nothing already reported)."""

    def __init__(
        self, path: Path | str, owner: ProcessIdentity | None = None, keep: int | None = KEEP_JOBS
    ) -> None:
        """Open (creating or migrating) the store; ``keep``: prune to that many jobs, None keeps all."""
        self._lock = threading.Lock()
        self.owner = owner or ProcessIdentity.current()
        self.path = Path(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: in WAL mode a commit survives a crash or kill of any Hearth process (what the
        # queue's restore is for); only an OS crash or power cut may drop the newest rows, never
        # corrupt the file. FULL would put a disk sync (~5 ms) on the way of every submit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.schema_version = migrate(self._db, MIGRATIONS, f"job store {self.path}")
        if keep is not None:
            self.prune(keep)

    def add(self, job_id: str, request: JobRequest, priority: Priority, restorable: bool = True) -> None:
        """A new queued job, owned by this process; ``restorable``: run again after a crash."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs(job_id, kind, priority, request, state, created, updated, owner_pid, "
                "owner_started, restorable, conversation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
                    getattr(request, "conversation_id", ""),
                ),
            )

    def prune(self, keep: int) -> int:
        """Delete ended jobs older than the newest ``keep`` jobs; returns how many went."""
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        with self._lock:
            cursor = self._db.execute(
                f"DELETE FROM jobs WHERE state IN ({','.join('?' * len(ENDED))}) AND job_id NOT IN "
                "(SELECT job_id FROM jobs ORDER BY created DESC LIMIT ?)",
                (*ENDED, keep),
            )
        if cursor.rowcount:
            log.info("job store: pruned %d old job(s), keeping the newest %d", cursor.rowcount, keep)
        return cursor.rowcount

    def delete_conversation(self, conversation_id: str) -> int:
        """Forget every chat job of a deleted conversation (their prompts); returns how many."""
        if not conversation_id:
            raise ValueError("a conversation id is needed (an empty one names no conversation)")
        with self._lock:
            cursor = self._db.execute("DELETE FROM jobs WHERE conversation_id = ?", (conversation_id,))
        return cursor.rowcount

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
        claimed = [records[job_id] for job_id in orphans if job_id in records]
        for record in claimed:
            if record.request is None:
                log.warning("job %s cannot be restored: %s", record.job_id, record.unreadable)
                self.set_state(
                    record.job_id,
                    JobState.failed,
                    ErrorKind.bad_input.value,
                    f"this job was queued {record.unreadable} and cannot be run again",
                )
        return [record for record in claimed if record.request is not None]

    def _select_ids(self, job_ids: list[str]) -> list[JobRecord]:
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        return self._select(f"WHERE job_id IN ({marks})", tuple(job_ids))

    def history(self, limit: int = 200) -> list[JobRecord]:
        """The newest ``limit`` jobs, newest first; rows this version cannot read are marked."""
        records = self._select("ORDER BY created DESC LIMIT ?", (limit,))
        unreadable = [record for record in records if record.request is None]
        if unreadable:
            log.warning(
                "job store: %d job(s) written by another Hearth version are listed without their "
                "request, e.g. %s: %s",
                len(unreadable),
                unreadable[0].job_id,
                unreadable[0].unreadable,
            )
        return records

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
        return [_record(row) for row in rows]


def _record(row: tuple) -> JobRecord:
    job_id, kind, priority, request, state, created, error_kind, error_message, outputs = row
    unreadable, decoded = "", None
    try:
        decoded = decode(request, expected=JobRequest)
    except MalformedMessage as exc:
        unreadable = _unreadable_reason(exc)
    prompt = _raw_prompt(request)
    try:
        priority = Priority(priority)
    except ValueError:
        unreadable = unreadable or f"from another version of Hearth (priority {priority!r})"
        priority = Priority.background
    try:
        state = JobState(state)
    except ValueError:
        unreadable = unreadable or f"from another version of Hearth (state {state!r})"
        state = JobState.failed
    return JobRecord(
        job_id=job_id,
        kind=kind,
        priority=priority,
        request=None if unreadable else decoded,
        state=state,
        created=created,
        error_kind=error_kind,
        error_message=error_message,
        outputs=tuple(p for p in (outputs or "").split("\n") if p),
        unreadable=unreadable,
        prompt=prompt,
    )
