"""The local API's cost: a streamed chat answer through ``/v1/chat/completions`` (HTTP, uvicorn,
the supervisor, the chat worker) against plain llama-cpp-python's ``create_chat_completion(stream=True)``
in-process on the same GGUF, side by side in one run.

The baseline has no HTTP at all, so the ratio is what the API costs over the bare engine; servers
users would otherwise run (Ollama, LM Studio, llama-cpp-python's server) sit between the two.

    python bench/api.py --quick     # the embedded SmolLM2-135M GGUF on CPU, under two minutes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chat import _ratio, _summary, _timings, story  # noqa: E402
from bench.harness import emit, in_fresh_process  # noqa: E402


def api_variant(path: str, max_new_tokens: int, repeats: int) -> dict:
    """A headless supervisor with one chat worker, the API on a free loopback port, the openai client."""
    scratch = tempfile.mkdtemp(prefix="hearth-bench-api-")
    for name in ("DATA", "CONFIG", "RUNTIME", "LOG"):
        os.environ[f"HEARTH_{name}_DIR"] = f"{scratch}/{name.lower()}"
    os.environ["HEARTH_ARBITER_SOCKET"] = f"{scratch}/runtime/arbiter.sock"
    import openai

    from app.api.serve import ApiServer
    from bench.chat import _stop_arbiter
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    supervisor = Supervisor(kinds=[WorkerKind.chat], restore_queue=False)
    supervisor.start()
    server = None
    try:
        if not supervisor.wait_ready(timeout=180):
            raise SystemExit("the chat worker did not start")
        server = ApiServer(supervisor, port=0)
        server.start()
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key, max_retries=0)

        def ask(text: str, tokens: int) -> dict:
            deltas, pieces, usage = [], [], None
            start = time.perf_counter()
            stream = client.chat.completions.create(
                model="smollm2-135m-instruct",
                messages=[{"role": "user", "content": text}],
                max_tokens=tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"repetition_penalty": 1.0},
            )
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    deltas.append(time.perf_counter())
                    pieces.append(chunk.choices[0].delta.content)
            return _timings(start, deltas, usage.prompt_tokens, usage.completion_tokens, "".join(pieces), {})

        ask(story(99), 4)  # warm-up: load, lease and first-call allocations
        plain = [ask(story(i), max_new_tokens) for i in range(repeats)]
    finally:
        if server is not None:
            server.stop()
        supervisor.shutdown()
        with contextlib.suppress(Exception):  # as bench/chat.py: the arbiter exits on its own later
            _stop_arbiter()
    return {"plain": _summary(plain)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the embedded GGUF, under two minutes")
    parser.add_argument("--tokens", type=int, default=0, help="answer length (default 128; 64 with --quick)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from models.chat import embedded_gguf_path

    os.environ.setdefault("HEARTH_LLAMA_THREADS", "1")
    args.tokens = args.tokens or (64 if args.quick else 128)
    path = str(embedded_gguf_path())
    ours = in_fresh_process(
        "bench.api:api_variant", timeout=600, path=path, max_new_tokens=args.tokens, repeats=args.repeats
    )
    plain = in_fresh_process(
        "bench.chat:llama_cpp_variant",
        timeout=600,
        path=path,
        max_new_tokens=args.tokens,
        repeats=args.repeats,
    )
    texts_match = ours["plain"].pop("texts") == plain["plain"].pop("texts")
    plain.get("rewrite", {}).pop("texts", None)
    ratio = {
        "decode_vs_llama_cpp": _ratio(ours["plain"]["decode_tok_s"], plain["plain"]["decode_tok_s"]),
        "ttft_vs_llama_cpp": _ratio(ours["plain"]["ttft_s"], plain["plain"]["ttft_s"]),
        "e2e_vs_llama_cpp": _ratio(ours["plain"]["e2e_tok_s"], plain["plain"]["e2e_tok_s"]),
    }
    config = {
        "model": "SmolLM2-135M-Instruct GGUF (embedded)",
        "max_tokens": args.tokens,
        "repeats": args.repeats,
        "threads": os.environ["HEARTH_LLAMA_THREADS"],
        "greedy": True,
    }
    emit(
        "api_chat_stream",
        config,
        {k: v for k, v in ours.items() if not k.startswith("peak_")},
        {"llama_cpp_in_process": plain["plain"]},
        ratio,
        same_greedy_text=texts_match,
    )


if __name__ == "__main__":
    main()
