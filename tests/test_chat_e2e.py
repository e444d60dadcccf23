"""Chat through a real worker process, supervisor and arbiter: streaming into the conversation,
a worker killed mid-answer leaving the conversation intact, and the embedded model's answer."""

from __future__ import annotations

import os
import signal

import pytest

from models.chat import save_tiny_chat_model
from tests.supervisor_helpers import running_supervisor
from workers.conversations import ConversationStore
from workers.errors import ErrorKind
from workers.protocol import ChatMessage, ChatRequest, Failed, Finished, TextDelta, WorkerKind

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def chat_worker(isolated_hearth_env):
    with running_supervisor(WorkerKind.chat, start_timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory):
    return save_tiny_chat_model(tmp_path_factory.mktemp("chat-e2e") / "model", seed=0, context=4096)


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def ask(store: ConversationStore, model, text: str, **fields) -> ChatRequest:
    conv = store.create("e2e")
    store.add_message(conv.id, "user", text)
    return ChatRequest(
        messages=(ChatMessage(role="user", content=text),),
        model=str(model),
        conversation_id=conv.id,
        **{"temperature": 0.0, "repetition_penalty": 1.0, **fields},  # plain greedy: exact answers
    )


def test_answer_streams_into_the_conversation(chat_worker, long_context_model):
    supervisor, recorder = chat_worker
    store = ConversationStore()
    request = ask(store, long_context_model, "Hello!", max_new_tokens=24, quant="fp32")
    events = recorder.job(supervisor.submit(request))
    assert isinstance(events[-1], Finished), events[-1]
    stored = store.messages(request.conversation_id)
    assert [(m.role, m.state) for m in stored] == [("user", "done"), ("assistant", "done")]
    assert stored[1].content == text_of(events) != ""


def test_killed_worker_mid_answer_leaves_the_conversation_intact(chat_worker, long_context_model):
    supervisor, recorder = chat_worker
    store = ConversationStore()
    request = ask(store, long_context_model, "Tell me everything.", max_new_tokens=3500, quant="fp32")
    job = supervisor.submit(request)
    before_kill = recorder.until(lambda e: isinstance(e, TextDelta) and e.job_id == job, timeout=120)
    for _ in range(10):  # let a few more tokens stream first
        before_kill += recorder.until(lambda e: isinstance(e, TextDelta) and e.job_id == job)
    os.kill(supervisor.worker_pid(WorkerKind.chat), signal.SIGKILL)
    after = recorder.job(job)
    assert isinstance(after[-1], Failed) and after[-1].kind is ErrorKind.worker_crashed
    shown = text_of(before_kill) + text_of(after)
    stored = store.messages(request.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].content == "Tell me everything."
    # The store is written before each delta is sent: it holds everything shown, plus at most the one
    # write that was syncing (MAX_PENDING_DELTAS tokens, workers/jobs/chat.py AnswerSink).
    assert stored[1].content.startswith(shown)
    assert len(stored[1].content) - len(shown) <= 80
    assert len(shown) > 0
    again = recorder.job(
        supervisor.submit(ask(store, long_context_model, "Still there?", max_new_tokens=4)), 180
    )
    assert isinstance(again[-1], Finished)


def test_embedded_model_answers_paris(chat_worker):
    """The real SmolLM2-135M GGUF on llama.cpp (its GGUF copy re-encoded once, never a transformers
    folder), through a real supervisor and worker."""
    from workers.paths import models_dir

    supervisor, recorder = chat_worker
    request = ChatRequest(
        messages=(ChatMessage(role="user", content="What is the capital of France?"),),
        max_new_tokens=24,
        temperature=0.0,
        repetition_penalty=1.0,
    )
    events = recorder.job(supervisor.submit(request), timeout=240)
    assert isinstance(events[-1], Finished), events[-1]
    assert "Paris" in text_of(events)
    metrics = {m.name for m in events[-1].metrics}
    assert {"ttft_s", "decode_tok_s", "prompt_tokens", "new_tokens"} <= metrics
    assert not any((models_dir() / "chat").glob("SmolLM2*")), "the embedded GGUF became safetensors"


def test_killed_worker_mid_gguf_answer_keeps_the_partial_answer(chat_worker):
    supervisor, recorder = chat_worker
    store = ConversationStore()
    request = ask(
        store,
        "smollm2-135m-instruct",
        "Write a very long story about a lighthouse keeper.",
        max_new_tokens=2000,
    )
    job = supervisor.submit(request)
    before_kill = recorder.until(lambda e: isinstance(e, TextDelta) and e.job_id == job, timeout=120)
    for _ in range(10):
        before_kill += recorder.until(lambda e: isinstance(e, TextDelta) and e.job_id == job)
    os.kill(supervisor.worker_pid(WorkerKind.chat), signal.SIGKILL)
    after = recorder.job(job)
    assert isinstance(after[-1], Failed) and after[-1].kind is ErrorKind.worker_crashed
    shown = text_of(before_kill) + text_of(after)
    stored = store.messages(request.conversation_id)
    assert stored[1].content.startswith(shown) and len(stored[1].content) - len(shown) <= 80
    assert len(shown) > 0
