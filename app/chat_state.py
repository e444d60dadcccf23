"""View-state of the Chat tab: conversations, the streaming answer, settings and what to show.

Widgets bind to the ``*_changed`` signals and call the methods; nothing here draws. Conversations
live in ``workers.conversations.ConversationStore``: the user's messages are written here, the
assistant's answer by the chat worker as it streams (so it survives a worker crash). The answer
is followed through its ``Job`` (``app/job.py``). The model and sampling settings are the form's,
read into a ``ChatRequest`` by the tab each time it asks (``request_from_form``), as in every tab.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.job import Job, bind_job
from models.catalog import ModelKind, entries
from models.chat_memory import describe_estimate
from workers.atomic import write_text
from workers.conversations import ConversationStore, StoredMessage, title_from
from workers.errors import HearthError
from workers.paths import config_dir
from workers.protocol import ChatMessage, ChatRequest, JobState

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System"}
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


class ChatState(QObject):
    """Everything the Chat tab shows, and the actions its buttons trigger."""

    conversations_changed = Signal()
    current_changed = Signal()
    messages_changed = Signal()
    busy_changed = Signal(bool)
    status_changed = Signal(str)
    metrics_changed = Signal(str)
    models_changed = Signal()

    def __init__(self, bridge, store: ConversationStore | None = None) -> None:
        super().__init__()
        self.bridge = bridge
        self.store = store or ConversationStore()
        self.current_id = ""
        self.search_text = ""
        self.job: Job | None = None
        self.partial = ""
        self.status = ""
        self.metrics = ""
        self.custom_models: list[str] = _load_custom_models()

    # -- conversations --------------------------------------------------------------------

    def conversations(self):
        return self.store.search(self.search_text) if self.search_text.strip() else self.store.list()

    def set_search(self, text: str) -> None:
        self.search_text = text
        self.conversations_changed.emit()

    def new_conversation(self) -> str:
        self.select(self.store.create().id)
        self.conversations_changed.emit()
        return self.current_id

    def select(self, conversation_id: str) -> None:
        if conversation_id == self.current_id:
            return
        self.current_id = conversation_id
        self.current_changed.emit()
        self.messages_changed.emit()

    def rename(self, conversation_id: str, title: str) -> None:
        self._guard(lambda: self.store.rename(conversation_id, title))
        self.conversations_changed.emit()

    def delete(self, conversation_id: str) -> None:
        if self.busy and conversation_id == self.current_id:
            self.stop()
        self.store.delete(conversation_id)
        self.bridge.forget_conversation(conversation_id)
        if conversation_id == self.current_id:
            self.current_id = ""
            self.current_changed.emit()
            self.messages_changed.emit()
        self.conversations_changed.emit()

    def export(self, conversation_id: str, path: str) -> None:
        writer = self.store.export_json if path.lower().endswith(".json") else self.store.export_markdown
        if self._guard(lambda: writer(conversation_id, path)):
            self._set_status(f"Exported to {path}")

    def messages(self) -> list[StoredMessage]:
        return self.store.messages(self.current_id) if self.current_id else []

    # -- sending --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.job is not None

    def send(self, text: str, settings: ChatRequest) -> bool:
        """Add the user's message and ask for an answer with ``settings`` (the form's request: its
        model, sampling and system prompt, ``messages`` the system prompt alone or empty); False
        (with a status) when it cannot be sent."""
        if self.busy:
            self._set_status("Wait for the answer to finish, or press Stop")
            return False
        if not text.strip():
            self._set_status("Write a message first")
            return False
        if not self.current_id:
            self.select(self.store.create(title_from(text)).id)
            self.conversations_changed.emit()
        self.store.add_message(self.current_id, "user", text)
        self.messages_changed.emit()
        return self._ask(settings)

    def regenerate(self, settings: ChatRequest) -> bool:
        """Drop the last answer and ask again with the same conversation."""
        history = self.messages()
        if self.busy or not any(m.role == "user" for m in history):
            return False
        if history[-1].role == "assistant":
            self.store.delete_messages_from(_first_trailing_answer(history).id)
            self.messages_changed.emit()
        return self._ask(settings)

    def edit_last(self) -> str:
        """Take the last user message back for editing (it and what followed are removed); returns its text."""
        users = [m for m in self.messages() if m.role == "user"]
        if self.busy or not users:
            return ""
        self.store.delete_messages_from(users[-1].id)
        self.messages_changed.emit()
        return users[-1].content

    def stop(self) -> None:
        if self.job is not None:
            self.bridge.jobs.cancel(self.job)
            self._set_status("Stopping ...")

    def request(self, settings: ChatRequest) -> ChatRequest:
        """``settings`` with this conversation after its system prompt."""
        history = [ChatMessage(role=m.role, content=m.content) for m in self.messages() if m.content]
        return replace(settings, messages=(*settings.messages, *history), conversation_id=self.current_id)

    def _ask(self, settings: ChatRequest) -> bool:
        try:
            job = self.bridge.jobs.start(self.request(settings))
        except HearthError as exc:
            self._set_status(str(exc))
            return False
        self.job, self.partial = job, ""
        bind_job(job, status=self._set_status, text=self._on_text, ended=self._on_end)
        self.metrics = ""
        self.metrics_changed.emit("")
        self._set_status("Thinking ...")
        self.busy_changed.emit(True)
        return True

    # -- events ---------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        if not self.partial:
            self._set_status("")
        self.partial += text
        self.messages_changed.emit()

    def _on_end(self, job: Job) -> None:
        match job.state:
            case JobState.finished:
                self.metrics = format_metrics(job.metrics)
                self.metrics_changed.emit(self.metrics)
                self._end(job, "done", "")
            case JobState.cancelled:
                self._end(job, "stopped", "Stopped: the partial answer is kept")
            case JobState.failed:
                self._end(job, "stopped", f"Error: {job.error_message}")

    def _end(self, job: Job, state: str, status: str) -> None:
        """The worker wrote the answer as it streamed; keep what we were shown if it could not."""
        stored = self.store.message_for_job(job.job_id)
        if stored is None and self.partial and self.current_id:
            self.store.add_message(
                self.current_id,
                "assistant",
                self.partial,
                state=state,
                job_id=job.job_id,
                model=job.request.model,
            )
        elif stored is not None and stored.state == "streaming":
            self.store.set_message_state(stored.id, "stopped")
        self.job, self.partial = None, ""
        self._set_status(status)
        self.busy_changed.emit(False)
        self.messages_changed.emit()
        self.conversations_changed.emit()

    # -- settings -------------------------------------------------------------------------

    def model_choices(self) -> list[tuple[str, str]]:
        """(model spec, title) for the picker: the catalog's chat models, then ones the user added."""
        catalog = [(e.id, e.title) for e in entries(ModelKind.chat)]
        return catalog + [(spec, spec) for spec in self.custom_models]

    def add_model(self, spec: str) -> str:
        """Remember a model the user typed (a hub id, folder or file) among the picker's choices."""
        spec = spec.strip()
        if spec and spec not in self.custom_models and spec not in dict(self.model_choices()):
            self.custom_models.append(spec)
            _save_custom_models(self.custom_models)
            self.models_changed.emit()
        return spec

    @staticmethod
    def memory_estimate(model: str, quant: str) -> str:
        return describe_estimate(model, quant)

    # -- view -----------------------------------------------------------------------------

    def transcript_markdown(self) -> str:
        """The conversation as Markdown for the message view, the streaming answer included."""
        # While streaming, the worker's copy of the answer in the store is shown from the live deltas instead.
        streaming = self.job.job_id if self.job is not None else None
        stored = [m for m in self.messages() if not (streaming and m.job_id == streaming)]
        parts = [_message_markdown(m.role, m.content, m.state == "stopped") for m in stored]
        if self.busy:
            parts.append(_message_markdown("assistant", self.partial or "...", False))
        return "\n\n".join(parts)

    def _set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)

    def _guard(self, action) -> bool:
        try:
            action()
        except (HearthError, OSError) as exc:
            self._set_status(str(exc))
            return False
        return True


