"""Chat jobs: one assistant turn, streamed token by token into the GUI/CLI and the conversation store.

A GGUF (the embedded SmolLM2, or a .gguf file) runs on llama.cpp as shipped: ``workers/chat_llama.py``,
which reuses this module's context fitting, streamer and sink. Everything else (hub ids, transformers
folders) runs here on transformers with bitsandbytes. Order of work: validate, lease memory for the model (the granted tier *is* the quantization when
the user picked "auto"), fit the conversation into the context window (oldest turns dropped,
the user told), then ``generate`` with a streamer that, for every token, writes the text to the
conversation (durably), sends a ``TextDelta`` and calls ``ctx.step`` (cancel + revoke point).
Assisted decoding (a draft model, or prompt lookup) is verified by the target model, so greedy
output is identical to plain decoding (Leviathan et al.; SpecExec and Dovetail build on it).
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from models.chat_memory import est_token_seconds, estimate_bytes, shape_from_config
from workers.context import JobContext, MemoryTier
from workers.conversations import ConversationStore
from workers.errors import BadInput, MissingModel
from workers.protocol import ChatMessage, ChatRequest, EmbedRequest

PROMPT_LOOKUP_TOKENS = 10
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def warm_up() -> None:
    """Load llama.cpp before the worker says Hello. transformers (about 3 s of imports) waits for
    the first job that is not a GGUF: ``hearth run chat`` on a GGUF answers that much sooner."""
    from workers import chat_llama

    with contextlib.suppress(MissingModel):  # no llama.cpp: GGUF jobs say so, the rest still run
        chat_llama.warm_up()


def run(ctx: JobContext, request: ChatRequest | EmbedRequest) -> None:
    from models.chat import gguf_file

    if isinstance(request, EmbedRequest):
        from workers.chat_embed import run_embed

        return run_embed(ctx, request)
    request.validate()
    if request.conversation_id:
        _check_conversation(request.conversation_id)
    gguf = gguf_file(request.model, allow_pickle=request.allow_pickle, on_status=ctx.status)
    if gguf is not None:
        from workers.chat_llama import run_gguf

        return run_gguf(ctx, request, gguf)
    slots = [prepare_model(ctx, request.model, request.quant, request.allow_pickle, role="chat")]
    if request.assisted and request.assisted != "prompt_lookup":
        slots.append(prepare_model(ctx, request.assisted, "auto", request.allow_pickle, role="draft"))
    chat, draft = slots[0].loaded, (slots[1].loaded if len(slots) > 1 else None)
    limit = request.context_length or chat.context_limit
    prompt_ids, max_new = fit_prompt(
        chat.tokenizer,
        request.messages,
        limit,
        request.max_new_tokens,
        ctx.status,
        request.raw_prompt,
        request.tools,
    )
    with contextlib.ExitStack() as busy, AnswerSink.open(ctx, request) as sink:
        for slot in slots:
            busy.enter_context(slot.busy())
        stats = generate_answer(ctx, chat, draft, request, prompt_ids, max_new, sink)
    for name, value in stats.items():
        ctx.metric(name, value)


def _check_conversation(conversation_id: str) -> None:
    from workers.safe_names import safe_name

    safe_name("conversation id", conversation_id)  # API clients send it too; never trust its shape
    store = ConversationStore()
    try:
        store.get(conversation_id)
    finally:
        store.close()


# --------------------------------------------------------------------------- model and lease


class ChatModelSlot:
    """One model kept warm in the worker cache, reloaded only when its quantization changes."""

    def __init__(self, spec: str, allow_pickle: bool) -> None:
        self.spec = spec
        self.allow_pickle = allow_pickle
        self.loaded: Any = None
        """The loaded ``LoadedChatModel`` (weights and tokenizer), None until a lease's tier loads it."""
        self.generating = False

    def ensure(self, quant: str, on_status=lambda _: None):
        from models.chat import load_chat_model

        if self.generating:  # never swap weights under a running generate (revokes wait: ``in_use``)
            return self.loaded
        if self.loaded is None or self.loaded.quant != quant:
            self.unload()
            self.loaded = load_chat_model(
                self.spec, quant, allow_pickle=self.allow_pickle, on_status=on_status
            )
            _warm(self.loaded)
        return self.loaded

    @contextlib.contextmanager
    def busy(self):
        """While generating, an arbiter revoke cannot swap or drop the weights under generate()."""
        self.generating = True
        try:
            yield
        finally:
            self.generating = False

    def unload(self) -> None:
        if self.loaded is None or self.generating:
            return
        device = self.loaded.device
        self.loaded = None
        gc.collect()
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()


