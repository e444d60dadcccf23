"""GGUF chat on llama.cpp (llama-cpp-python): the engine Ollama, LM Studio and Jan run, under the arbiter.

A GGUF runs as shipped (its own quantization), without conversion. Order of work, as for the
transformers path in ``workers/jobs/chat.py``: check the file (header, architecture, chat template),
lease memory with tiers computed from the GGUF header (``models.chat_memory.gguf_plans``: every
layer on the GPU, half of them, none), fit the conversation into ``n_ctx``, then decode token by
token through the same ``AnswerStreamer`` and ``AnswerSink`` (conversation store first, then a
``TextDelta``, then ``ctx.step``).

A revoke mid-answer is honoured at the next token: llama.cpp cannot move layers of a loaded model,
so the model is reloaded with fewer GPU layers (or unloaded until the memory comes back) and the
answer continues from every token already written: prompt and answer so far are prefilled again
on the new model. Greedy answers are unchanged by it; a sampled answer continues with a sampler
re-seeded from the request's seed and the answer's length.

Prompt-lookup decoding (Saxena 2023; llama-cpp-python's ``LlamaPromptLookupDecoding``) drafts
tokens from n-grams of the prompt, and a draft model (``DraftModel``: a second, smaller GGUF of the
same vocabulary, ``ChatRequest.assisted``) drafts them by decoding greedily; the target verifies a
draft in one batch, so greedy output is the plain greedy output (exactly so on block-quantized
weights; see ``GGUFFootprint.float_matrices`` for F16/F32 ones).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from models.chat_memory import GGUFFootprint, GGUFPlan, gguf_context, gguf_plans, read_gguf_footprint
from workers.context import JobContext, MemoryTier
from workers.errors import BadInput, MissingModel
from workers.protocol import ChatRequest

log = logging.getLogger(__name__)

PROMPT_LOOKUP_TOKENS = 10
PROMPT_LOOKUP_NGRAM = 2
DRAFT_TOKENS = 5
"""Tokens a draft model proposes per target pass (a verification batch is at most
``PROMPT_LOOKUP_TOKENS + 1`` tokens: see ``HearthLlama.eval``)."""
FLASH_ATTENTION = True  # docs/FIELD-NOTES.md: faster on CPU, and no n_ctx x n_ctx score buffer
GGML_LOG_WARN, GGML_LOG_ERROR = 3, 4  # ggml.h's ggml_log_level (llama-cpp-python's comment is older)
THREADS_ENV = "HEARTH_LLAMA_THREADS"
MAX_THREADS = 4
_recent_errors: collections.deque[str] = collections.deque(maxlen=6)
_log_callback = None  # the ctypes callback must outlive every call llama.cpp makes to it
_checked: dict[tuple[str, int, int], GGUFFootprint] = {}


def threads() -> int:
    """Decode threads: ``HEARTH_LLAMA_THREADS``, else one fewer than the physical cores, up to 4.

    llama.cpp's threads meet at a barrier after every matrix, so one thread descheduled stalls the
    rest: with every core in use, a busy machine (the window, another worker, a browser) took a
    2-core decode from 56 to 0.4 tok/s, even in our build without OpenMP (docs/FIELD-NOTES.md).
    Leaving a core to everything else keeps decode steady; on 2 cores that is one thread.
    """
    configured = os.environ.get(THREADS_ENV, "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, min(cores - 1, MAX_THREADS))


def gpu_offload() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (a CPU build cannot)."""
    return bool(_llama_cpp().llama_supports_gpu_offload())


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingModel(
            "GGUF chat needs llama-cpp-python, which is not installed: run `make setup` "
            "(it compiles llama.cpp once, 15-20 minutes), or pick a transformers model"
        ) from exc
    return llama_cpp


