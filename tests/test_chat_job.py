"""The chat job through the real worker runtime (in-process, fake pipe and memory grants) on a tiny
seeded Llama: streaming, stop, quantizations, GGUF, assisted decoding, context window, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.chat import save_tiny_chat_model
from workers.codec import decode, encode
from workers.conversations import ConversationStore
from workers.errors import ErrorKind
from workers.protocol import (
    Cancelled,
    ChatMessage,
    ChatRequest,
    Failed,
    Finished,
    JobStatus,
    Priority,
    Submit,
    TextDelta,
    WorkerKind,
)
from workers.runtime import WorkerRuntime

pytestmark = pytest.mark.timeout(240)
PROMPT = "Write a short poem about the sea."


class Wire:
    """The worker's end of the pipe: events are encoded and decoded exactly as on the real wire."""

    def __init__(self) -> None:
        self.events: list = []
        self.on_event = None

    def send_bytes(self, data: bytes) -> None:
        event = decode(data)
        self.events.append(event)
        if self.on_event:
            self.on_event(event)


class Grants:
    """Stands in for the arbiter: grants the tier named ``grant`` (or the first), records requests."""

    def __init__(self, grant: str = "") -> None:
        self.grant = grant
        self.requests: list[tuple[str, list[str]]] = []

    def __call__(self, ctx, key, tiers, on_release, can_grow=False, in_use=None):
        self.requests.append((key, [t.name for t in tiers]))
        tier = next((t for t in tiers if t.name == self.grant), tiers[0])
        tier.apply()
        return tier


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "model", seed=0, context=256)


@pytest.fixture(scope="module")
def draft_folder(tmp_path_factory) -> Path:
    return save_tiny_chat_model(
        tmp_path_factory.mktemp("tiny-draft") / "model", seed=1, context=256, hidden=32
    )


@pytest.fixture
def worker():
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    runtime.lease_memory = Grants()
    return runtime, wire


def chat(model: str, text: str = PROMPT, **fields) -> ChatRequest:
    messages = fields.pop("messages", (ChatMessage(role="user", content=text),))
    # Plain greedy decoding (not the app's sampling defaults): tests compare exact answers.
    fields = {"temperature": 0.0, "repetition_penalty": 1.0, **fields}
    return ChatRequest(messages=messages, model=str(model), **fields)


def run_job(runtime, wire, request, job_id: str = "job-1") -> list:
    runtime.run_job(Submit(job_id=job_id, request=request, priority=Priority.interactive))
    return [e for e in wire.events if getattr(e, "job_id", None) == job_id]


def answer_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def end_of(events):
    return events[-1]


