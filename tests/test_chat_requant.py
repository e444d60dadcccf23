"""GGUF to GGUF re-encoding (``models.gguf_requant``): what the embedded model runs as. The new file
answers like the old one, its header is what the estimate said, two workers converting at once
write it once, and a conversion killed midway leaves nothing behind that counts as the model."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.chat import embedded_gguf_path, save_tiny_chat_model
from models.chat_memory import footprint_from_header, read_gguf_footprint, read_gguf_header
from models.gguf_requant import requantize, requantized_once, requantized_types
from tests.test_chat_job import Grants, Wire, answer_of, chat, end_of, run_job, write_tiny_gguf
from workers.protocol import Finished, WorkerKind
from workers.runtime import WorkerRuntime

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("HEARTH_LLAMA_THREADS", "1")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    folder = save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "model", seed=0, context=256)
    return write_tiny_gguf(folder, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


def greedy(path: Path, job: str) -> str:
    wire = Wire()
    runtime = WorkerRuntime(WorkerKind.chat, wire)
    runtime.lease_memory = Grants()
    events = run_job(runtime, wire, chat(path, max_new_tokens=24), job)
    assert isinstance(end_of(events), Finished), end_of(events)
    return answer_of(events)


@pytest.mark.parametrize(("target", "f16"), [("F16", ()), ("Q8_0", ()), ("Q8_0", ("attn_q.", "attn_k."))])
def test_a_reencoded_gguf_answers_like_the_original(tiny_gguf, tmp_path, target, f16):
    out = requantize(tiny_gguf, tmp_path / "tiny.requant.gguf", target, f16)
    metadata, tensors = read_gguf_header(out)
    kinds = {name: kind for name, (_, kind) in tensors.items()}
    from gguf.constants import GGMLQuantizationType as T

    assert kinds["blk.0.attn_norm.weight"] == T.F32  # vectors stay F32
    assert kinds["blk.0.ffn_up.weight"] == T[target]
    assert kinds["blk.0.attn_q.weight"] == (T.F16 if f16 else T[target])
    assert read_gguf_footprint(out).file_type == target
    assert metadata["tokenizer.chat_template"] == read_gguf_header(tiny_gguf)[0]["tokenizer.chat_template"]
    assert greedy(out, "requant") == greedy(tiny_gguf, "original") != ""


def test_the_planned_footprint_is_the_written_files(tiny_gguf, tmp_path):
    metadata, tensors = read_gguf_header(tiny_gguf)
    out = requantize(tiny_gguf, tmp_path / "tiny.q8.gguf", "Q8_0", ("attn_k.",))
    planned = footprint_from_header(
        metadata | {"general.file_type": 7}, requantized_types(tensors, "Q8_0", ("attn_k.",)), out.name
    )
    assert planned == read_gguf_footprint(out)


def test_two_workers_converting_at_once_write_the_file_once(tiny_gguf, tmp_path):
    """Two chat workers asked for the same model together: one converts, the other waits on the
    lock and then takes the finished file; nothing half-written is ever there under its name."""
    target = tmp_path / "models" / "smol.Q8_0.gguf"
    said: list[str] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def convert() -> None:
        try:
            results.append(requantized_once(tiny_gguf, target, "Q8_0", (), said.append))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    workers = [threading.Thread(target=convert) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=200)
    assert not errors and results == [target, target]
    assert sum(m.startswith("Preparing smol.Q8_0.gguf from") for m in said) == 1
    assert said[-1].startswith("Prepared smol.Q8_0.gguf in ")
    assert sorted(p.name for p in target.parent.iterdir()) == [".smol.Q8_0.gguf.lock", "smol.Q8_0.gguf"]
    assert read_gguf_footprint(target).file_type == "Q8_0"


def test_a_conversion_killed_midway_leaves_no_model_and_the_next_one_cleans_up(tmp_path):
    target = tmp_path / "models" / "smol.F16.gguf"
    target.parent.mkdir()
    script = (
        "import sys; from pathlib import Path; from models.gguf_requant import requantized_once;"
        f"requantized_once(Path({str(embedded_gguf_path())!r}), Path({str(target)!r}), 'F16')"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    try:
        # the temp file growing past a few MB: the conversion is writing tensors
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 8 << 20 for p in target.parent.glob(".smol.F16.gguf.hearth-tmp-*")):
            assert proc.poll() is None, "the conversion ended before it could be killed"
            assert time.monotonic() < deadline, "the conversion never started writing"
            threading.Event().wait(0.05)
        proc.kill()
    finally:
        proc.communicate()
    assert not target.exists(), "a half-written model under its real name"
    assert list(target.parent.glob(".smol.F16.gguf.hearth-tmp-*")), "the killed writer's temp file"
    requantized_once(embedded_gguf_path(), target, "F16")
    assert read_gguf_footprint(target).file_type == "F16"
    assert not list(target.parent.glob("*hearth-tmp*")), "the next conversion removes the leftover"