def warm_up() -> None:
    """Import llama.cpp and route its log into the worker log (its errors name what is wrong)."""
    global _log_callback
    if _log_callback is not None:
        return
    llama_cpp = _llama_cpp()

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, _user_data) -> None:
        line = text.decode("utf-8", "replace").strip()
        if level == GGML_LOG_ERROR and line:  # the reason a load failed, shown to the user
            _recent_errors.append(line)
        if level in (GGML_LOG_WARN, GGML_LOG_ERROR) and line:
            log.log(logging.ERROR if level == GGML_LOG_ERROR else logging.WARNING, "llama.cpp: %s", line)

    _log_callback = on_log
    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))


# --------------------------------------------------------------------------- checks


def check_gguf(path: Path, need_template: bool = True) -> GGUFFootprint:
    """Refuse, before loading, a GGUF that cannot be a chat model, naming why; returns its footprint.
    Whether llama.cpp knows the architecture only llama.cpp can say: ``load_llama`` reports it.
    Checked once per version of the file (two header walks cost ~0.1 s, a quarter of a first token).
    A draft model needs no chat template: only the target's renders the conversation."""
    from models.gguf_header import require_gguf

    stat = path.stat()
    version = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    footprint = _checked.get(version)
    if footprint is None:
        require_gguf(path)
        footprint = read_gguf_footprint(path)
        if footprint.layers <= 0 or not footprint.block_bytes or not any(footprint.block_bytes):
            raise BadInput(f"{path.name} holds no transformer layers: not a chat model GGUF")
        _checked[version] = footprint
    if need_template and not footprint.chat_template.strip():
        raise BadInput(
            f"{path.name} has no chat template (tokenizer.chat_template): it is a base model or was "
            "converted without one; pick an instruct/chat GGUF"
        )
    return footprint


# --------------------------------------------------------------------------- the loaded model


def _llama_class():
    from llama_cpp import Llama

    class HearthLlama(Llama):
        """llama-cpp-python's ``Llama`` that counts target passes and verifies drafts in one batch.

        With a draft model set after loading, a verification batch (the last token and its drafts)
        needs logits at every position; the prompt itself only at its last. Nothing is copied out to
        ``scores`` (the sampler reads llama.cpp's logits in place), so no n_ctx x vocab buffer.
        """

        passes = 0

        def eval(self, tokens):
            self.passes += 1
            if self.draft_model is None or len(tokens) > PROMPT_LOOKUP_TOKENS + 1:
                return super().eval(tokens)
            self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
            self._batch.set_batch(batch=tokens, n_past=self.n_tokens, logits_all=True)
            self._ctx.decode(self._batch)
            self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
            self.n_tokens += len(tokens)
            self._requires_eval = False

    return HearthLlama


def load_llama(path: Path, footprint: GGUFFootprint, n_ctx: int, gpu_layers: int):
    """One llama.cpp model and context; a file llama.cpp refuses becomes a ``BadInput`` naming why."""
    warm_up()
    count = threads()
    _recent_errors.clear()
    try:
        return _llama_class()(
            model_path=str(path),
            n_ctx=n_ctx,
            n_gpu_layers=gpu_layers,
            n_threads=count,
            n_threads_batch=count,
            flash_attn=FLASH_ATTENTION,
            last_n_tokens_size=n_ctx,  # the repetition penalty sees the whole answer, as transformers'
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        why = "; ".join(_recent_errors) or str(exc)
        if "unknown model architecture" in why:
            raise BadInput(
                f"{path.name}: its architecture {footprint.architecture!r} is not one this llama.cpp "
                f"(llama-cpp-python {_llama_cpp().__version__}) runs; llama, qwen2, gemma3, phi3, "
                "mistral and about a hundred others are"
            ) from exc
        raise BadInput(
            f"llama.cpp could not load {path.name} ({footprint.architecture}, {footprint.file_type}): "
            f"{why}. The file is damaged or truncated, or needs a newer llama.cpp"
        ) from exc


class GGUFTokenizer:
    """What ``fit_prompt`` and ``AnswerStreamer`` need, on llama.cpp's own vocabulary and the GGUF's
    chat template (rendered as llama-cpp-python's chat completion does: the ids transformers gives)."""

    def __init__(self, slot: GGUFSlot) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.slot = slot
        llama = slot.llama
        eos, bos = llama.token_eos(), llama.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=slot.footprint.chat_template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        )

    @property
    def chat_template(self) -> str:
        return self.slot.footprint.chat_template

    def apply_chat_template(
        self, messages, add_generation_prompt=True, tokenize=True, tools=None
    ) -> list[int]:
        from jinja2.exceptions import TemplateError

        try:
            text = self.formatter(messages=messages, tools=tools).prompt
        except ValueError as exc:  # the template's raise_exception: e.g. no system role
            raise TemplateError(str(exc)) from exc
        return self.slot.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def encode(self, text: str) -> list[int]:
        """Plain text as the model reads it, BOS first when the model has one."""
        return self.slot.llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        raw = self.slot.llama.detokenize(list(ids), special=not skip_special_tokens)
        return raw.decode("utf-8", "replace")


