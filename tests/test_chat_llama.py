"""GGUF chat on llama.cpp through the real worker runtime (in-process, fake pipe and leases): tiers from
the GGUF header, streaming, stop, stop strings, sampling, context, prompt lookup, a revoke mid-answer,
refused files, and the command line answering from the embedded GGUF without converting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.chat import embedded_gguf_path, embedded_run_path, save_tiny_chat_model
from models.chat_memory import GGUFPlan, gguf_context, gguf_plans, read_gguf_footprint
from tests.cli_inprocess import hearth_in_process
from tests.test_chat_job import (
    Grants,
    Wire,
    answer_of,
    chat,
    end_of,
    reference_greedy,
    run_job,
    write_tiny_gguf,
)
from workers.conversations import ConversationStore
from workers.errors import ErrorKind
from workers.protocol import Cancelled, Failed, Finished, JobStatus, TextDelta, WorkerKind
from workers.runtime import WorkerRuntime

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.timeout(240)
REWRITE = (
    "Rewrite this text with every sentence kept as it is:\n\n"
    "The river runs past the old mill. The miller counts his sacks of flour every morning. "
    "His daughter paints the wooden door blue. The river runs past the old mill again."
)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("HEARTH_LLAMA_THREADS", "1")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "model", seed=0, context=256)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_folder, tmp_path_factory) -> Path:
    return write_tiny_gguf(tiny_folder, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


@pytest.fixture
def worker():
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    runtime.lease_memory = Grants()
    return runtime, wire


def metrics_of(events) -> dict:
    return {m.name: m.value for m in end_of(events).metrics}


# --------------------------------------------------------------------------- tiers from the header


def test_tier_estimates_are_the_gguf_metadata(tiny_gguf):
    from gguf import GGUFReader

    footprint = read_gguf_footprint(tiny_gguf)
    reader = GGUFReader(str(tiny_gguf))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    assert footprint.file_weight_bytes == sum(sizes.values())
    assert footprint.block_bytes == tuple(
        sum(v for k, v in sizes.items() if k.startswith(f"blk.{i}.")) for i in range(2)
    )
    assert footprint.output_bytes == sizes["output.weight"] + sizes["output_norm.weight"]
    assert (footprint.layers, footprint.hidden, footprint.heads, footprint.kv_heads) == (2, 64, 4, 2)
    # K and V, 2 layers, 2 KV heads of 16, f16, per token
    assert footprint.kv_bytes(256) == 2 * 2 * 2 * 16 * 2 * 256
    gpu, half, cpu = gguf_plans(footprint, 256, offload=True)
    assert (gpu.gpu_layers, half.gpu_layers, cpu.gpu_layers) == (-1, 1, 0)
    compute = footprint.compute_bytes(256)
    assert gpu.bytes - half.bytes == sizes["output.weight"] + sizes["output_norm.weight"] + sum(
        v for k, v in sizes.items() if k.startswith("blk.0.")
    ) + footprint.kv_bytes(256, 1)
    assert cpu.bytes < half.bytes < gpu.bytes and cpu.bytes >= compute
    (only,) = gguf_plans(footprint, 256, offload=False)
    assert only == GGUFPlan("cpu", 0, footprint.host_bytes(256), only.est_step_s)


def test_embedded_footprint_matches_what_llama_cpp_allocates():
    import llama_cpp

    from workers.chat_llama import load_llama

    path = embedded_run_path()
    footprint = read_gguf_footprint(path)
    assert (footprint.architecture, footprint.layers, footprint.file_type) == ("llama", 30, "Q8_0")
    assert footprint.tied_embeddings and footprint.vocab == 49152 and footprint.context == 8192
    # docs/FIELD-NOTES.md: llama.cpp reports 45 MiB of KV cache at n_ctx 2048 and 180 MiB at 8192
    assert footprint.kv_bytes(2048) == 45 * 2**20 and footprint.kv_bytes(8192) == 180 * 2**20
    assert gguf_context(footprint) == 8192 and gguf_context(footprint, 100_000) == 8192
    llama = load_llama(path, footprint, 512, 0)
    try:
        assert llama_cpp.llama_model_size(llama.model) == footprint.file_weight_bytes
        assert llama_cpp.llama_model_n_layer(llama.model) == footprint.layers
    finally:
        llama.close()


# --------------------------------------------------------------------------- answers


def test_gguf_answers_like_transformers_on_the_same_weights(worker, tiny_folder, tiny_gguf, monkeypatch):
    from models import chat as chat_models

    def no_conversion(*args, **kwargs):
        raise AssertionError("a GGUF must run on llama.cpp, not be converted")

    monkeypatch.setattr(chat_models, "gguf_to_folder", no_conversion)
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=24))
    assert isinstance(end_of(events), Finished), end_of(events)
    assert answer_of(events) == reference_greedy(tiny_folder, max_new_tokens=24)
    metrics = metrics_of(events)
    assert metrics["new_tokens"] > 0 and metrics["prompt_tokens"] > 5
    assert metrics["ttft_s"] > 0 and metrics["decode_tok_s"] > 0 and metrics["prefill_tok_s"] > 0
    assert runtime.lease_memory.requests[0][1] in (["cpu"], ["gpu", "gpu-1/2", "cpu"])


def test_stop_keeps_the_partial_answer_in_the_conversation(worker, tiny_gguf):
    runtime, wire = worker
    store = ConversationStore()
    conv = store.create("poem")
    store.add_message(conv.id, "user", "Write a short poem about the sea.")

    def stop_after_three_deltas(event):
        if isinstance(event, TextDelta) and sum(isinstance(e, TextDelta) for e in wire.events) == 3:
            runtime._current[1].set()

    wire.on_event = stop_after_three_deltas
    events = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=48, conversation_id=conv.id))
    assert isinstance(end_of(events), Cancelled), end_of(events)
    answer = store.messages(conv.id)[-1]
    assert answer.state == "stopped" and answer.content == answer_of(events) != ""


def test_stop_sequence_ends_the_answer_before_it(worker, tiny_gguf):
    runtime, wire = worker
    full = answer_of(run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=24), "a"))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    cut = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=24, stop=(stop,)), "b")
    assert isinstance(end_of(cut), Finished)
    assert answer_of(cut) == full[: full.index(stop)]


def test_sampling_follows_the_seed(worker):
    runtime, wire = worker
    fields = {"temperature": 1.2, "top_p": 0.95, "top_k": 50, "max_new_tokens": 24}
    ask = "Tell me something about bread."
    first = answer_of(run_job(runtime, wire, chat("smollm2-135m-instruct", ask, seed=7, **fields), "a"))
    again = answer_of(run_job(runtime, wire, chat("smollm2-135m-instruct", ask, seed=7, **fields), "b"))
    other = answer_of(run_job(runtime, wire, chat("smollm2-135m-instruct", ask, seed=8, **fields), "c"))
    assert first == again and first != other


def test_long_conversation_is_truncated_and_says_so(worker, tiny_gguf):
    from workers.protocol import ChatMessage

    runtime, wire = worker
    turns = []
    for i in range(12):
        turns += [
            ChatMessage(role="user", content=f"Question {i}: write a poem about the sea."),
            ChatMessage(role="assistant", content="Here is a list:\n- one\n- two\n- three"),
        ]
    turns.append(ChatMessage(role="user", content="Thanks, that was helpful."))
    events = run_job(
        runtime, wire, chat(tiny_gguf, messages=tuple(turns), context_length=128, max_new_tokens=16)
    )
    assert isinstance(end_of(events), Finished), end_of(events)
    said = [e.message for e in events if isinstance(e, JobStatus)]
    assert any("oldest message(s) were left out" in m and "128 tokens" in m for m in said), said


def fresh_worker():
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    runtime.lease_memory = Grants()
    return runtime, wire


def test_prompt_lookup_gives_the_greedy_answer_in_fewer_passes():
    """Each on a freshly loaded model: the embedded copy's F16 attention matrices sum in an order
    that depends on the batch, so a KV cache from the other answer could tip a near tie."""
    plain = run_job(*fresh_worker(), chat("smollm2-135m-instruct", REWRITE, max_new_tokens=64), "a")
    lookup = run_job(
        *fresh_worker(),
        chat("smollm2-135m-instruct", REWRITE, max_new_tokens=64, assisted="prompt_lookup"),
        "b",
    )
    assert isinstance(end_of(lookup), Finished), end_of(lookup)
    assert answer_of(lookup) == answer_of(plain) != ""
    metrics = metrics_of(lookup)
    assert metrics["acceptance_rate"] > 0.05 and metrics["tokens_per_target_pass"] > 1.3
    assert metrics["target_passes"] < metrics_of(plain)["target_passes"]


@pytest.fixture(scope="module")
def draft_gguf(tmp_path_factory) -> Path:
    """A smaller tiny Llama (other seed, half the width) with the target's tokenizer."""
    folder = save_tiny_chat_model(
        tmp_path_factory.mktemp("tiny-draft") / "model", seed=1, context=256, hidden=32
    )
    return write_tiny_gguf(folder, tmp_path_factory.mktemp("tiny-draft-gguf") / "draft.gguf")


