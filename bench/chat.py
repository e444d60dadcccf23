"""Chat benchmark: Hearth's streaming chat path vs plain transformers ``generate`` on the same weights.

Per quantization mode, in a fresh process each (so peak memory is the variant's own): load time,
prefill tokens/s, decode tokens/s, time to first token and peak memory, for Hearth's path
(``workers.jobs.chat.generate_answer``: streamer, per-token cancel point, stop handling) and for
plain ``model.generate``. The two answers must be identical (greedy), or the run fails.
Then assisted decoding vs plain decoding: prompt lookup, and a draft model (the target's own
weights in nf4, since no smaller sibling model is available offline), with
acceptance rate and speed ratio; both must reproduce the greedy answer exactly.

    python bench/chat.py --quick     # tiny random Llama on CPU, under 2 minutes
    python bench/chat.py             # the embedded SmolLM2-135M on CPU
    python bench/chat.py --gpu       # Llama-3.2-1B-sized random weights, only where CUDA is available
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process  # noqa: E402

STORY_PROMPT = "Write a long story about a dragon who learns to bake bread, with many details."
LOOKUP_PROMPT = (
    "Copy this text exactly, then stop:\n\n" + "The quick brown fox jumps over the lazy dog near the "
    "river bank, and the farmer counts his sheep again. " * 3
)


# --------------------------------------------------------------------------- child: one variant


class _Runtime:
    """The bits of a worker runtime a handler touches when no arbiter or pipe is involved."""

    def __init__(self) -> None:
        from workers.runtime import WarmCache

        self.cache = WarmCache()

    def honour_revokes(self, ctx) -> None:
        return None


def _context():
    from workers.context import CancelToken, JobContext
    from workers.protocol import Priority

    return JobContext(
        job_id="bench",
        priority=Priority.interactive,
        send=lambda event: None,
        cancel_token=CancelToken(),
        runtime=_Runtime(),
    )


def _request(max_new_tokens: int, assisted: str = ""):
    from workers.protocol import ChatMessage, ChatRequest

    return ChatRequest(
        messages=(ChatMessage(role="user", content="x"),), max_new_tokens=max_new_tokens, assisted=assisted
    )


def hearth_answer(chat, prompt_ids, max_new_tokens: int, draft=None, assisted: str = "") -> dict:
    """One answer through Hearth's path; returns its metrics and text."""
    from workers.jobs.chat import generate_answer

    ctx = _context()
    pieces: list[str] = []

    def sink(delta: str) -> None:
        pieces.append(delta)
        ctx.text(delta)

    start = time.perf_counter()
    metrics = generate_answer(
        ctx, chat, draft, _request(max_new_tokens, assisted), prompt_ids, max_new_tokens, sink
    )
    # End to end: assisted decoding emits its first verified run of tokens at once, which would flatter
    # a first-token-to-last rate.
    metrics["e2e_tok_s"] = metrics["new_tokens"] / (time.perf_counter() - start)
    return {**metrics, "text": "".join(pieces)}


def plain_answer(chat, prompt_ids, max_new_tokens: int) -> dict:
    """The baseline a user would otherwise write: ``model.generate`` then decode."""
    import torch

    from workers.jobs.chat import end_of_turn_ids

    eos = end_of_turn_ids(chat)
    ids = torch.tensor([prompt_ids], device=chat.model.device)
    kwargs = {
        "attention_mask": torch.ones_like(ids),
        "do_sample": False,
        "eos_token_id": eos,
        "pad_token_id": chat.tokenizer.pad_token_id or eos[0],
    }
    with torch.no_grad():
        start = time.perf_counter()
        chat.model.generate(ids, max_new_tokens=1, **kwargs)
        _sync()
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = chat.model.generate(ids, max_new_tokens=max_new_tokens, **kwargs)
        _sync()
        total = time.perf_counter() - start
    new = out[0, len(prompt_ids) :].tolist()
    return {
        "ttft_s": ttft,
        "prefill_tok_s": len(prompt_ids) / ttft,
        "new_tokens": len(new),
        "decode_tok_s": (len(new) - 1) / max(total - ttft, 1e-9),
        "text": chat.tokenizer.decode(new, skip_special_tokens=True),
    }


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _medians(runs: list[dict]) -> dict:
    keys = ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_tok_s", "new_tokens")
    return {key: statistics.median(run[key] for run in runs) for key in keys if all(key in r for r in runs)}


def _prompt(chat, text: str) -> list[int]:
    from workers.jobs.chat import encode_chat
    from workers.protocol import ChatMessage

    return encode_chat(chat.tokenizer, [ChatMessage(role="user", content=text)])