class GGUFSlot:
    """One GGUF kept warm in the worker cache; reloaded when the granted tier's GPU layers change."""

    def __init__(self, path: Path, footprint: GGUFFootprint, n_ctx: int) -> None:
        self.path, self.footprint, self.n_ctx = path, footprint, n_ctx
        self.llama: Any = None
        """The loaded ``llama_cpp.Llama`` (None until the first lease's tier loads it)."""
        self.gpu_layers: int | None = None
        self.epoch = 0
        """Bumped at every load: a decode loop on an older model restarts on the new one."""
        self.reload_s = 0.0
        self._tokenizer: GGUFTokenizer | None = None

    @property
    def tokenizer(self) -> GGUFTokenizer:
        if self._tokenizer is None:
            self._tokenizer = GGUFTokenizer(self)
        return self._tokenizer

    def ensure(self, plan: GGUFPlan, on_status=lambda _: None) -> None:
        if self.llama is not None and self.gpu_layers == plan.gpu_layers:
            return
        self.unload()
        where = "CPU" if plan.gpu_layers == 0 else f"{plan.name} layers"
        on_status(f"Loading {self.path.name} on llama.cpp ({self.footprint.file_type}, {where}) ...")
        start = time.perf_counter()
        self.llama = load_llama(self.path, self.footprint, self.n_ctx, plan.gpu_layers)
        self.reload_s = time.perf_counter() - start
        self.gpu_layers = plan.gpu_layers
        self.epoch += 1

    def unload(self) -> None:
        """Free the weights, KV cache and compute buffers now (llama.cpp frees device memory at once)."""
        llama, self.llama, self.gpu_layers = self.llama, None, None
        if llama is not None:
            llama.close()

    def is_end_of_turn(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llama._model.vocab, token))


def prepare_gguf(ctx: JobContext, request: ChatRequest, path: Path) -> GGUFSlot:
    """Check, lease and load the GGUF; returns its slot, loaded at the granted tier."""
    footprint = check_gguf(path)
    n_ctx = gguf_context(footprint, request.context_length)
    key = f"chat:{request.model}:gguf:{n_ctx}"
    slot = ctx.cache.get_or_load(key, lambda: GGUFSlot(path, footprint, n_ctx))
    lease_gguf(ctx, key, slot, footprint, n_ctx)
    return slot


def prepare_draft(ctx: JobContext, request: ChatRequest, target: GGUFSlot) -> GGUFSlot:
    """The draft model ``request.assisted`` names: a GGUF with the target's vocabulary, leased and
    loaded beside it with the target's context."""
    from models.chat import gguf_file

    path = gguf_file(request.assisted, allow_pickle=request.allow_pickle, on_status=ctx.status)
    if path is None:
        raise BadInput(
            f"the draft model for {target.path.name} must be a GGUF too (llama.cpp verifies its "
            f"tokens): {request.assisted!r} is a transformers model; pick a smaller GGUF of the same "
            "family, or prompt lookup"
        )
    footprint = check_gguf(path, need_template=False)
    n_ctx = gguf_context(footprint, target.n_ctx)
    key = f"chat-draft:{path}:gguf:{n_ctx}"
    slot = ctx.cache.get_or_load(key, lambda: GGUFSlot(path, footprint, n_ctx))
    lease_gguf(ctx, key, slot, footprint, n_ctx)
    same_vocabulary(target, slot)
    return slot