@pytest.mark.parametrize("which", ["smaller model", "the target itself"])
def test_a_draft_model_gives_the_greedy_answer_and_counts_what_it_saved(worker, tiny_gguf, draft_gguf, which):
    """Speculative decoding with a second GGUF: the answer is the target's greedy answer, token for
    token, whatever the draft proposes; a draft that agrees with the target saves target passes."""
    runtime, wire = worker
    draft = draft_gguf if which == "smaller model" else tiny_gguf
    plain = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=32), "plain")
    drafted = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=32, assisted=str(draft)), "draft")
    assert isinstance(end_of(drafted), Finished), end_of(drafted)
    assert answer_of(drafted) == answer_of(plain) != ""
    metrics, before = metrics_of(drafted), metrics_of(plain)
    assert metrics["draft_tokens_proposed"] > 0 and metrics["draft_passes"] > 0
    assert 0 <= metrics["acceptance_rate"] <= 1
    assert metrics["target_passes"] <= before["target_passes"]
    if which == "the target itself":  # every proposal is what the target would say (the last
        # pass's proposals past the token limit count as proposed, not accepted)
        assert metrics["acceptance_rate"] > 0.75 and metrics["tokens_per_target_pass"] > 2.5
        assert metrics["target_passes"] < before["target_passes"] / 2


