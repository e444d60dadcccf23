"""The job store: versioned schema, rows other Hearth versions wrote, retention, and forgetting a
deleted conversation's prompts. A row this version cannot read never stops the window opening."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest

from workers.codec import PROTOCOL_VERSION, encode
from workers.jobstore import MIGRATIONS, JobStore, ProcessIdentity
from workers.protocol import ChatMessage, ChatRequest, ImageRequest, JobState, Priority

FIRST_RELEASE_SCHEMA = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, priority TEXT NOT NULL, request TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    error_kind TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',
    outputs TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_state ON jobs(state, created);
"""
GONE = ProcessIdentity(pid=2**22 + 7, started=1.0)  # no such process: its jobs are orphans


def chat(text: str, conversation: str = "") -> ChatRequest:
    return ChatRequest(messages=(ChatMessage(role="user", content=text),), conversation_id=conversation)


def first_release_db(path, rows: list[tuple]) -> None:
    """A hearth.db as the first release wrote it: no owner columns, no schema version."""
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.executemany(
            "INSERT INTO jobs(job_id, kind, priority, request, state, created, updated, outputs) "
            "VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )


def old_row(job_id: str, request: dict | str, state: str = "finished", created: float = 1.0) -> tuple:
    text = request if isinstance(request, str) else json.dumps(request)
    return (job_id, "image", "single_shot", text, state, created, created, "/out/cat.png\n")


def rows_from_older_versions() -> list[tuple]:
    good = json.loads(encode(ImageRequest(prompt="a readable cat")))
    return [
        old_row("good", good, created=5.0),
        old_row("field", {**good, "prompt": "a cat with a refiner", "refiner": "sdxl-refiner"}, created=4.0),
        old_row("type", {"type": "InpaintRequest", "v": PROTOCOL_VERSION, "prompt": "fix it"}, created=3.0),
        old_row("version", {**good, "prompt": "from long ago", "v": 0}, created=2.0),
        old_row("state", good, state="paused", created=1.5),
        old_row("garbage", "{not json", created=1.0),
    ]


def test_a_new_store_is_at_the_latest_schema_version(tmp_path):
    store = JobStore(tmp_path / "hearth.db")
    assert store.schema_version == len(MIGRATIONS)
    with sqlite3.connect(tmp_path / "hearth.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    store.close()
    assert JobStore(tmp_path / "hearth.db").schema_version == len(MIGRATIONS), "reopening changes nothing"


def test_a_first_release_store_is_migrated_and_its_chats_linked_to_their_conversations(tmp_path):
    path = tmp_path / "hearth.db"
    first_release_db(
        path,
        [
            ("c1", "chat", "interactive", encode(chat("hi", "conv-1")).decode(), "finished", 1.0, 1.0, ""),
            old_row("i1", json.loads(encode(ImageRequest(prompt="cat"))), created=2.0),
        ],
    )
    store = JobStore(path)
    assert store.schema_version == len(MIGRATIONS)
    assert [record.job_id for record in store.history()] == ["i1", "c1"]
    assert store.delete_conversation("conv-1") == 1, "the migration read the conversation from the request"
    assert [record.job_id for record in store.history()] == ["i1"]
    store.close()


def test_rows_an_older_version_wrote_are_listed_marked_and_history_works(tmp_path):
    path = tmp_path / "hearth.db"
    first_release_db(path, rows_from_older_versions())
    store = JobStore(path)
    records = {record.job_id: record for record in store.history()}
    assert set(records) == {"good", "field", "type", "version", "state", "garbage"}
    assert records["good"].request == ImageRequest(prompt="a readable cat") and not records["good"].unreadable
    for job_id in ("field", "type", "version", "state", "garbage"):
        assert records[job_id].request is None, job_id
        assert records[job_id].unreadable.startswith("from "), job_id
    assert "refiner" in records["field"].unreadable
    assert records["version"].unreadable.startswith("from an older version of Hearth (protocol version 0")
    assert records["field"].prompt == "a cat with a refiner" and records["field"].outputs == ("/out/cat.png",)
    assert records["state"].state is JobState.failed
    assert store.get("type").request is None
    store.close()


def test_an_unreadable_unfinished_job_is_never_restored_but_says_why(tmp_path):
    path = tmp_path / "hearth.db"
    good = json.loads(encode(ImageRequest(prompt="cat")))
    first_release_db(
        path,
        [
            old_row("old", {**good, "steps_schedule": "karras"}, state="queued", created=1.0),
            old_row("ok", good, state="queued", created=2.0),
        ],
    )
    store = JobStore(path, owner=ProcessIdentity.current())
    assert [record.job_id for record in store.claim_unfinished()] == ["ok"]
    old = store.get("old")
    assert old.state is JobState.failed and old.error_kind == "bad_input"
    assert "cannot be run again" in old.error_message and "another version of Hearth" in old.error_message
    store.close()


def test_opening_keeps_the_newest_jobs_and_every_unfinished_one(tmp_path):
    path = tmp_path / "hearth.db"
    store = JobStore(path, owner=GONE)
    for number in range(6):
        store.add(f"j{number}", ImageRequest(prompt=f"cat {number}"), Priority.single_shot)
        if number:
            store.set_state(f"j{number}", JobState.finished)
    store.close()
    store = JobStore(path, keep=3)
    assert [record.job_id for record in store.history()] == ["j5", "j4", "j3", "j0"], "j0 is still queued"
    assert store.prune(0) == 3
    assert [record.job_id for record in store.history()] == ["j0"]
    store.close()


def test_unlimited_retention_keeps_everything(tmp_path):
    store = JobStore(tmp_path / "hearth.db", keep=None)
    for number in range(3):
        store.add(f"j{number}", ImageRequest(prompt="cat"), Priority.single_shot)
        store.set_state(f"j{number}", JobState.finished)
    store.close()
    assert len(JobStore(tmp_path / "hearth.db", keep=None).history()) == 3


def test_deleting_a_conversation_forgets_its_prompts_only(tmp_path):
    store = JobStore(tmp_path / "hearth.db")
    store.add("a1", chat("secret one", "conv-a"), Priority.interactive)
    store.add("a2", chat("secret two", "conv-a"), Priority.interactive)
    store.add("b1", chat("other", "conv-b"), Priority.interactive)
    store.add("n1", chat("not stored"), Priority.interactive)
    store.add("i1", ImageRequest(prompt="cat"), Priority.single_shot)
    assert store.delete_conversation("conv-a") == 2
    assert {record.job_id for record in store.history()} == {"b1", "n1", "i1"}
    with sqlite3.connect(tmp_path / "hearth.db") as db:
        assert not db.execute("SELECT 1 FROM jobs WHERE request LIKE '%secret%'").fetchall()
    with pytest.raises(ValueError, match="conversation id"):
        store.delete_conversation("")
    store.close()


def test_the_main_window_opens_on_a_store_with_rows_from_older_versions(qtbot, tmp_path):
    from app.fake_bridge import FakeBridge
    from app.main_window import MainWindow

    path = tmp_path / "hearth.db"
    first_release_db(path, rows_from_older_versions())
    store = JobStore(path)
    bridge = FakeBridge()
    bridge.supervisor = SimpleNamespace(store=store)  # what load_history reads the history from
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    try:
        assert window.isVisible()
        rows = {row.job_id: row for row in window.jobs_panel.rows()}
        assert {"good", "field", "version", "garbage"} <= set(rows)
        assert rows["good"].description.text() == "a readable cat"
        assert rows["field"].description.text() == "a cat with a refiner (from another version of Hearth)"
        assert rows["version"].description.text() == "from long ago (from an older version of Hearth)"
        assert rows["garbage"].description.text() == "a job from another version of Hearth"
    finally:
        window.memory_state.stop(wait_s=5)
        store.close()
