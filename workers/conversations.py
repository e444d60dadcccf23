"""Chat conversations in SQLite, written as each message (and each streamed token) arrives.

Pure Python and sqlite3 (no Qt, no torch): the GUI reads and edits conversations, the chat
worker appends the assistant's answer token by token. WAL with ``synchronous=FULL`` makes every
commit durable. The connection that streams an answer's tokens (``streaming=True``) commits with
``synchronous=NORMAL``: each commit is in the WAL, in the OS's hands, before the token is shown,
so a worker killed mid-answer loses none of what it showed; the disk's own sync of them waits for
the answer's end (the next FULL commit syncs the whole WAL), rather than costing ~5 ms a commit.
"""

from __future__ import annotations

import builtins  # ``list`` names a method of ConversationStore inside the class
import json
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from workers.atomic import check_writable, write_text
from workers.errors import BadInput
from workers.migrations import migrate
from workers.paths import data_dir


def _create_conversations(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS conversations ("
        " id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
        " role TEXT NOT NULL, content TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'done',"
        " job_id TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', created REAL NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id)")


MIGRATIONS = (_create_conversations,)
"""Oldest first, as in the job store: append a migration, never edit one that shipped."""

ROLES = ("system", "user", "assistant")
TITLE_WORDS = 8


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message; ``state`` is "done", "streaming" (being written) or "stopped" (cancelled or cut off)."""

    id: int
    conversation_id: str
    role: str
    content: str
    state: str
    job_id: str
    model: str
    created: float


def default_path() -> Path:
    return data_dir() / "conversations.db"


def title_from(text: str) -> str:
    """A conversation title from the first words of its first message."""
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    return (title + " ...") if len(words) > TITLE_WORDS else (title or "New chat")


class ConversationStore:
    """Conversations and their messages. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path | str | None = None, *, streaming: bool = False) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if streaming else 'FULL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.schema_version = migrate(self._db, MIGRATIONS, f"conversation store {self.path}")

    def close(self) -> None:
        self._db.close()

    # -- conversations --------------------------------------------------------------------

    def create(self, title: str = "New chat") -> Conversation:
        now = time.time()
        conv = Conversation(id=uuid.uuid4().hex, title=title.strip() or "New chat", created=now, updated=now)
        self._db.execute(
            "INSERT INTO conversations VALUES (?, ?, ?, ?)", (conv.id, conv.title, conv.created, conv.updated)
        )
        return conv

    def get(self, conversation_id: str) -> Conversation:
        row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise BadInput(f"conversation {conversation_id!r} does not exist (it may have been deleted)")
        return Conversation(**dict(row))

    def list(self) -> list[Conversation]:
        """Most recently active first."""
        rows = self._db.execute("SELECT * FROM conversations ORDER BY updated DESC, created DESC").fetchall()
        return [Conversation(**dict(row)) for row in rows]

    def rename(self, conversation_id: str, title: str) -> None:
        if not title.strip():
            raise BadInput("a conversation title cannot be empty")
        self.get(conversation_id)
        self._db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip(), conversation_id))

    def delete(self, conversation_id: str) -> None:
        self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def search(self, text: str) -> builtins.list[Conversation]:
        """Conversations whose title or any message contains ``text`` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._db.execute(
            "SELECT * FROM conversations c WHERE c.title LIKE ?1 ESCAPE '\\' OR EXISTS ("
            " SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content LIKE ?1 ESCAPE '\\')"
            " ORDER BY updated DESC",
            (pattern,),
        ).fetchall()
        return [Conversation(**dict(row)) for row in rows]

    # -- messages -------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        state: str = "done",
        job_id: str = "",
        model: str = "",
    ) -> int:
        if role not in ROLES:
            raise BadInput(f"unknown chat role {role!r}")
        self.get(conversation_id)
        now = time.time()
        self._db.execute("BEGIN")  # the message and its conversation's date: one commit, one sync
        try:
            cursor = self._db.execute(
                "INSERT INTO messages (conversation_id, role, content, state, job_id, model, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, state, job_id, model, now),
            )
            self._touch(conversation_id, now)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        row_id = cursor.lastrowid
        assert row_id is not None  # an INSERT always sets it
        return row_id

    def append_to_message(self, message_id: int, text: str) -> None:
        """Stream text into a message; each call is one commit (see the module's note on syncs)."""
        self._db.execute("UPDATE messages SET content = content || ? WHERE id = ?", (text, message_id))

    def set_message_state(self, message_id: int, state: str) -> None:
        self._db.execute("UPDATE messages SET state = ? WHERE id = ?", (state, message_id))

    def message(self, message_id: int) -> StoredMessage:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise BadInput(f"message {message_id} does not exist")
        return StoredMessage(**dict(row))

    def messages(self, conversation_id: str) -> builtins.list[StoredMessage]:
        rows = self._db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [StoredMessage(**dict(row)) for row in rows]

    def message_for_job(self, job_id: str) -> StoredMessage | None:
        row = self._db.execute(
            "SELECT * FROM messages WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)
        ).fetchone()
        return StoredMessage(**dict(row)) if row else None

    def delete_messages_from(self, message_id: int) -> None:
        """Delete a message and everything after it in its conversation (regenerate, edit-and-resend)."""
        target = self.message(message_id)
        self._db.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (target.conversation_id, message_id)
        )

    def _touch(self, conversation_id: str, when: float) -> None:
        self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (when, conversation_id))

    # -- export ---------------------------------------------------------------------------

    def export_markdown(self, conversation_id: str, path: Path | str) -> Path:
        conv = self.get(conversation_id)
        parts = [f"# {conv.title}\n"]
        for msg in self.messages(conversation_id):
            note = " (stopped)" if msg.state == "stopped" else ""
            parts.append(f"## {msg.role.capitalize()}{note}\n\n{msg.content}\n")
        target = check_writable(Path(path))
        write_text(target, "\n".join(parts))
        return target

    def export_json(self, conversation_id: str, path: Path | str) -> Path:
        conv = self.get(conversation_id)
        data = {
            **asdict(conv),
            "messages": [
                {k: v for k, v in asdict(m).items() if k != "conversation_id"}
                for m in self.messages(conversation_id)
            ],
        }
        target = check_writable(Path(path))
        write_text(target, json.dumps(data, indent=2, ensure_ascii=False))
        return target