def test_a_draft_with_another_vocabulary_is_refused(worker, tiny_gguf):
    runtime, wire = worker
    events = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=8, assisted=str(embedded_gguf_path())))
    failed = end_of(events)
    assert isinstance(failed, Failed) and failed.kind is ErrorKind.bad_input, failed
    assert "cannot draft for tiny.gguf: their vocabularies differ" in failed.message


def test_a_transformers_draft_for_a_gguf_is_refused(worker, tiny_gguf, tiny_folder):
    runtime, wire = worker
    failed = end_of(run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=8, assisted=str(tiny_folder))))
    assert isinstance(failed, Failed) and failed.kind is ErrorKind.bad_input, failed
    assert "the draft model for tiny.gguf must be a GGUF too" in failed.message


# --------------------------------------------------------------------------- a revoke mid-answer


class RevokedLease:
    """A granted lease the arbiter asks to shrink (to ``target``) once the answer is streaming."""

    def __init__(self, tier, slot_of) -> None:
        self.bytes, self.tier, self.can_grow = tier.bytes, tier.name, False
        self.revoke = None
        self.slot_of = slot_of
        self.answers: list[tuple[int, str, int | None]] = []  # (bytes, tier, GPU layers loaded then)

    def revoke_requested(self):
        return self.revoke

    def throttled(self):
        return None

    def grow_offered(self):
        return None

    def set_idle(self, idle: bool) -> None:
        pass

    def done_revoke(self, new_bytes: int, tier: str = "") -> None:
        slot = self.slot_of()
        self.answers.append((new_bytes, tier, slot.gpu_layers if slot.llama is not None else None))
        self.revoke = None

    def release(self) -> None:
        pass


@pytest.mark.parametrize("to", ["half", "nothing"])
def test_a_revoke_mid_answer_reloads_with_fewer_gpu_layers_and_keeps_every_token(tiny_gguf, monkeypatch, to):
    """llama.cpp cannot move layers of a loaded model: the worker reloads it with fewer GPU layers at
    the next token (or unloads it and waits for memory), answers the arbiter only once the old copy
    is freed, and the answer continues; greedy, it is the answer without the revoke."""
    from workers import chat_llama
    from workers.arbiter.messages import Revoke

    monkeypatch.setattr(chat_llama, "gpu_offload", lambda: True)  # tiers as on a CUDA build
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    leases: list[RevokedLease] = []

    def slot():
        return runtime.cache.get_or_load(next(iter(runtime.leases)), lambda: None)

    def acquire(ctx, key, tiers, can_grow=False):
        leases.append(RevokedLease(tiers[0], slot))
        return leases[-1]

    monkeypatch.setattr(runtime, "_acquire", acquire)
    plain = answer_of(run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=24), "plain"))
    runtime.cache.drop(next(iter(runtime.leases)))  # the revoked job loads and leases afresh
    runtime.leases.clear()
    leases.clear()
    store = ConversationStore()
    conv = store.create("revoked")
    store.add_message(conv.id, "user", "Write a short poem about the sea.")
    tiers = {}

    def revoke_at_first_delta(event):  # the decoder is then at most a few tokens further
        if (
            isinstance(event, TextDelta)
            and sum(isinstance(e, TextDelta) and e.job_id == "job" for e in wire.events) == 1
        ):
            held = next(iter(runtime.leases.values()))
            tiers.update({t.name: t.bytes for t in held.tiers})
            target = tiers["gpu-1/2"] if to == "half" else 0
            leases[-1].revoke = Revoke(lease_id="L", target_bytes=target, deadline_s=5.0, reason="an edit")

    wire.on_event = revoke_at_first_delta
    events = run_job(runtime, wire, chat(tiny_gguf, max_new_tokens=24, conversation_id=conv.id), "job")
    assert isinstance(end_of(events), Finished), end_of(events)
    assert answer_of(events) == plain, "the answer goes on after the reload, unchanged"
    assert store.messages(conv.id)[-1].content == plain and store.messages(conv.id)[-1].state == "done"
    assert metrics_of(events)["reloads"] == 1
    if to == "half":  # answered once the model is reloaded with 1 of its 2 layers on the GPU
        assert leases[0].answers == [(tiers["gpu-1/2"], "gpu-1/2", 1)]
        assert metrics_of(events)["gpu_layers"] == 1
    else:  # answered with the model unloaded; then granted again and reloaded
        assert leases[0].answers == [(0, "released", None)] and len(leases) == 2
        assert metrics_of(events)["gpu_layers"] == -1
        assert any("paused: an edit" in e.message for e in events if isinstance(e, JobStatus))


