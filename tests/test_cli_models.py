"""``hearth models``: scan a home folder full of other apps' models, list them with fit verdicts,
add, inspect and remove one; bad input exits 2 with a message and registers nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import main
from tests import model_fixtures as mf
from tests.cli_process import ROOT

GIB = 1024**3


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    return mf.fake_home(mf.home_env(monkeypatch, tmp_path / "home"))


def hearth_json(capsys, *args: str) -> dict:
    assert main(["models", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_scan_lists_every_model_with_its_kind_family_and_fit(home, capsys):
    report = hearth_json(capsys, "scan", "--budget", "8GiB", "--ram", "32GiB")
    by_location = {model["location"]: model for model in report["models"]}
    hub = {model["name"]: model for model in report["models"] if model["source"] == "hf-cache"}
    for relative, (kind, family, runs) in mf.EXPECTED.items():
        model = (
            hub[relative.removeprefix("hub:")]
            if relative.startswith("hub:")
            else by_location[relative if relative.startswith("ollama:") else str(home / relative)]
        )
        assert (model["kind"], model["family"], model["runnable"]) == (kind, family, runs), relative
        if kind in ("chat", "image", "video", "music"):
            assert model["fit"]["verdict"] == "fits", relative  # tiny models
        else:
            assert model["fit"] is None, relative  # a LoRA, a VAE: parts, not models
    assert len(report["models"]) == len(mf.EXPECTED)
    assert {Path(s["where"]).name for s in report["skipped"]} == {Path(p).name for p in mf.SKIPPED}
    assert report["unreadable"] == []
    assert report["budget"] == {"device_bytes": 8 * GIB, "host_bytes": 32 * GIB}


def test_scan_prints_a_table_and_list_shows_the_linked_models_beside_the_built_in_ones(home, capsys):
    assert main(["models", "scan"]) == 0
    out, err = capsys.readouterr()
    assert "hearth: linked 25 model(s) (25 new), 2 skipped, 0 unreadable" in err
    assert (
        "skipped: " + str(home / "ComfyUI/models/checkpoints/old_model.ckpt") + ": a pickle checkpoint" in out
    )
    wan = next(line for line in out.splitlines() if "Wan single-file" in line)
    assert "video" in wan and "Wan 2.1" in wan and "wan2" in wan.lower()
    listed = hearth_json(capsys, "list")["models"]
    assert {m["id"] for m in listed} >= {"demo-sd", "smollm2-135m-instruct"}
    assert len([m for m in listed if m["source"] != "built-in"]) == 25
    assert main(["models", "scan"]) == 0
    assert "(0 new)" in capsys.readouterr().err


def test_a_dry_run_links_nothing(home, capsys):
    assert len(hearth_json(capsys, "scan", "--dry-run")["models"]) == len(mf.EXPECTED)
    assert [m for m in hearth_json(capsys, "list")["models"] if m["source"] != "built-in"] == []


def test_list_by_kind(home, capsys):
    hearth_json(capsys, "scan")
    loras = hearth_json(capsys, "list", "--kind", "lora")["models"]
    assert {m["family"] for m in loras} == {"SD1.5", "SDXL", "Flux"} and {m["kind"] for m in loras} == {
        "lora"
    }
    assert main(["models", "list", "--kind", "poem"]) == 2
    assert "--kind 'poem' is not a kind of model" in capsys.readouterr().err


def test_add_info_and_remove_one_model(tmp_path, capsys):
    path = mf.write_gguf(tmp_path / "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "qwen2")
    added = hearth_json(capsys, "add", str(path), "--budget", "4GiB", "--ram", "16GiB")
    assert (added["kind"], added["family"], added["format"], added["fit"]["verdict"]) == (
        "chat",
        "Qwen2",
        "gguf",
        "fits",
    )
    assert [tier["name"] for tier in added["tiers"]] == ["gpu", "gpu-1/2", "cpu"]
    assert all(tier["fits"] for tier in added["tiers"])
    assert main(["models", "info", added["id"], "--budget", "4GiB"]) == 0
    out = capsys.readouterr().out
    assert "family     Qwen2" in out and "runs       yes" in out and "tier gpu" in out
    assert main(["models", "remove", added["id"]]) == 0
    assert "its files are left where they are" in capsys.readouterr().out
    assert path.is_file()
    assert main(["models", "info", added["id"]]) == 2
    assert f"no model {added['id']!r}" in capsys.readouterr().err


def test_info_of_a_built_in_model_and_its_tiers_against_the_budget(capsys):
    info = hearth_json(capsys, "info", "demo-sd", "--budget", "32MiB", "--ram", "8GiB")
    assert info["source"] == "built-in" and info["fit"] == {
        "verdict": "fits_reduced",
        "tier": "offloaded",
        "needs_bytes": 16 * 1024**2,
        "slowdown": 1.0,
    }
    assert [(t["name"], t["fits"]) for t in info["tiers"]] == [
        ("resident", False),
        ("offloaded", True),
        ("cpu", True),
    ]


def test_a_vanished_model_is_listed_as_missing(tmp_path, capsys):
    path = mf.write_safetensors(tmp_path / "sd15.safetensors", mf.SD15)
    model_id = hearth_json(capsys, "add", str(path))["id"]
    path.unlink()
    (missing,) = [m for m in hearth_json(capsys, "list")["models"] if m["id"] == model_id]
    assert missing["problem"] == "missing" and missing["fit"] is None
    assert main(["models", "list"]) == 0
    assert "missing" in next(line for line in capsys.readouterr().out.splitlines() if model_id in line)


def _text_file(path: Path) -> Path:
    path.write_text("not a model")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: _text_file(t / "notes.txt"), "notes.txt is not a model file"),
        (lambda t: t / "nowhere.gguf", "no such file or folder"),
        (
            lambda t: mf.truncated_copy(
                mf.write_safetensors(t / "a.safetensors", mf.SD15), t / "cut.safetensors"
            ),
            "outside",
        ),
        (lambda t: mf.huge_header(t / "huge.safetensors"), "damaged or hostile"),
        (lambda t: mf.non_json_header(t / "junk.safetensors"), "unreadable safetensors header"),
        (lambda t: mf.bogus_tensor_count_gguf(t / "bogus.gguf"), "damaged or hostile: its tensor count is"),
    ],
)
def test_add_refuses_what_is_not_a_model_and_registers_nothing(tmp_path, capsys, make, message):
    assert main(["models", "add", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hearth: error: ") and message in err
    assert [m for m in hearth_json(capsys, "list")["models"] if m["source"] != "built-in"] == []


def test_a_bad_budget_and_removing_a_built_in_model_are_refused(capsys):
    assert main(["models", "list", "--budget", "lots"]) == 2
    assert "--budget: not a memory size: 'lots'" in capsys.readouterr().err
    assert main(["models", "remove", "demo-sd"]) == 2
    assert "demo-sd is built into Hearth and cannot be removed" in capsys.readouterr().err


def test_the_simulated_device_is_the_default_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HEARTH_ARBITER_DEVICE", "sim:4GiB")
    monkeypatch.setenv("HEARTH_ARBITER_HEADROOM", "512MiB")
    assert hearth_json(capsys, "list")["budget"]["device_bytes"] == 4 * GIB - 512 * 1024**2
    monkeypatch.setenv("HEARTH_ARBITER_DEVICE", "host")
    assert hearth_json(capsys, "list")["budget"]["device_bytes"] == 0


def test_hearth_models_scan_runs_without_qt_or_torch(home):
    """Through the real entry point (``hearth models ...``), in a fresh process."""
    script = textwrap.dedent("""
        import sys
        from app.__main__ import main
        code = main(["models", "scan", "--json"])
        heavy = [m for m in ("PySide6", "torch", "diffusers", "transformers") if m in sys.modules]
        print("imported:", heavy, file=sys.stderr)
        sys.exit(code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "imported: []" in result.stderr
    assert len(json.loads(result.stdout)["models"]) == len(mf.EXPECTED)