def _warm(chat) -> None:
    """One short forward right after loading: first-call kernel selection and allocations belong to
    the load, not to the first answer's time to first token."""
    import torch

    ids = torch.tensor([[chat.tokenizer.eos_token_id or 0] * 8], device=chat.model.device)
    with torch.no_grad():
        chat.model(input_ids=ids)


def auto_quants(device: str) -> list[str]:
    """Tiers for "auto", fastest and largest first; the arbiter grants the first that fits."""
    if device == "cuda":
        return ["bf16", "int8", "nf4"]
    return ["fp32", "bf16", "nf4"]


def prepare_model(ctx: JobContext, spec: str, quant: str, allow_pickle: bool, role: str):
    """Resolve, lease and load ``spec``; returns its slot, loaded in the granted quantization."""
    import json

    from models.chat import pick_device, resolve_folder

    folder = resolve_folder(spec, allow_pickle=allow_pickle, on_status=ctx.status)
    shape = shape_from_config(json.loads((folder / "config.json").read_text()))
    device = pick_device()
    key = f"{role}:{spec}:{quant}"
    slot = ctx.cache.get_or_load(key, lambda: ChatModelSlot(spec, allow_pickle))
    names = auto_quants(device) if quant == "auto" else [quant]
    tiers = [
        MemoryTier(
            name=name,
            bytes=estimate_bytes(shape, name),
            est_step_s=est_token_seconds(shape, name, device == "cuda"),
            apply=partial(slot.ensure, name, ctx.status),
        )
        for name in names
    ]
    tier = ctx.lease_memory(key, tiers, on_release=slot.unload, in_use=lambda: slot.generating)
    slot.ensure(tier.name, ctx.status)
    return slot


# --------------------------------------------------------------------------- context window


def _as_dicts(messages) -> list[dict]:
    """Messages as chat templates read them; a call's arguments as an object (templates ``tojson`` them)."""
    rows = []
    for m in messages:
        row: dict = {"role": m.role, "content": m.content}
        if m.tool_calls:
            row["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c)}}
                for c in m.tool_calls
            ]
        if m.tool_call_id:
            row["tool_call_id"] = m.tool_call_id
        rows.append(row)
    return rows


def _arguments(call) -> object:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def template_tools(tokenizer, tools: str) -> list[dict] | None:
    """The request's tools for the template, or ``BadInput`` when the template cannot show them."""
    from workers.protocol import tool_definitions

    if not tools:
        return None
    template = tokenizer.chat_template
    template = " ".join(template.values()) if isinstance(template, dict) else (template or "")
    if "tools" not in template:
        raise BadInput(
            "this model's chat template has no tool support: it would not see the tools; use a model "
            "whose template handles tools (Qwen 2.5/3, Llama 3.1+, Mistral, Hermes ...)",
            field="tools",
        )
    return tool_definitions(tools)


def encode_chat(tokenizer, messages, raw: bool = False, tools: str = "") -> list[int]:
    """Token ids of ``messages`` through the model's own chat template, ready for the answer;
    ``raw``: the one message's text as it is, to be continued (a legacy text completion)."""
    from jinja2.exceptions import TemplateError

    if raw:
        return list(tokenizer.encode(messages[-1].content))
    extra = {"tools": template_tools(tokenizer, tools)} if tools else {}
    try:
        ids = tokenizer.apply_chat_template(
            _as_dicts(messages), add_generation_prompt=True, tokenize=True, **extra
        )
    except TemplateError:  # some templates refuse a system role: fold it into the first user turn
        ids = tokenizer.apply_chat_template(
            _as_dicts(_fold_system(messages)), add_generation_prompt=True, tokenize=True, **extra
        )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def _fold_system(messages) -> list[ChatMessage]:
    system = "\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if system and rest and rest[0].role == "user":
        rest[0] = ChatMessage(role="user", content=f"{system}\n\n{rest[0].content}")
    return rest