# --------------------------------------------------------------------------- files llama.cpp cannot run


def _write_gguf(path: Path, arch: str, template: str | None = "{{ messages }}") -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_context_length(64)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _refusal(worker, path: Path) -> Failed:
    runtime, wire = worker
    events = run_job(runtime, wire, chat(path, max_new_tokens=4))
    assert isinstance(end_of(events), Failed), end_of(events)
    return end_of(events)


def test_a_gguf_of_an_unknown_architecture_is_refused(worker, tmp_path):
    failed = _refusal(worker, _write_gguf(tmp_path / "odd.gguf", "nonesuch"))
    assert failed.kind is ErrorKind.bad_input
    assert "odd.gguf: its architecture 'nonesuch' is not one this llama.cpp" in failed.message


def test_a_gguf_without_a_chat_template_is_refused(worker, tiny_folder, tmp_path):
    path = write_tiny_gguf(tiny_folder, tmp_path / "base.gguf", chat_template=False)
    failed = _refusal(worker, path)
    assert failed.kind is ErrorKind.bad_input and "base.gguf has no chat template" in failed.message


def test_a_truncated_gguf_is_refused(worker, tmp_path):
    whole = embedded_gguf_path().read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) - len(whole) // 3])  # the header is whole, the last tensors are not
    failed = _refusal(worker, cut)
    assert failed.kind is ErrorKind.bad_input and "cut.gguf" in failed.message
    assert "truncated" in failed.message or "damaged" in failed.message


def test_a_gguf_that_llama_cpp_cannot_load_says_why(worker, tmp_path):
    failed = _refusal(worker, _write_gguf(tmp_path / "broken.gguf", "llama"))  # no vocabulary, one tensor
    assert failed.kind is ErrorKind.bad_input
    assert "llama.cpp could not load broken.gguf (llama" in failed.message


# --------------------------------------------------------------------------- the command line


def test_the_embedded_gguf_answers_what_plain_llama_cpp_answers(worker):
    """Greedy, Hearth's answer is llama.cpp's on the same file, token for token, and it is right:
    the shipped Q4_1 says "L'Étoile, la Marseillaise..." here on llama.cpp; the copy Hearth runs
    (Q8_0, attention Q and K in F16) says Paris (docs/FIELD-NOTES.md)."""
    from llama_cpp import Llama

    from workers.chat_llama import FLASH_ATTENTION

    runtime, wire = worker
    question = "What is the capital of France?"
    ours = answer_of(run_job(runtime, wire, chat("smollm2-135m-instruct", question, max_new_tokens=16)))
    llama = Llama(
        model_path=str(embedded_run_path()),
        n_ctx=8192,
        n_threads=1,
        flash_attn=FLASH_ATTENTION,
        verbose=False,
    )
    try:
        theirs = llama.create_chat_completion(
            [{"role": "user", "content": question}], temperature=0, max_tokens=16
        )["choices"][0]["message"]["content"]
    finally:
        llama.close()
    assert ours == theirs and "Paris" in ours


def test_hearth_run_chat_answers_paris_from_the_embedded_gguf_without_safetensors(tmp_path):
    """A fresh machine, greedy: the shipped GGUF is re-encoded once, GGUF to GGUF, and answers;
    nothing becomes a transformers folder. (Sampled at the default 0.7, a 135M model's answer is
    the seed's luck: seed 0 happens not to say Paris.)"""
    models = tmp_path / "models"
    env = {"HEARTH_MODELS_DIR": str(models), "HEARTH_LLAMA_THREADS": "1"}
    command = ["run", "chat", "--prompt", "What is the capital of France?"]
    proc = hearth_in_process(*command, "--temperature", "0", "--max-new-tokens", "24", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Paris" in proc.stdout
    assert "Preparing SmolLM2-135M-Instruct.Q8_0-QK-F16.gguf" in proc.stderr  # the user sees why it waits
    assert not (models / "chat").exists() and not list(models.rglob("*.safetensors"))
    assert [p.name for p in models.rglob("*.gguf")] == ["SmolLM2-135M-Instruct.Q8_0-QK-F16.gguf"]
