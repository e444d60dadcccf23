"""``hearth --self-test``: prove an install (or a packaged bundle) works, headless.

Starts the arbiter and the image and chat workers from this installation, runs one demo image
job and one answer from the embedded chat model, then one chat completion through the local API
on a free loopback port, and exits 0 only if all three succeed. Everything
it writes goes to a temporary folder, never to the user's data.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import time

CHAT_QUESTION = "Which city is the capital of France?"


def run_self_test(timeout: float = 600.0) -> int:
    with tempfile.TemporaryDirectory(prefix="hearth-self-test-") as tmp:
        for var in ("DATA", "CONFIG", "LOG"):
            os.environ[f"HEARTH_{var}_DIR"] = os.path.join(tmp, var.lower())
        # The runtime dir (the arbiter's socket) is left alone: a self-test shares the running
        # app's arbiter like any other Hearth process would.
        return _run(tmp, timeout)


def _run(tmp: str, timeout: float) -> int:
    from workers.protocol import ChatMessage, ChatRequest, Finished, ImageRequest, TextDelta, WorkerKind
    from workers.supervisor import Supervisor

    events: queue.Queue = queue.Queue()
    supervisor = Supervisor(
        kinds=[WorkerKind.image, WorkerKind.chat], listener=events.put, restore_queue=False
    )
    started = time.monotonic()
    supervisor.start()
    try:
        image_job = supervisor.submit(
            ImageRequest(prompt="self test", steps=2, out_path=os.path.join(tmp, "t.png"))
        )
        chat_job = supervisor.submit(
            ChatRequest(
                messages=(ChatMessage(role="user", content=CHAT_QUESTION),),
                max_new_tokens=24,
                temperature=0.0,
                repetition_penalty=1.0,
            )
        )
        ends, answer = _collect(events, {image_job, chat_job}, timeout, TextDelta, chat_job)
        api_answer = _ask_the_api(supervisor)
    finally:
        supervisor.shutdown()
    image_ok = isinstance(ends.get(image_job), Finished) and os.path.exists(os.path.join(tmp, "t.png"))
    chat_ok = isinstance(ends.get(chat_job), Finished) and bool(answer.strip())
    print(f"self-test: image {'ok' if image_ok else ends.get(image_job)}", flush=True)
    print(f"self-test: chat {'ok' if chat_ok else ends.get(chat_job)}: {answer.strip()!r}", flush=True)
    print(f"self-test: api {'ok' if api_answer.strip() else 'no answer'}: {api_answer.strip()!r}", flush=True)
    print(f"self-test: {time.monotonic() - started:.1f} s", flush=True)
    return 0 if image_ok and chat_ok and api_answer.strip() else 1


def _ask_the_api(supervisor) -> str:
    """One ``/v1/chat/completions`` through the bundle's own HTTP stack (uvicorn, FastAPI)."""
    import json
    import urllib.request

    from app.api.serve import ApiServer

    server = ApiServer(supervisor, port=0)
    server.start()
    try:
        body = {
            "model": "smollm2-135m-instruct",
            "max_tokens": 8,
            "temperature": 0,
            "messages": [{"role": "user", "content": CHAT_QUESTION}],
        }
        request = urllib.request.Request(
            server.base_url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.load(response)["choices"][0]["message"]["content"]
    except OSError as exc:
        print(f"self-test: api failed: {exc}", flush=True)
        return ""
    finally:
        server.stop()


def _collect(events: queue.Queue, jobs: set[str], timeout: float, text_type: type, chat_job: str):
    from workers.protocol import JOB_END_EVENTS

    ends: dict[str, object] = {}
    answer = []
    deadline = time.monotonic() + timeout
    while len(ends) < len(jobs) and time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.5)
        except queue.Empty:
            continue
        if isinstance(event, text_type) and event.job_id == chat_job:
            answer.append(event.text)
        elif isinstance(event, JOB_END_EVENTS) and event.job_id in jobs:
            ends[event.job_id] = event
    return ends, "".join(answer)


if __name__ == "__main__":
    sys.exit(run_self_test())
