"""``hearth models download`` against a local stand-in for the hub (HF_ENDPOINT): progress to
100 %, a download killed half-way resumes after a restart fetching only the rest, every file is
checked against the hub's sha256, a corrupt file, an unknown hub id, no network and a full disk
are each a clear error with nothing registered; deleting a download frees its disk."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections import namedtuple
from pathlib import Path

import pytest

from app.cli import main
from models import download as dl
from models.download import RemoteFile, choose_files
from models.registry import ModelRegistry
from tests.cli_process import HearthProcess, hearth_env
from tests.hub_server import FakeHub, tiny_repo_files
from workers.errors import BadInput

REPO = "hearth-test/tiny-llama"
WEIGHTS = "model.safetensors"
DECOYS = {"pytorch_model.bin": b"\x80\x02}q\x00." * 64, "tf_model.h5": b"\x89HDF" * 64}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> dict[str, bytes]:
    """A tiny Llama saved by transformers (random weights, ~16 MiB of safetensors), plus the
    pickle and TensorFlow copies a hub repo often holds beside them."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    return {**tiny_repo_files(folder), **DECOYS}


@pytest.fixture
def hub(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest keeps every other test offline
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub({REPO: tiny_model}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.cache = cache
        yield server


def registered() -> list:
    with ModelRegistry() as registry:
        return registry.models()


def blob_of(hub: FakeHub, name: str) -> Path:
    return hub.cache / f"models--{REPO.replace('/', '--')}" / "blobs" / hub.etag(REPO, name)


def test_download_shows_progress_to_100_verifies_prefers_safetensors_and_links(hub, capsys):
    assert main(["models", "download", REPO]) == 0
    out, err = capsys.readouterr()
    assert "100%" in err
    assert "left out pytorch_model.bin: pickle weights" in err
    assert "left out tf_model.h5: another framework's weights" in err
    assert hub.served[WEIGHTS] == len(hub.repos[REPO][WEIGHTS])
    assert "pytorch_model.bin" not in hub.served and "tf_model.h5" not in hub.served
    [model] = registered()
    assert (model.source, model.hub_id, model.identity.kind.value) == ("downloaded", REPO, "chat")
    assert model.identity.parameters > 4_000_000 and model.problem == ""
    snapshot = Path(model.path)
    weights = (snapshot / WEIGHTS).resolve()
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == hub.etag(REPO, WEIGHTS)
    assert weights == blob_of(hub, WEIGHTS) and not list(weights.parent.glob("*.incomplete"))
    assert f"downloaded {model.id}: chat" in out

    from huggingface_hub import scan_cache_dir

    [repo] = scan_cache_dir(hub.cache).repos  # huggingface_hub reads what Hearth wrote
    assert repo.repo_id == REPO and {f.file_name for f in next(iter(repo.revisions)).files} == {
        "config.json", "generation_config.json", WEIGHTS,
    }  # fmt: skip


def test_a_download_killed_half_way_resumes_after_a_restart(hub):
    size = len(hub.repos[REPO][WEIGHTS])
    hub.stall_after[WEIGHTS] = size // 2
    env = hearth_env(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(hub.cache))
    env.pop("HF_HUB_OFFLINE", None)
    first = HearthProcess(["models", "download", REPO], env=env)
    partial = blob_of(hub, WEIGHTS).with_name(hub.etag(REPO, WEIGHTS) + ".incomplete")
    try:
        assert hub.stalled.wait(120), first.stderr
        _wait_until(lambda: partial.is_file() and partial.stat().st_size >= size * 0.45, first)
        first.signal(signal.SIGKILL)
        assert first.finish() == -signal.SIGKILL
    finally:
        first.kill()
    assert registered() == []  # killed mid-way: nothing registered
    kept = partial.stat().st_size
    assert size * 0.45 <= kept <= size // 2
    hub.stall_after.clear()
    hub.release.set()
    before = hub.served[WEIGHTS]

    assert main(["models", "download", REPO]) == 0  # the restart
    fetched_again = hub.served[WEIGHTS] - before
    assert fetched_again == size - kept and fetched_again < 0.6 * size
    [model] = registered()
    weights = Path(model.path) / WEIGHTS
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == hub.etag(REPO, WEIGHTS)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_closed_terminal_cancels_cleanly_and_keeps_what_was_fetched(hub, signum):
    size = len(hub.repos[REPO][WEIGHTS])
    hub.stall_after[WEIGHTS] = size // 4
    env = hearth_env(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(hub.cache))
    env.pop("HF_HUB_OFFLINE", None)
    process = HearthProcess(["models", "download", REPO], env=env)
    try:
        assert hub.stalled.wait(120), process.stderr
        process.signal(signum)
        assert process.finish() == 130, process.stderr
    finally:
        process.kill()
    assert "hearth: cancelled; " in process.stderr and " kept: " in process.stderr
    assert f"`hearth models download {REPO}` resumes" in process.stderr
    assert "Traceback" not in process.stderr
    assert registered() == []
    assert blob_of(hub, WEIGHTS).with_name(hub.etag(REPO, WEIGHTS) + ".incomplete").is_file()


def test_a_corrupt_file_is_refused_deleted_and_nothing_registered(hub, capsys):
    hub.corrupt.add(WEIGHTS)
    assert main(["models", "download", REPO]) == 1
    err = capsys.readouterr().err
    assert f"{REPO}/{WEIGHTS} does not match the hub's sha256" in err and "refused and deleted" in err
    assert registered() == []
    blobs = blob_of(hub, WEIGHTS).parent
    assert not blob_of(hub, WEIGHTS).exists() and not list(blobs.glob("*.incomplete"))
    assert not (hub.cache / f"models--{REPO.replace('/', '--')}" / "snapshots").exists()


def test_a_hub_id_that_does_not_exist_is_a_clear_error(hub, capsys):
    assert main(["models", "download", "nobody/no-such-model"]) == 2
    assert "no model 'nobody/no-such-model' on the hub" in capsys.readouterr().err
    assert main(["models", "download", "not a hub id"]) == 2
    assert "is not a hub id" in capsys.readouterr().err
    assert registered() == [] and not hub.served


def test_a_full_disk_is_refused_before_the_first_byte(hub, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda _path: usage(10**9, 10**9 - 2**20, 2**20))
    assert main(["models", "download", REPO]) == 2
    err = capsys.readouterr().err
    assert f"not enough disk space for {REPO}: it needs 16 MiB more, 1 MiB is free" in err
    assert not hub.served and registered() == []
    assert not hub.cache.exists()


def test_offline_says_so_plainly(hub, capsys, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # nothing listens there
    assert main(["models", "download", REPO]) == 2
    assert "can't reach the hub: offline? everything on disk still works" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "download", REPO]) == 2
    assert "can't reach the hub: offline? everything on disk still works" in capsys.readouterr().err
    assert registered() == []


def test_deleting_a_download_frees_its_disk_after_a_yes(hub, capsys):
    assert main(["models", "download", REPO]) == 0
    [model] = registered()
    capsys.readouterr()
    assert main(["models", "remove", model.id]) == 2  # no terminal to ask on: needs --yes
    assert "needs a yes: add --yes" in capsys.readouterr().err
    assert registered() != [] and blob_of(hub, WEIGHTS).is_file()
    with ModelRegistry() as registry:
        assert registry.freed_by_delete(model) >= len(hub.repos[REPO][WEIGHTS])
    assert main(["models", "remove", model.id, "--yes"]) == 0
    assert "freed 16 MiB" in capsys.readouterr().out
    assert registered() == [] and not blob_of(hub, WEIGHTS).exists()
    assert not Path(model.path).exists()


def test_deleting_a_linked_model_is_refused_it_is_only_unlinked(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    from tests import model_fixtures as mf

    file = mf.write_safetensors(folder / "v1-5.safetensors", mf.SD15)
    with ModelRegistry() as registry:
        model = registry.add(file)
        assert registry.freed_by_delete(model) == 0
        with pytest.raises(BadInput, match="linked, not downloaded by Hearth"):
            registry.delete_files(model.id)
    assert main(["models", "remove", model.id]) == 0
    assert file.is_file() and registered() == []


def test_safetensors_are_chosen_over_pickles_and_a_pipeline_over_its_single_file():
    def files(*names: str) -> list[RemoteFile]:
        return [RemoteFile(name=n, size=1, sha256="0" * 64) for n in names]

    chosen, skipped = choose_files(
        files(
            "model_index.json", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.safetensors",
            "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "flax_model.msgpack",
        )
    )  # fmt: skip
    assert [f.name for f in chosen] == [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ]  # fmt: skip
    assert dict(skipped)["unet/diffusion_pytorch_model.bin"].startswith("pickle weights")
    assert dict(skipped)["v1-5-pruned-emaonly.safetensors"].startswith("a single-file checkpoint")
    only_pickle, _ = choose_files(files("config.json", "pytorch_model.bin"))
    assert [f.name for f in only_pickle] == ["config.json", "pytorch_model.bin"]
    with pytest.raises(BadInput, match="holds 2 GGUF files, each a whole model: pick one with --include"):
        choose_files(files("a-Q4_K_M.gguf", "a-Q8_0.gguf"))
    picked, _ = choose_files(files("a-Q4_K_M.gguf", "a-Q8_0.gguf", "README.md"), include="*Q8_0*")
    assert [f.name for f in picked] == ["a-Q8_0.gguf", "README.md"]


def _wait_until(condition, process: HearthProcess, timeout: float = 120.0) -> None:
    """Until the client has written what the server sent (it reads its socket at its own pace)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.process.poll() is None, process.stderr
        assert time.monotonic() < deadline, f"condition not met after {timeout} s:\n{process.stderr}"
        time.sleep(0.05)
    os.sync()