def reference_greedy(folder: Path, text: str = PROMPT, max_new_tokens: int = 24) -> str:
    """Plain transformers generate on the same weights: what the streamed answer must equal."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_streamed_deltas_arrive_in_order_and_add_up_to_the_answer(worker, tiny_folder):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=24))
    assert isinstance(end_of(events), Finished), end_of(events)
    answer = answer_of(events)
    assert len(answer) > 5
    assert answer == reference_greedy(tiny_folder, max_new_tokens=24)
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("TextDelta") < kinds.index("Finished")
    metrics = {m.name: m.value for m in end_of(events).metrics}
    assert metrics["new_tokens"] > 0 and metrics["prompt_tokens"] > 10
    assert metrics["ttft_s"] > 0 and metrics["decode_tok_s"] > 0


def test_stop_mid_answer_ends_cancelled_and_keeps_the_partial_message(worker, tiny_folder):
    runtime, wire = worker
    store = ConversationStore()
    conv = store.create("poem")
    store.add_message(conv.id, "user", PROMPT)

    def stop_after_three_deltas(event):
        if isinstance(event, TextDelta) and sum(isinstance(e, TextDelta) for e in wire.events) == 3:
            runtime._current[1].set()  # what the reader thread does when a Cancel arrives

    wire.on_event = stop_after_three_deltas
    events = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=40, conversation_id=conv.id))
    assert isinstance(end_of(events), Cancelled)
    partial = answer_of(events)
    assert partial
    stored = store.messages(conv.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == partial
    assert stored[1].state == "stopped"
    assert len(partial) < len(reference_greedy(tiny_folder, max_new_tokens=40))


def test_answer_is_written_to_the_conversation_as_it_streams(worker, tiny_folder):
    runtime, wire = worker
    store = ConversationStore()
    conv = store.create("poem")
    seen_in_store: list[str] = []

    def look_in_store(event):
        if isinstance(event, TextDelta):  # the store already holds every delta the GUI is shown
            reader = ConversationStore()  # deltas are sent from the sink's writer thread
            seen_in_store.append(reader.message_for_job("job-1").content)
            reader.close()

    wire.on_event = look_in_store
    events = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=12, conversation_id=conv.id))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert seen_in_store == ["".join(deltas[: i + 1]) for i in range(len(deltas))]
    assert store.message_for_job("job-1").state == "done"


@pytest.mark.parametrize(
    "quant, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt"), ("bf16", "Linear")]
)
def test_quantized_load_paths(worker, tiny_folder, quant, layer):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_folder, quant=quant, max_new_tokens=8))
    assert isinstance(end_of(events), Finished), end_of(events)
    assert answer_of(events)
    slot = runtime.cache.get_or_load(f"chat:{tiny_folder}:{quant}", lambda: None)
    assert slot.loaded.quant == quant
    assert type(slot.loaded.model.model.layers[0].self_attn.q_proj).__name__ == layer


def test_auto_quantization_follows_the_granted_tier(worker, tiny_folder):
    runtime, wire = worker
    runtime.lease_memory = Grants(grant="nf4")
    events = run_job(runtime, wire, chat(tiny_folder, quant="auto", max_new_tokens=4))
    assert isinstance(end_of(events), Finished)
    key, offered = runtime.lease_memory.requests[0]
    assert offered[-1] == "nf4" and len(offered) > 1
    assert runtime.cache.get_or_load(key, lambda: None).loaded.quant == "nf4"


def test_int8_answers_like_full_precision(worker, tiny_folder):
    runtime, wire = worker
    full = answer_of(run_job(runtime, wire, chat(tiny_folder, quant="fp32", max_new_tokens=12), "a"))
    int8 = answer_of(run_job(runtime, wire, chat(tiny_folder, quant="int8", max_new_tokens=12), "b"))
    assert int8 == full


@pytest.mark.parametrize("assisted", ["prompt_lookup", "draft"])
def test_assisted_decoding_gives_the_greedy_answer(worker, tiny_folder, draft_folder, assisted):
    runtime, wire = worker
    plain = answer_of(run_job(runtime, wire, chat(tiny_folder, max_new_tokens=32), "plain"))
    helper = str(draft_folder) if assisted == "draft" else assisted
    fast = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=32, assisted=helper), "fast")
    assert isinstance(end_of(fast), Finished), end_of(fast)
    assert answer_of(fast) == plain


def test_stop_sequence_ends_the_answer_before_it(worker, tiny_folder):
    runtime, wire = worker
    full = answer_of(run_job(runtime, wire, chat(tiny_folder, max_new_tokens=24), "full"))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=24, stop=(stop,)), "cut")
    assert isinstance(end_of(cut), Finished)
    assert answer_of(cut) == full[: full.find(stop)]


def test_sampling_is_reproducible_with_a_seed(worker, tiny_folder):
    runtime, wire = worker
    req = {"temperature": 1.5, "top_p": 0.9, "top_k": 40, "max_new_tokens": 16}
    first = answer_of(run_job(runtime, wire, chat(tiny_folder, seed=7, **req), "a"))
    again = answer_of(run_job(runtime, wire, chat(tiny_folder, seed=7, **req), "b"))
    assert first == again and first


def test_long_conversation_drops_oldest_turns_and_says_so(worker, tiny_folder):
    runtime, wire = worker
    long_turns = []
    for i in range(6):
        long_turns += [
            ChatMessage(role="user", content=f"question {i}: " + "the capital of France " * 6),
            ChatMessage(role="assistant", content="Paris is the capital. " * 6),
        ]
    messages = (
        ChatMessage(role="system", content="Be brief."),
        *long_turns,
        ChatMessage(role="user", content="And the sea?"),
    )
    events = run_job(
        runtime, wire, chat(tiny_folder, messages=messages, context_length=128, max_new_tokens=16)
    )
    assert isinstance(end_of(events), Finished), end_of(events)
    notes = [e.message for e in events if isinstance(e, JobStatus)]
    assert any("oldest message(s) were left out" in note for note in notes)
    assert answer_of(events)


def test_a_single_message_longer_than_the_context_is_refused(worker, tiny_folder):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_folder, "sea " * 400, context_length=128))
    assert isinstance(end_of(events), Failed) and end_of(events).kind is ErrorKind.bad_input
    assert "context window" in end_of(events).message


def write_tiny_gguf(folder: Path, path: Path, chat_template: bool = True) -> Path:
    """Write the tiny Llama as a GGUF the way llama.cpp's converter does (q/k rows permuted)."""
    import json

    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    spec, c = json.loads((folder / "tokenizer.json").read_text()), model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    tokens = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    special = {a["id"] for a in spec["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    writer.add_token_merges([" ".join(pair) for pair in spec["model"]["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    if chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    weights = {k: v.float().numpy() for k, v in model.state_dict().items()}

    def permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.add_tensor("output.weight", weights["lm_head.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(c.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            w = weights[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                w = permute(w, c.num_attention_heads if gguf_name == "attn_q" else c.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_file_runs_on_llama_cpp_as_shipped_and_answers_like_the_original(worker, tiny_folder, tmp_path):
    pytest.importorskip("llama_cpp")
    runtime, wire = worker
    gguf_path = write_tiny_gguf(tiny_folder, tmp_path / "tiny.gguf")
    original = answer_of(run_job(runtime, wire, chat(tiny_folder, max_new_tokens=16), "a"))
    from_gguf = run_job(runtime, wire, chat(gguf_path, max_new_tokens=16), "b")
    assert isinstance(end_of(from_gguf), Finished), end_of(from_gguf)
    assert answer_of(from_gguf) == original
    from workers.paths import models_dir

    assert not any((models_dir() / "chat").glob("tiny-*")), "a GGUF is never converted"
    again = run_job(runtime, wire, chat(gguf_path, quant="nf4", max_new_tokens=4), "c")
    assert isinstance(end_of(again), Finished)
    assert any("runs as shipped (F32) on llama.cpp" in e.message for e in again if isinstance(e, JobStatus))
    from models.chat_memory import shape_for

    assert shape_for(str(gguf_path)) == shape_for(
        str(tiny_folder)
    )  # the GUI's estimate reads the GGUF header


def test_gguf_converter_still_makes_a_transformers_folder(tiny_folder, tmp_path):
    """Kept for a GGUF draft model next to a transformers target (drafts run on transformers)."""
    from models.chat import gguf_to_folder

    converted = gguf_to_folder(write_tiny_gguf(tiny_folder, tmp_path / "draft.gguf"))
    assert (converted / "model.safetensors").is_file() and not any(converted.parent.glob(".converting-*"))


def test_missing_model_path_is_a_clear_error(worker, tmp_path):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tmp_path / "no-such-model"))
    assert isinstance(end_of(events), Failed) and end_of(events).kind is ErrorKind.missing_model
    assert "not found" in end_of(events).message


def test_non_gguf_file_named_gguf_is_refused(worker, tmp_path):
    runtime, wire = worker
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip")
    events = run_job(runtime, wire, chat(fake))
    assert isinstance(end_of(events), Failed) and end_of(events).kind is ErrorKind.bad_input
    assert "not a GGUF file" in end_of(events).message


def test_pickle_weights_need_permission(worker, tiny_folder, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    runtime, wire = worker
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_folder, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    os.remove(pickled / "model.safetensors")
    refused = run_job(runtime, wire, chat(pickled, max_new_tokens=4), "a")
    assert isinstance(end_of(refused), Failed) and end_of(refused).kind is ErrorKind.bad_input
    assert "pickle" in end_of(refused).message
    single = run_job(runtime, wire, chat(pickled / "pytorch_model.bin", max_new_tokens=4), "b")
    assert isinstance(end_of(single), Failed) and "pickle" in end_of(single).message
    allowed = run_job(runtime, wire, chat(pickled, max_new_tokens=4, allow_pickle=True), "c")
    assert isinstance(end_of(allowed), Finished), end_of(allowed)


@pytest.mark.parametrize(
    "request_, problem",
    [
        (ChatRequest(messages=(ChatMessage(role="user", content="  "),)), "prompt is empty"),
        (ChatRequest(messages=(ChatMessage(role="user", content="hi"),), max_new_tokens=0), "max new tokens"),
    ],
)
def test_bad_requests_fail_before_any_model_loads(worker, request_, problem):
    runtime, wire = worker
    events = run_job(runtime, wire, request_)
    assert isinstance(end_of(events), Failed) and end_of(events).kind is ErrorKind.bad_input
    assert problem in end_of(events).message
    assert not runtime.lease_memory.requests


def test_unknown_conversation_fails_and_stores_nothing(worker, tiny_folder):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_folder, conversation_id="gone"))
    assert isinstance(end_of(events), Failed) and end_of(events).kind is ErrorKind.bad_input
    assert not runtime.lease_memory.requests


def test_new_request_fields_travel_over_the_wire():
    request = chat("m", stop=("\nUser:",), context_length=512, allow_pickle=True)
    assert decode(encode(request)) == request


class RevokedMidAnswer:
    """A lease the arbiter asks back (to 0) once the answer has started streaming."""

    def __init__(self, tier) -> None:
        self.bytes, self.tier, self.can_grow = tier.bytes, tier.name, False
        self.revoke = None
        self.answers: list[tuple[int, bool]] = []  # (bytes, was the model still generating?)
        self.slot = None

    def revoke_requested(self):
        return self.revoke

    def throttled(self):
        return None

    def grow_offered(self):
        return None

    def set_idle(self, idle: bool) -> None:
        pass

    def done_revoke(self, new_bytes: int, tier: str = "") -> None:
        self.answers.append((new_bytes, self.slot.generating))
        self.revoke = None

    def release(self) -> None:
        pass


def test_a_revoke_mid_answer_is_answered_only_once_the_weights_are_really_gone(tiny_folder, monkeypatch):
    """The weights cannot leave under a running generate(): the worker must not tell the arbiter
    they did (it would grant them to someone else), but finish the answer, then unload and say so."""
    from workers.arbiter.messages import Revoke

    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    leases: list[RevokedMidAnswer] = []
    monkeypatch.setattr(
        runtime,
        "_acquire",
        lambda ctx, key, tiers, can_grow=False: leases.append(RevokedMidAnswer(tiers[0])) or leases[-1],
    )

    def revoke_at_third_delta(event):
        if isinstance(event, TextDelta) and sum(isinstance(e, TextDelta) for e in wire.events) == 3:
            lease = leases[0]
            lease.slot = runtime.cache.get_or_load(next(k for k in runtime.leases), lambda: None)
            lease.revoke = Revoke(lease_id="L1", target_bytes=0, deadline_s=5.0, reason="needed by an edit")

    wire.on_event = revoke_at_third_delta
    events = run_job(runtime, wire, chat(tiny_folder, max_new_tokens=24))
    assert isinstance(end_of(events), Finished), end_of(events)
    assert answer_of(events) == reference_greedy(tiny_folder, max_new_tokens=24), "the answer is not cut"
    assert leases[0].answers == [], "not answered while the weights were still in use"
    runtime._honour_idle_revokes()  # the worker's idle poll, right after the job
    assert leases[0].answers == [(0, False)] and leases[0].slot.loaded is None
    assert not runtime.leases