def quant_variant(
    folder: str, quant: str, max_new_tokens: int, repeats: int, prompt: str = STORY_PROMPT
) -> dict:
    """Child process: load ``folder`` in ``quant``, time Hearth's path and plain generate alternately."""
    import transformers  # noqa: F401 - import cost is not the variant's memory

    from bench.harness import measure_from_here
    from models.chat import load_chat_model

    measure_from_here()
    start = time.perf_counter()
    chat = load_chat_model(folder, quant)
    load_s = time.perf_counter() - start
    prompt_ids = _prompt(chat, prompt)
    hearth_answer(chat, prompt_ids, 4)  # warm-up: first-call allocations and kernel selection
    ours, plain = [], []
    for _ in range(repeats):
        ours.append(hearth_answer(chat, prompt_ids, max_new_tokens))
        plain.append(plain_answer(chat, prompt_ids, max_new_tokens))
    if ours[0]["text"] != plain[0]["text"]:
        raise SystemExit(
            f"{quant}: Hearth's answer differs from plain generate:\n{ours[0]['text']!r}\n"
            f"{plain[0]['text']!r}"
        )
    return {
        "load_s": load_s,
        "prompt_tokens": len(prompt_ids),
        "ours": _medians(ours),
        "baseline": _medians(plain),
        "sample": ours[0]["text"][:80],
    }


class _ProposalCounter:
    """Counts tokens proposed by candidate generators and forward passes of the target model."""

    def __init__(self, target) -> None:
        from transformers.generation import candidate_generator as cg

        self.proposed = 0
        self.target_calls = 0
        target.register_forward_pre_hook(self._on_target)
        for cls in (cg.AssistedCandidateGenerator, cg.PromptLookupCandidateGenerator):
            self._wrap(cls)

    def _on_target(self, module, args) -> None:
        self.target_calls += 1

    def _wrap(self, cls) -> None:
        original = cls.get_candidates
        counter = self

        def get_candidates(self, input_ids, *args, **kwargs):
            candidates, logits = original(self, input_ids, *args, **kwargs)
            counter.proposed += candidates.shape[-1] - input_ids.shape[-1]
            return candidates, logits

        cls.get_candidates = get_candidates

    def reset(self) -> None:
        self.proposed = self.target_calls = 0


def _self_draft(folder: str, quant: str):
    """The target's own weights quantized (nf4) as the draft: no smaller sibling model exists offline,
    and a quantized copy agrees with the target often enough to show acceptance honestly."""
    from models.chat import load_chat_model

    return load_chat_model(folder, quant)


def assisted_variant(
    folder: str, quant: str, max_new_tokens: int, repeats: int, draft_quant: str, prompt: str = LOOKUP_PROMPT
) -> dict:
    """Child process: plain vs prompt lookup vs draft-model assisted decoding, same greedy answer."""
    from models.chat import load_chat_model

    chat = load_chat_model(folder, quant)
    draft = _self_draft(folder, draft_quant)
    counter = _ProposalCounter(chat.model)
    prompt_ids = _prompt(chat, prompt)
    results = {}
    for name, kwargs in (
        ("plain", {}),
        ("prompt_lookup", {"assisted": "prompt_lookup"}),
        ("draft", {"draft": draft, "assisted": "draft"}),
    ):
        hearth_answer(chat, prompt_ids, 4, **kwargs)
        runs = []
        for _ in range(repeats):
            counter.reset()
            run = hearth_answer(chat, prompt_ids, max_new_tokens, **kwargs)
            accepted = run["new_tokens"] - counter.target_calls
            run["acceptance_rate"] = accepted / counter.proposed if counter.proposed else 0.0
            run["tokens_per_target_pass"] = run["new_tokens"] / max(counter.target_calls, 1)
            runs.append(run)
        results[name] = {
            **_medians(runs),
            "acceptance_rate": statistics.median(r["acceptance_rate"] for r in runs),
            "tokens_per_target_pass": statistics.median(r["tokens_per_target_pass"] for r in runs),
            "text": runs[0]["text"],
        }
    for name in ("prompt_lookup", "draft"):
        if results[name].pop("text") != results["plain"]["text"]:
            raise SystemExit(f"assisted decoding ({name}) changed the greedy answer")
    results["plain"].pop("text")
    return results


def prepare_tiny(folder: str) -> dict:
    from models.chat import save_tiny_chat_model

    save_tiny_chat_model(Path(folder), seed=0, context=1024, hidden=256, layers=4, head_scale=4.0)
    return {"folder": folder}


def prepare_embedded() -> dict:
    from models.chat import EMBEDDED_ID, resolve_folder

    return {"folder": str(resolve_folder(EMBEDDED_ID, on_status=print))}


