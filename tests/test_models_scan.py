"""Finding the models a user already has: other apps' folders, the hub cache, Ollama, own folders.

Every scan reads only; a hostile or broken file becomes an entry saying why, never a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from models import scan as scan_module
from models.scan import Found, Unreadable, scan
from tests import model_fixtures as mf


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    return mf.fake_home(mf.home_env(monkeypatch, tmp_path / "home"))


def _by_location(results) -> dict:
    return {item.candidate.location: item for item in results if isinstance(item, Found)}


def _unreadable(results) -> dict[str, str]:
    return {item.where: item.reason for item in results if isinstance(item, Unreadable)}


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with what would change if anything wrote there."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            seen[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen


def test_the_usual_places_yield_every_model_with_its_kind_and_family(home):
    results = scan()
    found = _by_location(results)
    for relative, (kind, family, runs) in mf.EXPECTED.items():
        item = found[mf.location_of(relative, home, results)]
        identity = item.identity
        assert (identity.kind.value, identity.family, identity.runnable) == (kind, family, runs), relative
    assert not _unreadable(results)
    assert len(found) == len(mf.EXPECTED) + len(mf.SKIPPED)


def test_each_model_says_where_it_was_found(home):
    sources = {item.candidate.location: item.candidate.source for item in scan() if isinstance(item, Found)}
    assert sources[str(home / "ComfyUI/models/loras/detail_xl.safetensors")] == "comfyui"
    assert sources[str(home / "stable-diffusion-webui/models/Lora/add_detail.safetensors")] == "a1111"
    assert sources["ollama:llama3.2:latest"] == "ollama"
    assert {s for s in sources.values()} == {"comfyui", "a1111", "lmstudio", "ollama", "hf-cache"}


def test_files_nothing_can_run_are_listed_with_the_reason(home):
    found = _by_location(scan())
    pickle = found[str(home / "ComfyUI/models/checkpoints/old_model.ckpt")].identity
    assert pickle.kind.value == "unknown" and "pickle" in pickle.reason
    wan = found[str(home / "ComfyUI/models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors")].identity
    assert wan.reason.startswith("Wan single-file checkpoints are not supported yet")


def test_hub_models_keep_their_hub_id_and_an_ollama_model_its_name(home):
    results = scan()
    hub = [
        item.candidate for item in results if isinstance(item, Found) and item.candidate.source == "hf-cache"
    ]
    assert {c.hub_id for c in hub} >= {
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "facebook/musicgen-small",
    }
    ollama = _by_location(results)["ollama:phi3:mini"].candidate
    assert ollama.name == "phi3:mini"
    assert ollama.path.parent == home / ".ollama/models/blobs" and ollama.path.name.startswith("sha256-")


def test_a_scan_writes_nothing_anywhere(home, hearth_dirs):
    before, hearth_before = _tree(home), _tree(hearth_dirs)
    scan()
    assert _tree(home) == before
    assert _tree(hearth_dirs) == hearth_before


def test_the_hub_cache_is_found_where_the_environment_says(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    (tmp_path / "home").mkdir()
    mf.fill_hub_cache(tmp_path / "elsewhere", tmp_path / "scratch")
    assert not [item for item in scan() if isinstance(item, Found)]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert any(
        item.candidate.hub_id == "facebook/musicgen-small" for item in scan() if isinstance(item, Found)
    )
    monkeypatch.delenv("HF_HUB_CACHE")
    (tmp_path / "hf").mkdir()
    (tmp_path / "elsewhere").rename(tmp_path / "hf" / "hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert any(
        item.candidate.hub_id == "facebook/musicgen-small" for item in scan() if isinstance(item, Found)
    )


def test_a_named_folder_is_walked_and_a_named_file_identified(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    models = tmp_path / "my models"
    mf.write_safetensors(models / "sd" / "dreamshaper_8.safetensors", mf.SD15)
    mf.write_gguf(models / "llm" / "deep" / "er" / "qwen.gguf", "qwen2")
    mf.write_config(models / "notes.json", {"hello": 1})
    results = scan([models, mf.write_safetensors(tmp_path / "vae.safetensors", mf.VAE_SD)])
    found = {Path(location).name: item.identity.family for location, item in _by_location(results).items()}
    assert found == {"dreamshaper_8.safetensors": "SD1.5", "qwen.gguf": "Qwen2", "vae.safetensors": "SD VAE"}
    assert _unreadable(scan([tmp_path / "nowhere"])) == {str(tmp_path / "nowhere"): "no such file or folder"}


def test_a_model_folder_is_one_model_not_its_parts(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    mf.fill_hub_cache(tmp_path / "hub", tmp_path / "scratch")
    snapshot = next(
        (tmp_path / "hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5/snapshots").iterdir()
    )
    found = _by_location(scan([snapshot]))
    assert list(found) == [str(snapshot)]


def test_hidden_folders_are_skipped_and_depth_is_bounded(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    root = tmp_path / "models"
    mf.write_safetensors(root / ".trash" / "old.safetensors", mf.SD15)
    deep = root.joinpath(*[f"d{i}" for i in range(scan_module.MAX_DEPTH + 1)])
    mf.write_safetensors(deep / "deep.safetensors", mf.SD15)
    mf.write_safetensors(root / "d0" / "shallow.safetensors", mf.SD15)
    assert [Path(loc).name for loc in _by_location(scan([root]))] == ["shallow.safetensors"]


def test_a_walk_stops_after_its_entry_budget_and_says_so(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    for index in range(10):
        (tmp_path / "many" / f"f{index}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "many" / f"f{index}.txt").write_text("")
    walk = scan_module.folder_models(tmp_path / "many", "folder", budget=scan_module.WalkBudget(limit=5))
    reasons = [item.reason for item in walk if isinstance(item, Unreadable)]
    assert reasons == ["stopped after 5 entries: name a smaller folder"]


def test_a_folder_reached_twice_is_listed_once(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    mf.write_safetensors(tmp_path / "shared" / "sd15.safetensors", mf.SD15)
    (tmp_path / "shared" / "again").symlink_to(tmp_path / "shared")
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "shared" / "sd15.safetensors")
    found = _by_location(scan([tmp_path / "shared", tmp_path / "link.safetensors"]))
    assert list(found) == [str(tmp_path / "shared" / "sd15.safetensors")]


def test_hostile_and_broken_entries_are_listed_as_unreadable_and_the_rest_still_found(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    root = tmp_path / "models"
    good = mf.write_safetensors(root / "good.safetensors", mf.SD15)
    mf.truncated_copy(good, root / "truncated.safetensors")
    mf.huge_header(root / "huge.safetensors")
    mf.non_json_header(root / "garbage.safetensors")
    mf.bogus_tensor_count_gguf(root / "bogus.gguf")
    (root / "self.safetensors").symlink_to("self.safetensors")
    (root / "dangling.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    os.mkfifo(root / "pipe.safetensors")
    (root / "loop").symlink_to(root)  # a folder loop: walked once
    (root / "empty.gguf").write_bytes(b"")
    results = scan([root])
    assert list(_by_location(results)) == [str(good)]
    reasons = {Path(where).name: reason for where, reason in _unreadable(results).items()}
    assert set(reasons) == {
        "truncated.safetensors",
        "huge.safetensors",
        "garbage.safetensors",
        "bogus.gguf",
        "self.safetensors",
        "dangling.safetensors",
        "pipe.safetensors",
        "empty.gguf",
    }
    assert "outside the file" in reasons["truncated.safetensors"]
    assert "damaged or hostile" in reasons["huge.safetensors"]
    assert "unreadable safetensors header" in reasons["garbage.safetensors"]
    assert "its tensor count is" in reasons["bogus.gguf"]
    assert "Too many levels of symbolic links" in reasons["self.safetensors"]
    assert "No such file or directory" in reasons["dangling.safetensors"]
    assert "not a regular file" in reasons["pipe.safetensors"]


def test_an_unreadable_folder_is_listed_not_fatal(tmp_path, monkeypatch):
    mf.home_env(monkeypatch, tmp_path / "home")
    root = tmp_path / "models"
    mf.write_safetensors(root / "ok" / "sd15.safetensors", mf.SD15)
    (root / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):  # tests run as root, where chmod 000 does not lock anyone out
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    results = scan([root])
    assert _unreadable(results) == {str(root / "locked"): "Permission denied"}
    assert [Path(loc).name for loc in _by_location(results)] == ["sd15.safetensors"]


def test_hostile_ollama_manifests_are_unreadable_entries(tmp_path, monkeypatch):
    home = mf.home_env(monkeypatch, tmp_path / "home")
    gguf_file = mf.write_gguf(tmp_path / "model.gguf")
    mf.ollama_model(home, "good", "latest", gguf_file)
    escape = mf.ollama_model(home, "escape", "latest", gguf_file)
    manifest = json.loads(escape.read_text())
    manifest["layers"][0]["digest"] = "sha256:../../../../etc/passwd"
    escape.write_text(json.dumps(manifest))
    mf.write_config(home / ".ollama/models/manifests/registry.ollama.ai/library/broken/latest", {"layers": 5})
    (home / ".ollama/models/manifests/registry.ollama.ai/library/junk").mkdir(parents=True)
    (home / ".ollama/models/manifests/registry.ollama.ai/library/junk/latest").write_bytes(b"\xff{")
    gone = mf.ollama_model(home, "gone", "7b", gguf_file, digest="sha256:" + "a" * 64)
    (home / ".ollama/models/blobs" / ("sha256-" + "a" * 64)).unlink()
    results = scan()
    assert list(_by_location(results)) == ["ollama:good:latest"]
    reasons = _unreadable(results)
    assert "names no model layer with a sha256 digest" in reasons["ollama:escape:latest"]
    assert "names no model layer" in reasons["ollama:broken:latest"]
    assert "unreadable JSON" in reasons["ollama:junk:latest"]
    assert "is missing" in reasons["ollama:gone:7b"] and gone.is_file()


def test_ollama_models_outside_the_library_keep_their_namespace(tmp_path, monkeypatch):
    home = mf.home_env(monkeypatch, tmp_path / "home")
    manifest = mf.ollama_model(home, "x", "q4", mf.write_gguf(tmp_path / "m.gguf"))
    target = home / ".ollama/models/manifests/hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M"
    target.parent.mkdir(parents=True)
    manifest.rename(target)
    assert list(_by_location(scan())) == ["ollama:hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"]