def _first_trailing_answer(history: list[StoredMessage]) -> StoredMessage:
    index = len(history) - 1
    while index > 0 and history[index - 1].role == "assistant":
        index -= 1
    return history[index]


def _message_markdown(role: str, content: str, stopped: bool) -> str:
    note = " *(stopped)*" if stopped else ""
    return f"**{ROLE_TITLES.get(role, role)}**{note}\n\n{content}\n\n---"


def format_metrics(metrics: dict[str, float]) -> str:
    """'12.3 tokens/s · first token 0.42 s · 57 tokens' from a job's Finished metrics."""
    parts = []
    if "decode_tok_s" in metrics:
        parts.append(f"{metrics['decode_tok_s']:.1f} tokens/s")
    if "ttft_s" in metrics:
        parts.append(f"first token {metrics['ttft_s']:.2f} s")
    if "new_tokens" in metrics:
        parts.append(f"{int(metrics['new_tokens'])} tokens")
    return " · ".join(parts)


def _models_file() -> Path:
    return config_dir() / "chat_models.json"


def _load_custom_models() -> list[str]:
    try:
        data = json.loads(_models_file().read_text())
    except (OSError, ValueError):
        return []
    return [str(item) for item in data if isinstance(item, str)] if isinstance(data, list) else []


def _save_custom_models(specs: list[str]) -> None:
    write_text(_models_file(), json.dumps(specs, indent=2))