def prepare_llama_1b(folder: str) -> dict:
    """Llama-3.2-1B's architecture with random bf16 weights and a word-level tokenizer of its vocab size."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from models.chat import CHATML_TEMPLATE

    vocab = {f"w{i}": i for i in range(128256 - 3)} | {
        "<|endoftext|>": 128253,
        "<|im_start|>": 128254,
        "<|im_end|>": 128255,
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=500000.0,
        bos_token_id=128254,
        eos_token_id=128255,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return {"folder": folder}


# --------------------------------------------------------------------------- parent


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(
    folder: str,
    quants: list[str],
    max_new_tokens: int,
    repeats: int,
    draft_quant: str,
    timeout: float,
    prompts: dict | None = None,
):
    prompts = prompts or {}
    ours, baseline, ratio = {}, {}, {}
    for quant in quants:
        result = in_fresh_process(
            "bench.chat:quant_variant",
            timeout=timeout,
            folder=folder,
            quant=quant,
            max_new_tokens=max_new_tokens,
            repeats=repeats,
            **_only(prompts, "prompt"),
        )
        memory = {k: v for k, v in result.items() if k.startswith("peak_")}
        ours[quant] = {**result["ours"], "load_s": result["load_s"], **memory}
        baseline[quant] = result["baseline"]
        ratio[f"decode_vs_plain_{quant}"] = _ratio(
            ours[quant].get("decode_tok_s"), baseline[quant].get("decode_tok_s")
        )
        print(quant, ours[quant], baseline[quant], result["sample"], file=sys.stderr, flush=True)
    decode_ratios = [v for k, v in ratio.items() if v is not None]
    ratio["decode_vs_plain"] = round(statistics.median(decode_ratios), 3) if decode_ratios else None
    assisted = in_fresh_process(
        "bench.chat:assisted_variant",
        timeout=timeout,
        folder=folder,
        quant=quants[0],
        max_new_tokens=max_new_tokens,
        repeats=repeats,
        draft_quant=draft_quant,
        **_only(prompts, "lookup_prompt"),
    )
    ours["assisted"] = {
        "quant": quants[0],
        "prompt_lookup": assisted["prompt_lookup"],
        "draft": assisted["draft"],
        "draft_quant": draft_quant,
    }
    baseline["plain_decoding"] = assisted["plain"]
    plain_speed = assisted["plain"].get("e2e_tok_s")
    ratio["prompt_lookup_vs_plain"] = _ratio(assisted["prompt_lookup"].get("e2e_tok_s"), plain_speed)
    ratio["draft_vs_plain"] = _ratio(assisted["draft"].get("e2e_tok_s"), plain_speed)
    return ours, baseline, ratio


def _only(prompts: dict, key: str) -> dict:
    return {"prompt": prompts[key]} if key in prompts else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny random Llama, CPU, under two minutes")
    parser.add_argument("--gpu", action="store_true", help="Llama-3.2-1B-sized random weights on CUDA")
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-chat-") as scratch:
        if args.gpu:
            setup = _gpu_setup(scratch, args.repeats or 3)
        elif args.quick:
            setup = {
                "model": "tiny random Llama (hidden 256, 4 layers)",
                "quants": ["fp32", "bf16", "nf4"],
                "max_new_tokens": 32,
                "repeats": args.repeats or 3,
                "draft_quant": "nf4",
                "folder": in_fresh_process("bench.chat:prepare_tiny", folder=f"{scratch}/tiny")["folder"],
            }
        else:
            setup = {
                "model": "SmolLM2-135M-Instruct (embedded GGUF, converted)",
                "quants": ["fp32", "bf16", "nf4", "int8"],
                "max_new_tokens": 64,
                "repeats": args.repeats or 3,
                "draft_quant": "nf4",
                "folder": in_fresh_process("bench.chat:prepare_embedded", timeout=900)["folder"],
            }
        if setup is None:
            return
        ours, baseline, ratio = run(
            setup["folder"],
            setup["quants"],
            setup["max_new_tokens"],
            setup["repeats"],
            setup["draft_quant"],
            timeout=600,
            prompts=setup.get("prompts"),
        )
    config = {k: v for k, v in setup.items() if k not in ("folder", "prompts")} | {
        "threads": 1,
        "greedy": True,
        "outputs_checked_equal": True,
    }
    emit("chat", config, ours, baseline, ratio, device=setup.get("device"))


def _gpu_setup(scratch: str, repeats: int) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: the --gpu section is skipped", file=sys.stderr)
        return None
    folder = in_fresh_process("bench.chat:prepare_llama_1b", folder=f"{scratch}/llama-1b")["folder"]
    return {
        "model": "Llama-3.2-1B-sized, random bf16 weights",
        "quants": ["bf16", "nf4", "int8"],
        "max_new_tokens": 64,
        "repeats": repeats,
        "draft_quant": "nf4",
        "folder": folder,
        # the word-level tokenizer turns "w<i>" into token i: a 500-token prefill, a repeating lookup prompt
        "prompts": {
            "prompt": " ".join(f"w{i}" for i in range(500)),
            "lookup_prompt": " ".join(f"w{i}" for i in range(60)) * 4,
        },
        "device": torch.cuda.get_device_name(0),
    }


if __name__ == "__main__":
    main()