def same_vocabulary(target: GGUFSlot, draft: GGUFSlot) -> None:
    """Refuse a draft whose token ids mean other text: its proposals would be verified as nonsense
    (still correct, never accepted) and cost a draft pass each."""
    ours, theirs = target.llama._model, draft.llama._model
    size = ours.n_vocab()
    sample = range(0, size, max(1, size // 512))
    if theirs.n_vocab() != size or any(ours.token_get_text(i) != theirs.token_get_text(i) for i in sample):
        raise BadInput(
            f"{draft.path.name} cannot draft for {target.path.name}: their vocabularies differ "
            f"({theirs.n_vocab()} and {size} tokens); a draft model must come from the same family"
        )


def lease_gguf(ctx: JobContext, key: str, slot, footprint: GGUFFootprint, n_ctx: int) -> None:
    """Lease memory for ``slot`` (anything with ``ensure(plan, status)`` and ``unload()``) at the
    tiers its GGUF allows, and load it at the granted one."""
    plans = gguf_plans(footprint, n_ctx, gpu_offload())
    tiers = [
        MemoryTier(
            name=plan.name,
            bytes=plan.bytes,
            est_step_s=plan.est_step_s,
            apply=partial(slot.ensure, plan, ctx.status),
        )
        for plan in plans
    ]
    # Never in use for a revoke's purposes: a decode loop reloads at the next token (see above).
    tier = ctx.lease_memory(key, tiers, on_release=slot.unload)
    slot.ensure(next(p for p in plans if p.name == tier.name), ctx.status)


# --------------------------------------------------------------------------- decoding


def sampling(request: ChatRequest) -> dict:
    """llama.cpp sampler settings meaning what Hearth's do on transformers (no min-p, no typical-p)."""
    common = {"repeat_penalty": request.repetition_penalty, "min_p": 0.0, "typical_p": 1.0}
    if request.temperature <= 0:
        return common | {"temp": 0.0, "top_k": 0, "top_p": 1.0}
    return common | {"temp": request.temperature, "top_k": request.top_k, "top_p": request.top_p}


def seed32(seed: int) -> int:
    """llama.cpp seeds are 32-bit and 0xFFFFFFFF means "random": fold Hearth's 63-bit seed below it."""
    return seed % 0xFFFFFFFF


class DraftModel:
    """Speculative decoding with a second, smaller GGUF (Leviathan et al. 2023): the draft proposes
    ``DRAFT_TOKENS`` greedy tokens, the target verifies them in one batch and keeps the longest
    prefix it would have chosen itself, plus its own next token; so the answer is the target's.

    The draft keeps its own KV cache in step with the target's tokens: llama-cpp-python's
    ``generate`` reuses the longest common prefix, so each call evaluates only the tokens the
    target accepted since the last one. A draft unloaded by a revoke proposes nothing (plain
    decoding goes on) until its lease is granted again.
    """

    def __init__(self, slot: GGUFSlot) -> None:
        self.slot = slot
        self.proposed = 0
        self.passes = 0

    def __call__(self, input_ids, /, **kwargs):
        import numpy as np

        llama = self.slot.llama
        room = self.slot.n_ctx - len(input_ids) - 1
        if llama is None or room < 1:
            return np.array([], dtype=np.intc)
        drafted = []
        before = llama.passes
        tokens = llama.generate(input_ids.tolist(), reset=True, temp=0.0, top_k=1, repeat_penalty=1.0)
        try:
            for token in tokens:
                if self.slot.is_end_of_turn(token):
                    break
                drafted.append(token)
                if len(drafted) >= min(DRAFT_TOKENS, room):
                    break
        finally:
            tokens.close()
            self.passes += llama.passes - before
        self.proposed += len(drafted)
        return np.array(drafted, dtype=np.intc)


class PromptLookup:
    """``LlamaPromptLookupDecoding`` that counts what it proposes."""

    def __init__(self) -> None:
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.draft = LlamaPromptLookupDecoding(
            max_ngram_size=PROMPT_LOOKUP_NGRAM, num_pred_tokens=PROMPT_LOOKUP_TOKENS
        )
        self.proposed = 0

    def __call__(self, input_ids, /, **kwargs):
        tokens = self.draft(input_ids, **kwargs)
        self.proposed += len(tokens)
        return tokens


def generate_gguf(
    ctx: JobContext,
    slot: GGUFSlot,
    request: ChatRequest,
    prompt_ids,
    max_new: int,
    sink,
    draft: GGUFSlot | None = None,
) -> dict:
    """Decode up to ``max_new`` tokens, streaming each; returns the answer's metrics."""
    from workers.jobs.chat import AnswerStreamer, answer_metrics

    streamer = AnswerStreamer(slot.tokenizer, ctx, sink, tuple(request.stop))
    lookup = (
        DraftModel(draft)
        if draft is not None
        else PromptLookup()
        if request.assisted == "prompt_lookup"
        else None
    )
    passes, first_epoch = 0, slot.epoch
    start = time.perf_counter()
    ended = False
    while not ended and not streamer.stopped and len(streamer.tokens) < max_new:
        llama, epoch = slot.llama, slot.epoch
        llama.draft_model = lookup
        llama.set_seed(seed32(request.seed + len(streamer.tokens)))
        before = llama.passes
        if slot.footprint.float_matrices:
            # No KV cache from another answer (see GGUFFootprint): the same request gives the same
            # answer, the seed's promise and greedy's. The cost: the prompt is prefilled whole.
            llama.reset()
        tokens = llama.generate(list(prompt_ids) + streamer.tokens, reset=True, **sampling(request))
        try:
            for token in tokens:
                if slot.is_end_of_turn(token):
                    ended = True
                    break
                streamer.push(token)  # conversation, TextDelta, then ctx.step: cancel and revokes
                if streamer.stopped or len(streamer.tokens) >= max_new:
                    break
                if slot.epoch != epoch:  # reloaded under a revoke: go on from every token so far
                    break
        finally:
            tokens.close()
            passes += llama.passes - before
    streamer.finish()
    metrics = answer_metrics(streamer, start, time.perf_counter(), len(prompt_ids), max_new)
    metrics["target_passes"] = passes
    if slot.epoch != first_epoch:
        metrics["reloads"] = slot.epoch - first_epoch
    if lookup is not None:
        accepted = max(0, len(streamer.tokens) - passes)
        metrics["acceptance_rate"] = accepted / lookup.proposed if lookup.proposed else 0.0
        metrics["tokens_per_target_pass"] = len(streamer.tokens) / max(passes, 1)
        metrics["draft_tokens_proposed"] = lookup.proposed
    if isinstance(lookup, DraftModel):
        metrics["draft_passes"] = lookup.passes
    return metrics


def run_gguf(ctx: JobContext, request: ChatRequest, path: Path) -> None:
    """One assistant turn from a GGUF on llama.cpp (``workers.jobs.chat.run`` hands GGUFs here)."""
    from workers.jobs.chat import AnswerSink, fit_prompt

    slot = prepare_gguf(ctx, request, path)
    draft = prepare_draft(ctx, request, slot) if request.assisted not in ("", "prompt_lookup") else None
    if request.quant != "auto":
        ctx.status(
            f"{path.name} runs as shipped ({slot.footprint.file_type}) on llama.cpp: the quantization "
            f"setting ({request.quant}) applies to transformers models"
        )
    prompt_ids, max_new = fit_prompt(
        slot.tokenizer,
        request.messages,
        slot.n_ctx,
        request.max_new_tokens,
        ctx.status,
        request.raw_prompt,
        request.tools,
    )
    with AnswerSink.open(ctx, request) as sink:
        stats = generate_gguf(ctx, slot, request, prompt_ids, max_new, sink, draft)
    stats["gpu_layers"] = float(slot.gpu_layers if slot.gpu_layers is not None else 0)
    for name, value in stats.items():
        ctx.metric(name, value)
