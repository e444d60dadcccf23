"""Chat benchmark: Hearth's chat end to end (a real supervisor, chat worker, arbiter and conversation
store, as the window uses them) against plain llama-cpp-python and plain transformers ``generate`` on
the same GGUF, in one run.

- **Hearth**: ``ChatRequest``s submitted to a chat worker; the answer is stored token by token. Time
  to first token and decode speed are what the submitting process sees (submit to first
  ``TextDelta``, first to last ``TextDelta``), so IPC, the lease and the store are all counted.
- **llama-cpp-python**: ``Llama.create_chat_completion(stream=True)`` on the same file with the same
  context, threads and flash attention as Hearth's engine (``workers/chat_llama.py``), so the ratio
  is Hearth's overhead, not a settings difference. It runs in the process that drives Hearth's
  worker, one answer each in turn (A, B, B, A, ...), so a load that comes and goes on a shared
  machine hits both alike; each speed is the median of the repeats, and each ratio the median of
  the ratios of neighbouring answers (``_paired``).
- **transformers**: ``generate`` on the GGUF's weights dequantized to fp32 (what Hearth ran before),
  in its own process after the others.

Greedy answers must be identical between Hearth and llama-cpp-python, plain, with prompt lookup and
with a draft model, or the run fails. Prompt lookup is measured on a rewrite-this-text prompt; the
draft model (the shipped Q4_1 drafting for the Q8_0 copy Hearth runs: same vocabulary) on the story
prompts, with its acceptance rate and tokens per target pass.

    python bench/chat.py --quick     # the embedded SmolLM2-135M GGUF on CPU, 1 thread, under 2 minutes
    python bench/chat.py --quick --transformers   # the same plus plain transformers (its load: 30-80 s)
    python bench/chat.py --quick --draft          # the same plus the draft-model section
    python bench/chat.py             # 128 tokens, all three engines; --threads 2 for two threads
    python bench/chat.py --gpu       # all layers, then half, on the GPU (a CUDA build of llama.cpp), on
                                     # a random-weight Llama-3.2-1B-shaped Q8_0 GGUF (bench/random_gguf.py)
    python bench/chat.py --gpu --tiny   # the same section on a tiny random GGUF: runs on a CPU build too
    python bench/chat.py --gguf model.gguf   # another GGUF than the embedded model (no draft model)
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
REWRITE = (  # a rewrite-this-text prompt the 135M model answers by copying (55 tokens of 99)
    "Rewrite this text with every sentence kept as it is:\n\n"
    "The river runs past the old mill. The miller counts his sacks of flour every morning. "
    "His daughter paints the wooden door blue. A cat sleeps on the warm stones by the oven. "
    "In the evening the family eats bread and soup at the long table."
)


def story(i: int) -> str:
    # A different opening per run: neither engine may answer from a KV cache of the previous run.
    return f"Story number {i + 1}. {STORY}"


# --------------------------------------------------------------------------- Hearth through the worker


def side_by_side(
    path: str, draft: str, max_new_tokens: int, repeats: int, gpu_layers: int | None = None
) -> dict:
    """Hearth through its worker and plain llama-cpp-python in this process, one answer each in turn.

    Hearth runs a supervisor with one chat worker in scratch folders; every answer is stored as in
    the window. ``gpu_layers`` (None: Hearth's own choice from the lease) is given to both.
    """
    import contextlib

    scratch = tempfile.mkdtemp(prefix="hearth-bench-chat-")
    for name in ("DATA", "CONFIG", "RUNTIME", "LOG"):
        os.environ[f"HEARTH_{name}_DIR"] = f"{scratch}/{name.lower()}"
    os.environ["HEARTH_ARBITER_SOCKET"] = f"{scratch}/runtime/arbiter.sock"
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    plain = PlainLlama(path, 0 if gpu_layers is None else gpu_layers)
    timeline = Timeline()
    supervisor = Supervisor(kinds=[WorkerKind.chat], listener=timeline, restore_queue=False)
    supervisor.start()
    runs: dict[str, list[dict]] = {key: [] for key in RUN_KEYS}
    try:
        if not supervisor.wait_ready(timeout=180):
            raise SystemExit("the chat worker did not start")
        hearth = _hearth_asker(supervisor, timeline, path)
        hearth(story(99), 4)  # warm-up: load, lease and first-call allocations
        plain.ask(story(99), 4)
        for i in range(repeats):
            pair = [
                lambda i=i: runs["plain"].append(hearth(story(i), max_new_tokens)),
                lambda i=i: runs["llama_cpp_plain"].append(plain.ask(story(i), max_new_tokens)),
            ]
            for run in pair if i % 2 == 0 else pair[::-1]:
                run()
        for i in range(repeats):
            steps = [
                lambda: runs["llama_cpp_rewrite"].append(plain.ask(REWRITE, max_new_tokens)),
                lambda: runs["rewrite"].append(hearth(REWRITE, max_new_tokens)),
                lambda: runs["prompt_lookup"].append(hearth(REWRITE, max_new_tokens, "prompt_lookup")),
            ]
            for run in steps if i % 2 == 0 else steps[::-1]:
                run()
        if draft:
            hearth(story(98), 4, draft)  # the draft's load and lease
            runs["draft_model"] = [hearth(story(i), max_new_tokens, draft) for i in range(repeats)]
    finally:
        supervisor.shutdown()
        plain.close()
        with contextlib.suppress(OSError):
            _stop_arbiter()
    summary = {key: _summary(value) for key, value in runs.items() if value}
    return summary | {"load_s": plain.load_s, "paired": _paired(runs)}


def _paired(runs: dict[str, list[dict]]) -> dict[str, float]:
    """Each Hearth answer against the llama-cpp-python answer run next to it, the median of those
    ratios: on a shared machine whose speed drifts by 20% over a minute, two answers a second apart
    see the same machine, while the medians of each side may come from different minutes."""

    def median_ratio(ours: str, theirs: str, key: str) -> float:
        pairs = zip(runs[ours], runs[theirs], strict=True)
        return round(statistics.median(a[key] / b[key] for a, b in pairs), 3)

    return {
        "decode_vs_llama_cpp": median_ratio("plain", "llama_cpp_plain", "decode_tok_s"),
        "ttft_vs_llama_cpp": median_ratio("plain", "llama_cpp_plain", "ttft_s"),
        "prompt_lookup_vs_llama_cpp": median_ratio("prompt_lookup", "llama_cpp_rewrite", "e2e_tok_s"),
        "rewrite_plain_vs_llama_cpp": median_ratio("rewrite", "llama_cpp_rewrite", "e2e_tok_s"),
    }


RUN_KEYS = ("plain", "rewrite", "prompt_lookup", "llama_cpp_plain", "llama_cpp_rewrite")


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
    """The supervisor started an arbiter for the scratch folders; it would outlive the run."""
    import signal

    from workers.arbiter.address import running_pid, socket_path

    pid = running_pid(socket_path())
    if pid:
        os.kill(pid, signal.SIGTERM)


# --------------------------------------------------------------------------- plain llama-cpp-python


class PlainLlama:
    """What a user of llama-cpp-python writes: one ``Llama``, ``create_chat_completion(stream=True)``."""

    def __init__(self, path: str, gpu_layers: int = 0) -> None:
        from llama_cpp import Llama

        from models.chat_memory import gguf_context, read_gguf_footprint
        from workers.chat_llama import FLASH_ATTENTION, threads

        start = time.perf_counter()
        self.llama = Llama(
            model_path=path,
            n_ctx=gguf_context(read_gguf_footprint(Path(path))),
            n_gpu_layers=gpu_layers,
            n_threads=threads(),
            n_threads_batch=threads(),
            flash_attn=FLASH_ATTENTION,
            verbose=False,
        )
        self.load_s = time.perf_counter() - start
        self.fresh_cache = read_gguf_footprint(Path(path)).float_matrices
        self.sampled = 0
        sample = self.llama.sample

        def counted_sample(*args, **kwargs):  # one call per generated token, end of turn included
            self.sampled += 1
            return sample(*args, **kwargs)

        self.llama.sample = counted_sample

    def ask(self, text: str, tokens: int) -> dict:
        messages = [{"role": "user", "content": text}]
        deltas, pieces, finish = [], [], None
        self.sampled = 0
        if self.fresh_cache:  # as Hearth answers a GGUF with float matrices: from an empty cache
            self.llama.reset()
        start = time.perf_counter()
        stream = self.llama.create_chat_completion(messages, max_tokens=tokens, temperature=0.0, stream=True)
        for chunk in stream:
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                deltas.append(time.perf_counter())
                pieces.append(choice["delta"]["content"])
            finish = choice.get("finish_reason") or finish
        new_tokens = self.sampled - (1 if finish == "stop" else 0)
        return _timings(start, deltas, 0, new_tokens, "".join(pieces), {})

    def close(self) -> None:
        self.llama.close()


def llama_cpp_variant(path: str, max_new_tokens: int, repeats: int, gpu_layers: int = 0) -> dict:
    """Plain llama-cpp-python alone (the --gpu section)."""
    plain = PlainLlama(path, gpu_layers)
    try:
        plain.ask(story(99), 4)
        runs = [plain.ask(story(i), max_new_tokens) for i in range(repeats)]
    finally:
        plain.close()
    return {"load_s": plain.load_s, "plain": _summary(runs)}


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


def run(
    path: str, draft: str, max_new_tokens: int, repeats: int, with_transformers: bool, timeout: float = 600
):
    both = in_fresh_process(
        "bench.chat:side_by_side",
        timeout=timeout,
        path=path,
        draft=draft,
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
    _check_same_text(both)
    ours, base = both["plain"], both["llama_cpp_plain"]
    # Prefill: llama-cpp-python reports no prompt length per chunk; both engines see the same ids.
    base["prompt_tokens"] = ours.get("prompt_tokens", 0)
    base["prefill_tok_s"] = round(base["prompt_tokens"] / base["ttft_s"], 2) if base["ttft_s"] else None
    paired = both.pop("paired")
    ratio = {
        "decode_vs_llama_cpp": paired["decode_vs_llama_cpp"],
        "prefill_vs_llama_cpp": round(1 / paired["ttft_vs_llama_cpp"], 3),  # the same prompt ids
        "ttft_vs_llama_cpp": paired["ttft_vs_llama_cpp"],
        "prompt_lookup_vs_llama_cpp": paired["prompt_lookup_vs_llama_cpp"],
        "rewrite_plain_vs_llama_cpp": paired["rewrite_plain_vs_llama_cpp"],
    }
    if "draft_model" in both:
        ratio["draft_model_vs_llama_cpp"] = _ratio(both["draft_model"]["e2e_tok_s"], base["e2e_tok_s"])
    baseline = {
        "llama_cpp": {
            "load_s": both.pop("load_s"),
            "plain": both.pop("llama_cpp_plain"),
            "rewrite": both.pop("llama_cpp_rewrite"),
        }
    }
    if torch_side is not None:
        baseline["transformers"] = {"load_s": torch_side["load_s"], **torch_side["plain"]}
        ratio["decode_vs_transformers"] = _ratio(ours["decode_tok_s"], torch_side["plain"]["decode_tok_s"])
    for section in [*both.values(), *baseline["llama_cpp"].values(), baseline.get("transformers")]:
        if isinstance(section, dict):
            section.pop("texts", None)
    return {k: v for k, v in both.items() if not k.startswith("peak_")}, baseline, ratio


def _check_same_text(both: dict) -> None:
    pairs = [
        ("plain", "plain", "llama_cpp_plain"),
        ("rewrite", "rewrite", "llama_cpp_rewrite"),
        ("prompt lookup", "prompt_lookup", "llama_cpp_rewrite"),
    ]
    if "draft_model" in both:  # reported, not required: see _same_share
        both["draft_model"]["same_text_share"] = _same_share(both["draft_model"], both["llama_cpp_plain"])
    for name, ours, theirs in pairs:
        if both[ours]["texts"] != both[theirs]["texts"]:
            raise SystemExit(
                f"{name}: Hearth's greedy answer differs from llama-cpp-python's:\n"
                f"{both[ours]['texts']!r}\n{both[theirs]['texts']!r}"
            )


def _same_share(ours: dict, theirs: dict) -> float:
    """The share of answers identical to plain greedy. A draft model's verification batches are up
    to 6 tokens where plain decoding evaluates one: on a GGUF with float matrices (the embedded
    copy's attention Q and K are F16) the sums then differ in their last bits and a near tie can go
    the other way, so this is measured rather than required; on block-quantized files it is 1."""
    pairs = list(zip(ours["texts"], theirs["texts"], strict=True))
    return round(sum(a == b for a, b in pairs) / len(pairs), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the embedded GGUF, 1 thread, under two minutes")
    parser.add_argument(
        "--gpu", action="store_true", help="all layers, then half, on a CUDA build of llama.cpp"
    )
    parser.add_argument("--gguf", default="", help="another GGUF than the embedded model (no draft model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--transformers", action="store_true", help="with --quick: add plain transformers too"
    )
    parser.add_argument(
        "--draft", action="store_true", help="with --quick: add the draft-model section (the full run has it)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="with --gpu: a tiny random GGUF, so the section runs on a CPU build",
    )
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    from models.chat import embedded_gguf_path, embedded_run_path

    os.environ["HEARTH_LLAMA_THREADS"] = str(args.threads)
    if args.gpu:
        return _gpu(args.gguf, args.repeats or 3, args.tiny)
    # The file Hearth runs for the embedded model (converted once on a fresh machine, before timing).
    path = args.gguf or str(embedded_run_path(lambda line: print(line, file=sys.stderr)))
    draft = "" if args.gguf or (args.quick and not args.draft) else str(embedded_gguf_path())
    max_new, repeats = (64, args.repeats or 5) if args.quick else (128, args.repeats or 5)
    # transformers' GGUF loader dequantizes for 30-80 s on 2 cores: in --quick only when asked
    with_transformers = args.transformers or not args.quick
    started = time.perf_counter()
    ours, baseline, ratio = run(path, draft, max_new, repeats, with_transformers=with_transformers)
    config = {
        "model": _model_name(path),
        "draft_model": Path(draft).name if draft else None,
        "engine": "llama-cpp-python " + _llama_version(),
        "threads": args.threads,
        "max_new_tokens": max_new,
        "repeats": repeats,
        "greedy": True,
        "outputs_checked_equal": True,
        "load": _load(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    emit("chat", config, ours, baseline, ratio)


def _model_name(path: str) -> str:
    from models.chat_memory import read_gguf_footprint

    footprint = read_gguf_footprint(Path(path))
    return f"{Path(path).name} ({footprint.architecture}, {footprint.layers} layers, {footprint.file_type})"


def _load() -> str:
    """The machine's load while this ran: a shared machine's numbers mean little without it."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def _gpu(path: str, repeats: int, tiny: bool) -> None:
    """All layers on the GPU, then half of them: Hearth through its worker (the arbiter's tier forced
    by a simulated budget that only the half tier fits) against plain llama-cpp-python.

    Without ``path``, on a random-weight GGUF of Llama-3.2-1B's shape in Q8_0 (1.3 GB, written in
    seconds; no network here): decode speed depends on shapes and types, not on the weights."""
    import llama_cpp

    offload = bool(llama_cpp.llama_supports_gpu_offload())
    if not offload and not tiny:
        print("this llama.cpp build has no GPU offload: the --gpu section is skipped", file=sys.stderr)
        return
    from bench.random_gguf import write as write_random_gguf
    from models.chat_memory import gguf_context, gguf_plans, read_gguf_footprint

    if not path:
        config = "tiny" if tiny else "llama-3.2-1b"
        started = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="hearth-gguf-"))
        path = str(write_random_gguf(folder / f"random-{config}.gguf", config))
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if not offload:
        print(
            "no GPU offload in this build: the layers stay on the CPU (a check of the script)",
            file=sys.stderr,
        )
    footprint = read_gguf_footprint(Path(path))
    full, half, _cpu = gguf_plans(footprint, gguf_context(footprint), offload=True)
    results, ratio = {}, {}
    for name, plan, budget in (
        ("all_layers", full, ""),
        (f"half_{half.gpu_layers}_layers", half, half.bytes),
    ):
        if budget and offload:  # room for the half tier and not the full one (a CPU build has one tier)
            os.environ["HEARTH_ARBITER_DEVICE"] = f"sim:{budget + (full.bytes - budget) // 2},ctx=0"
            os.environ["HEARTH_ARBITER_HEADROOM"] = "0"
        both = in_fresh_process(
            "bench.chat:side_by_side",
            path=path,
            draft="",
            max_new_tokens=32 if tiny else 128,
            repeats=repeats,
            gpu_layers=plan.gpu_layers,
        )
        # Reported, not required: CUDA's kernels for one token and for a batch differ, so on a GPU a
        # near tie may go another way between plain decoding and a verification batch.
        for ours, theirs in (("plain", "llama_cpp_plain"), ("prompt_lookup", "llama_cpp_rewrite")):
            both[ours]["same_text_share"] = _same_share(both[ours], both[theirs])
        for section in both.values():
            if isinstance(section, dict):
                section.pop("texts", None)
        results[name] = both
        paired = both.pop("paired")
        ratio[f"{name}.decode_vs_llama_cpp"] = paired["decode_vs_llama_cpp"]
        ratio[f"{name}.ttft_vs_llama_cpp"] = paired["ttft_vs_llama_cpp"]
    config = {
        "model": _model_name(path),
        "repeats": repeats,
        "engine": "llama-cpp-python " + _llama_version(),
        "gpu_offload": offload,
        "n_ctx": gguf_context(footprint),
    }
    emit("chat_gpu", config, results, {}, ratio)


def _llama_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


if __name__ == "__main__":
    main()
