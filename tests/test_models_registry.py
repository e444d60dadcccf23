"""The model registry links models where they lie: never a copy, never a deleted user file,
never a half-registered row, and a vanished file shows as missing instead of failing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from models.identity import FoundKind
from models.registry import MISSING, ModelRegistry, builtin_models
from models.scan import Found, scan
from tests import model_fixtures as mf
from workers.errors import BadInput, MissingModel
from workers.paths import data_dir


@pytest.fixture
def registry():
    with ModelRegistry() as store:
        yield store


def _rows() -> int:
    with sqlite3.connect(data_dir() / "models.db") as db:
        return db.execute("SELECT count(*) FROM models").fetchone()[0]


def test_add_links_a_model_in_place_without_copying_it(registry, tmp_path):
    path = mf.write_safetensors(tmp_path / "user" / "dreamshaper_8.safetensors", mf.SD15)
    before = path.read_bytes()
    model = registry.add(path)
    assert (model.path, model.location, model.source) == (str(path), str(path), "added")
    assert (model.identity.kind, model.identity.family) == (FoundKind.image, "SD1.5")
    assert model.id.startswith("dreamshaper-8-") and model.spec == str(path)
    assert registry.path == data_dir() / "models.db"
    assert sorted(p.name for p in data_dir().iterdir()) == ["models.db", "models.db-shm", "models.db-wal"]
    assert path.read_bytes() == before
    assert [m.id for m in registry.models()] == [model.id]


def test_adding_the_same_model_again_keeps_one_row_and_its_id(registry, tmp_path):
    path = mf.write_gguf(tmp_path / "qwen.gguf", "qwen2")
    first = registry.add(path)
    again = registry.add(tmp_path / "." / "qwen.gguf")
    assert again.id == first.id and _rows() == 1


def test_remove_unlinks_and_leaves_the_files(registry, tmp_path):
    path = mf.write_safetensors(tmp_path / "vae.safetensors", mf.VAE_SD)
    model = registry.add(path)
    removed = registry.remove(model.id)
    assert removed.id == model.id and path.is_file()
    assert registry.models() == [] and registry.get(model.id) is None


def test_a_model_is_found_by_its_id_its_location_or_its_path(registry, tmp_path):
    path = mf.write_safetensors(tmp_path / "sd.safetensors", mf.SD15)
    model = registry.add(path)
    assert registry.get(model.id) == registry.get(str(path)) == model


def test_a_vanished_file_shows_as_missing_and_returns_when_it_does(registry, tmp_path):
    path = mf.write_safetensors(tmp_path / "sd.safetensors", mf.SD15)
    model = registry.add(path)
    hidden = path.rename(tmp_path / "elsewhere.safetensors")
    assert [(m.id, m.problem) for m in registry.models()] == [(model.id, MISSING)]
    assert registry.get(model.id).missing
    hidden.rename(path)
    assert [m.problem for m in registry.models()] == [""]


def test_rescan_identifies_changed_files_again_and_keeps_unreadable_ones_marked(registry, tmp_path):
    path = mf.write_safetensors(tmp_path / "model.safetensors", mf.SD15)
    model = registry.add(path)
    mf.write_safetensors(path, mf.SDXL)  # replaced by another model under the same name
    (changed,) = registry.rescan()
    assert (changed.id, changed.identity.family, changed.problem) == (model.id, "SDXL", "")
    mf.truncated_copy(mf.write_safetensors(tmp_path / "whole.safetensors", mf.SD15), path)
    (broken,) = registry.rescan()
    assert broken.id == model.id and broken.problem.startswith("unreadable: model.safetensors")
    path.unlink()
    assert [m.problem for m in registry.rescan()] == [MISSING]


def _not_a_model(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("not a model")
    return tmp_path / "notes.txt"


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


BAD_INPUT = [
    (_not_a_model, "notes.txt is not a model file"),
    (_empty_folder, "not a model folder"),
    (lambda t: t / "nowhere.safetensors", "no such file or folder"),
    (
        lambda t: mf.truncated_copy(
            mf.write_safetensors(t / "a.safetensors", mf.SD15), t / "cut.safetensors"
        ),
        "outside",
    ),
    (lambda t: mf.huge_header(t / "huge.safetensors"), "damaged or hostile"),
    (lambda t: mf.non_json_header(t / "junk.safetensors"), "unreadable safetensors header"),
    (lambda t: mf.bogus_tensor_count_gguf(t / "bogus.gguf"), "its tensor count is"),
    (lambda t: mf.write_safetensors(t / "clip_l.safetensors", mf.CLIP_L), "not a model Hearth can use"),
]


@pytest.mark.parametrize(("make", "message"), BAD_INPUT)
def test_bad_input_is_a_clear_error_and_registers_nothing(registry, tmp_path, make, message):
    with pytest.raises(BadInput, match=message):
        registry.add(make(tmp_path))
    assert registry.models() == [] and _rows() == 0


def test_built_in_models_are_listed_not_stored_and_cannot_be_removed(registry):
    assert {m.id for m in builtin_models()} >= {"demo-sd", "smollm2-135m-instruct"}
    assert all(m.source == "built-in" and m.identity.tiers for m in builtin_models())
    with pytest.raises(BadInput, match="built into Hearth"):
        registry.remove("demo-sd")
    with pytest.raises(MissingModel, match="no model 'nonesuch'"):
        registry.remove("nonesuch")


def test_a_scan_links_every_model_and_ollama_ones_by_name(registry, tmp_path, monkeypatch):
    home = mf.fake_home(mf.home_env(monkeypatch, tmp_path / "home"))
    for item in scan():
        if isinstance(item, Found) and item.identity.kind is not FoundKind.unknown:
            registry.link(item.candidate, item.identity)
    models = registry.models()
    assert len(models) == len(mf.EXPECTED)
    ollama = registry.get("ollama:llama3.2:latest")
    assert (ollama.name, ollama.source, ollama.identity.family) == ("llama3.2:latest", "ollama", "Llama")
    assert Path(ollama.path).parent == home / ".ollama/models/blobs"
    hub = next(m for m in models if m.name == "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert hub.id.startswith("stable-diffusion-v1-5-")
    assert hub.spec == "stable-diffusion-v1-5/stable-diffusion-v1-5"  # loaded from the cache by its id
    assert registry.models(FoundKind.lora) and all(
        m.identity.kind is FoundKind.lora for m in registry.models(FoundKind.lora)
    )


def test_the_store_survives_reopening_at_its_schema_version(tmp_path):
    path = mf.write_safetensors(tmp_path / "sd.safetensors", mf.SD15)
    with ModelRegistry() as first:
        model = first.add(path)
        assert first.schema_version == 1
    with ModelRegistry() as second:
        assert second.get(model.id) == model