def fit_prompt(
    tokenizer, messages, limit: int, max_new_tokens: int, status, raw: bool = False, tools: str = ""
) -> tuple[list[int], int]:
    """Drop the oldest turns until prompt + answer fit in ``limit`` tokens; returns (ids, answer budget)."""
    system = [m for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    reserve = min(max_new_tokens, limit // 2)
    ids, dropped = encode_chat(tokenizer, system + turns, raw, tools), 0
    while len(ids) + reserve > limit and any(m.role == "user" for m in turns[1:]):
        turns.pop(0)
        dropped += 1
        while turns and turns[0].role != "user":
            turns.pop(0)
            dropped += 1
        ids = encode_chat(tokenizer, system + turns, raw, tools)
    if len(ids) >= limit:
        raise BadInput(
            f"your message is {len(ids)} tokens but the model's context window is {limit} tokens: "
            "shorten it or start a new conversation"
        )
    if dropped:
        status(
            f"The conversation is longer than the model's context window ({limit} tokens): "
            f"the {dropped} oldest message(s) were left out of this answer."
        )
    budget = min(max_new_tokens, limit - len(ids))
    if budget < max_new_tokens:
        status(f"The answer is limited to {budget} tokens to fit the context window ({limit} tokens).")
    return ids, budget


# --------------------------------------------------------------------------- streaming


MAX_PENDING_DELTAS = 4


class AnswerSink:
    """Where streamed text goes: the conversation first (durable), then the GUI/CLI.

    With a conversation, a writer thread creates the assistant's message (while the prompt is
    prefilled: its commit is off the way to the first token), then appends each delta and only
    then sends it, so whatever is shown is stored. While one write commits, the decoder goes on;
    deltas that arrive meanwhile share the next write (group commit). At most
    ``MAX_PENDING_DELTAS`` wait, so a killed worker loses no text it showed and at most twice that
    many tokens it never showed. The streaming commits are synced to disk at the answer's end
    (see ``workers/conversations.py``).
    """

    def __init__(self, ctx: JobContext, request: ChatRequest | None = None) -> None:
        self.ctx, self.request = ctx, request
        self.message_id = 0
        """The assistant message's row once the writer created it (0: none, or not yet)."""
        self._pending: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, ctx: JobContext, request: ChatRequest):
        sink = cls(ctx, request if request.conversation_id else None)
        if sink.request is not None:
            sink._writer = threading.Thread(target=sink._write_loop, name="answer-writer", daemon=True)
            sink._writer.start()
        state = "stopped"
        try:
            yield sink
            sink.close()
            state = "done"
        finally:
            sink.close(raise_error=False)  # a stopped answer keeps every token decoded
            if sink.message_id:
                store = ConversationStore()
                try:
                    store.set_message_state(sink.message_id, state)  # FULL: syncs the answer too
                finally:
                    store.close()

    def __call__(self, delta: str) -> None:
        if self._writer is None:
            self.ctx.text(delta)
            return
        with self._changed:
            while len(self._pending) >= MAX_PENDING_DELTAS and self._error is None:
                self._changed.wait()
            if self._error is not None:
                raise self._error
            self._pending.append(delta)
            self._changed.notify_all()

    def close(self, raise_error: bool = True) -> None:
        """Write and send what is pending, then stop the writer; its failure is raised here."""
        if self._writer is not None:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._writer.join()
        if raise_error and self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        assert self.request is not None  # a writer runs only for an answer with a conversation
        store = ConversationStore(streaming=True)  # its own connection: SQLite's are per thread
        try:
            self.message_id = store.add_message(
                self.request.conversation_id,
                "assistant",
                "",
                state="streaming",
                job_id=self.ctx.job_id,
                model=self.request.model,
            )
            while True:
                with self._changed:
                    while not self._pending and not self._closed:
                        self._changed.wait()
                    if not self._pending:
                        return
                    text = "".join(self._pending)
                    self._pending.clear()
                    self._changed.notify_all()
                store.append_to_message(self.message_id, text)
                self.ctx.text(text)
        except Exception as exc:  # noqa: BLE001 - handed to the job thread, which fails the job
            with self._changed:
                self._error = exc
                self._pending.clear()
                self._changed.notify_all()
        finally:
            store.close()


@dataclass
class AnswerStreamer:
    """A transformers streamer: decodes new tokens, holds back partial characters and possible stop
    sequences, emits the rest, and marks a step per token (where a Stop takes effect)."""

    tokenizer: Any
    """A transformers tokenizer or ``GGUFTokenizer`` (both decode token ids)."""
    ctx: JobContext
    sink: Any
    """Called with each piece of text the answer grows by."""
    stops: tuple[str, ...] = ()
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    shown: str = ""
    prefix_offset: int = 0
    read_offset: int = 0
    stopped: bool = False
    prompt_seen: bool = False
    first_token_at: float = 0.0

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():  # assisted decoding hands over several at once
            if self.stopped:
                return
            self.push(token)

    def push(self, token: int) -> None:
        """One new token: shown (minus what may still become a stop sequence), then a step."""
        if not self.tokens:
            self.first_token_at = time.perf_counter()
        self.tokens.append(int(token))
        self._emit(final=False)
        self.ctx.step(len(self.tokens))

    def end(self) -> None:
        """Called by generate(); the final flush happens in ``finish`` so a cancel keeps its text."""

    def finish(self) -> None:
        self._emit(final=True)

    def should_stop(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool, device=input_ids.device)

    def _decode_new(self, final: bool) -> None:
        """Incremental detokenization (as in TGI and vLLM): decode a short window, so a token costs O(1)."""
        decode = self.tokenizer.decode
        window = decode(self.tokens[self.prefix_offset :], skip_special_tokens=True)
        if window.endswith("\ufffd") and not final:  # half a multi-byte character: wait for the rest
            return
        prefix = decode(self.tokens[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        self.text += window[len(prefix) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)

    def _emit(self, final: bool) -> None:
        self._decode_new(final)
        text = self.text
        since = max(0, len(self.shown) - max((len(s) for s in self.stops), default=0))
        cut = min((i for i in (text.find(s, since) for s in self.stops if s) if i >= 0), default=-1)
        if cut >= 0:
            text, self.stopped, final = text[:cut], True, True
        if not final:
            text = text[: len(text) - _stop_prefix_length(text, self.stops)]
        if len(text) > len(self.shown) and text.startswith(self.shown):
            delta, self.shown = text[len(self.shown) :], text
            self.sink(delta)


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop sequence."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


# --------------------------------------------------------------------------- generation


def sampling_kwargs(request: ChatRequest) -> dict:
    if request.temperature <= 0:
        return {"do_sample": False, "repetition_penalty": request.repetition_penalty}
    return {
        "do_sample": True,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "repetition_penalty": request.repetition_penalty,
    }


def end_of_turn_ids(chat) -> list[int]:
    vocab = chat.tokenizer.get_vocab()
    ids = {vocab[token] for token in END_OF_TURN_TOKENS if token in vocab}
    configured = chat.model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.add(chat.tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def assisted_kwargs(request: ChatRequest, chat, draft) -> dict:
    if request.assisted == "prompt_lookup":
        return {"prompt_lookup_num_tokens": PROMPT_LOOKUP_TOKENS}
    if draft is None:
        return {}
    kwargs = {"assistant_model": draft.model}
    if draft.tokenizer.get_vocab() != chat.tokenizer.get_vocab():  # universal assisted decoding
        kwargs |= {"tokenizer": chat.tokenizer, "assistant_tokenizer": draft.tokenizer}
    return kwargs


def generate_answer(ctx, chat, draft, request: ChatRequest, prompt_ids, max_new: int, sink) -> dict:
    import torch
    from transformers import StoppingCriteriaList

    streamer = AnswerStreamer(chat.tokenizer, ctx, sink, tuple(request.stop))
    input_ids = torch.tensor([prompt_ids], device=chat.model.device)
    eos = end_of_turn_ids(chat)
    torch.manual_seed(request.seed)
    start = time.perf_counter()
    with torch.no_grad():
        chat.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([streamer.should_stop]),
            eos_token_id=eos,
            pad_token_id=chat.tokenizer.pad_token_id or eos[0],
            **sampling_kwargs(request),
            **assisted_kwargs(request, chat, draft),
        )
    streamer.finish()
    return answer_metrics(streamer, start, time.perf_counter(), len(prompt_ids), max_new)


def answer_metrics(
    streamer: AnswerStreamer, start: float, end: float, prompt_tokens: int, max_new: int
) -> dict:
    new_tokens = len(streamer.tokens)
    # The answer was cut by the token limit rather than ended by the model or a stop string
    # (what OpenAI's finish_reason "length" says).
    cut = float(new_tokens >= max_new and not streamer.stopped)
    metrics = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "hit_token_limit": cut}
    if new_tokens:
        ttft = streamer.first_token_at - start
        metrics |= {"ttft_s": ttft, "prefill_tok_s": prompt_tokens / max(ttft, 1e-9)}
    if new_tokens > 1:
        metrics["decode_tok_s"] = (new_tokens - 1) / max(end - streamer.first_token_at, 1e-9)
    return metrics
