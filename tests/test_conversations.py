"""Conversations are stored as they are written, survive a killed writer, and export cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from workers.conversations import ConversationStore, default_path, title_from
from workers.errors import BadInput


@pytest.fixture
def store(tmp_path):
    conversations = ConversationStore(tmp_path / "conversations.db")
    yield conversations
    conversations.close()


def test_default_location_is_the_data_dir(hearth_dirs):
    assert default_path() == hearth_dirs / "data" / "conversations.db"
    ConversationStore().close()
    assert default_path().is_file()


def test_create_list_rename_delete(store):
    first = store.create("First")
    second = store.create("Second")
    store.add_message(first.id, "user", "hello")  # activity moves a conversation to the top
    assert [c.title for c in store.list()] == ["First", "Second"]
    store.rename(second.id, "Renamed")
    assert store.get(second.id).title == "Renamed"
    store.delete(first.id)
    assert [c.id for c in store.list()] == [second.id]
    assert store.messages(first.id) == []
    with pytest.raises(BadInput, match="does not exist"):
        store.get(first.id)
    with pytest.raises(BadInput, match="cannot be empty"):
        store.rename(second.id, "  ")


def test_search_finds_titles_and_message_text(store):
    trip = store.create("Trip planning")
    code = store.create("Python help")
    store.add_message(code.id, "assistant", "Use a 100% pure_function here")
    assert [c.id for c in store.search("trip")] == [trip.id]
    assert [c.id for c in store.search("PURE_FUNCTION")] == [code.id]
    assert [c.id for c in store.search("100%")] == [code.id]
    assert [c.id for c in store.search("_")] == [code.id]  # LIKE wildcards are taken literally
    assert store.search("nothing like this") == []


def test_streaming_appends_and_editing(store):
    conv = store.create()
    user = store.add_message(conv.id, "user", "hi")
    answer = store.add_message(conv.id, "assistant", "", state="streaming", job_id="job-9", model="m")
    for piece in ("Hel", "lo", "!"):
        store.append_to_message(answer, piece)
    store.set_message_state(answer, "done")
    assert store.message_for_job("job-9").content == "Hello!"
    assert store.message(answer).state == "done"
    store.delete_messages_from(user)
    assert store.messages(conv.id) == []
    with pytest.raises(BadInput, match="unknown chat role"):
        store.add_message(conv.id, "robot", "beep")
    with pytest.raises(BadInput, match="does not exist"):
        store.add_message("missing", "user", "hi")


def test_title_from_first_words():
    assert (
        title_from("What is the capital of France and why is it there?")
        == "What is the capital of France and why ..."
    )
    assert title_from("   ") == "New chat"


def test_exports_are_complete(store, tmp_path):
    conv = store.create("Code")
    store.add_message(conv.id, "user", "print hello")
    answer = store.add_message(conv.id, "assistant", "```python\nprint('hello')\n```")
    store.set_message_state(answer, "stopped")
    md = store.export_markdown(conv.id, tmp_path / "code.md").read_text()
    assert md.startswith("# Code") and "## User\n\nprint hello" in md and "## Assistant (stopped)" in md
    data = json.loads(store.export_json(conv.id, tmp_path / "code.json").read_text())
    assert data["title"] == "Code"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["content"].startswith("```python")
    with pytest.raises(BadInput, match="does not exist"):
        store.export_json(conv.id, tmp_path / "missing-folder" / "x.json")
    assert not list(tmp_path.glob(".code*"))  # no temp files left behind


WRITER = """
import sys, time
from workers.conversations import ConversationStore
store = ConversationStore(sys.argv[1])
conv = store.create("crash test")
store.add_message(conv.id, "user", "count")
message = store.add_message(conv.id, "assistant", "", state="streaming", job_id="job-k")
print(conv.id, flush=True)
for i in range(100000):
    store.append_to_message(message, f"{i} ")
    if i == 20:
        print("streaming", flush=True)
"""


def test_killed_writer_loses_at_most_the_last_token(tmp_path):
    path = tmp_path / "conversations.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        conv_id = writer.stdout.readline().strip()
        assert writer.stdout.readline().strip() == "streaming"
        time.sleep(0.05)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.communicate(timeout=10)  # reaps it and closes its pipe
    store = ConversationStore(path)
    messages = store.messages(conv_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    words = messages[1].content.split()
    assert len(words) > 20
    assert words == [str(i) for i in range(len(words))]  # every committed token, in order, none torn
    store.close()
