"""Identifying models from their headers alone: kind, family, size, precision, and why not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from models.identify import identify
from models.identity import FoundKind
from tests import model_fixtures as mf
from workers.errors import BadInput

SINGLE_FILES = [
    # (tensor names, metadata, kind, family, reason starts with; "" = runs)
    (mf.SD15, None, "image", "SD1.5", ""),
    (mf.SD2, None, "image", "SD2", ""),
    (mf.SDXL, None, "image", "SDXL", ""),
    (mf.SD35, None, "image", "SD3.5", ""),
    (mf.FLUX, None, "image", "Flux", ""),  # its text encoders and VAE come from its base repo
    (mf.WAN_13B, None, "video", "Wan 2.1", "Wan single-file checkpoints are not supported yet"),
    (mf.LTX, None, "video", "LTX-Video", "LTX-Video single-file checkpoints are not supported yet"),
    (mf.MOTION_MODULE, None, "motion_adapter", "AnimateDiff motion module", "a motion module alone"),
    (mf.LORA_SDXL, None, "lora", "SDXL", "a LoRA alone"),
    (mf.LORA_SD15, None, "lora", "SD1.5", "a LoRA alone"),
    (mf.LORA_FLUX, None, "lora", "Flux", "a LoRA alone"),
    (mf.LORA_SD15, {"ss_base_model_version": "sdxl_base_v1-0"}, "lora", "SDXL", "a LoRA"),
    (mf.VAE_SD, None, "vae", "SD VAE", "a VAE alone"),
    (mf.CLIP_L, None, "unknown", "CLIP text encoder", "a text encoder alone"),
]


@pytest.mark.parametrize(("names", "metadata", "kind", "family", "reason"), SINGLE_FILES)
def test_a_single_file_checkpoint_is_told_by_its_tensor_names(
    tmp_path, names, metadata, kind, family, reason
):
    identity = identify(mf.write_safetensors(tmp_path / "model.safetensors", names, metadata))
    assert (identity.kind.value, identity.family) == (kind, family)
    assert identity.reason.startswith(reason) if reason else identity.runnable, identity.reason
    assert identity.format == "safetensors"


def test_parameters_and_precision_come_from_the_header_shapes(tmp_path):
    path = mf.write_safetensors(tmp_path / "sd15.safetensors", mf.SD15)
    identity = identify(path)
    expected = sum(int(__import__("math").prod(shape)) for shape in mf.SD15.values())
    assert identity.parameters == expected
    assert identity.dtype == "F16"
    assert identity.file_bytes == path.stat().st_size
    resident, offloaded, cpu = identity.tiers
    assert (resident.name, offloaded.name, cpu.name) == ("resident", "offloaded", "cpu")
    assert offloaded.device_bytes < resident.device_bytes  # only its largest part on the device
    assert cpu.on_cpu and cpu.host_bytes > 0


def test_parts_of_a_model_have_no_tiers(tmp_path):
    for names in (mf.LORA_SDXL, mf.VAE_SD, mf.MOTION_MODULE):
        assert identify(mf.write_safetensors(tmp_path / "part.safetensors", names)).tiers == ()


def test_a_diffusers_folder_counts_each_of_its_parts_once(tmp_path):
    cache = tmp_path / "hub"
    mf.fill_hub_cache(cache, tmp_path / "scratch")
    snapshot = next((cache / "models--stable-diffusion-v1-5--stable-diffusion-v1-5" / "snapshots").iterdir())
    identity = identify(snapshot)
    assert (identity.kind, identity.family, identity.format, identity.runnable) == (
        FoundKind.image,
        "SD1.5",
        "diffusers",
        True,
    )
    # unet (8*4*3*3) once though it is there in fp32 and fp16, text encoder 16*8, VAE 8*3*3*3;
    # not the single-file checkpoint the repo also holds at its top.
    assert identity.parameters == 288 + 128 + 216


@pytest.mark.parametrize(
    ("repo", "kind", "family", "runs"),
    [
        ("Wan-AI--Wan2.1-T2V-1.3B-Diffusers", "video", "Wan 2.1", True),
        ("Lightricks--LTX-Video", "video", "LTX-Video", True),
        ("facebook--musicgen-small", "music", "MusicGen", True),
        ("facebook--musicgen-melody", "music", "MusicGen-Melody", True),
        ("HuggingFaceTB--SmolLM2-135M-Instruct", "chat", "SmolLM", True),
        ("guoyww--animatediff-motion-adapter-v1-5-2", "motion_adapter", "AnimateDiff motion module", False),
    ],
)
def test_model_folders_are_told_by_their_configs(tmp_path, repo, kind, family, runs):
    cache = tmp_path / "hub"
    mf.fill_hub_cache(cache, tmp_path / "scratch")
    snapshot = next((cache / f"models--{repo}" / "snapshots").iterdir())
    identity = identify(snapshot, name_hint=repo.replace("--", "/"))
    assert (identity.kind.value, identity.family, identity.runnable) == (kind, family, runs), identity.reason


def test_a_chat_folder_gets_the_chat_workers_quantization_tiers(tmp_path):
    cache = tmp_path / "hub"
    mf.fill_hub_cache(cache, tmp_path / "scratch")
    snapshot = next((cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots").iterdir())
    assert [t.name for t in identify(snapshot).tiers] == ["bf16", "int8", "nf4", "cpu"]


def test_gguf_family_quantization_and_chat_template(tmp_path):
    smol = identify(mf.write_gguf(tmp_path / "a.gguf", name="SmolLM2 360M Instruct"))
    assert (smol.kind, smol.family, smol.format, smol.dtype, smol.runnable) == (
        FoundKind.chat,
        "SmolLM",
        "gguf",
        "F32",
        True,
    )
    assert [t.name for t in smol.tiers] == ["gpu", "gpu-1/2", "cpu"]
    base = identify(mf.write_gguf(tmp_path / "base.gguf", "qwen2", template=None))
    assert (base.family, base.runnable) == ("Qwen2", False)
    assert "no chat template" in base.reason
    odd = identify(mf.write_gguf(tmp_path / "odd.gguf", "nonesuch"))
    assert (odd.kind, odd.family) == (FoundKind.chat, "nonesuch")
    assert "'nonesuch' is not one Hearth knows" in odd.reason


def test_a_quantized_diffusion_model_gguf_is_named_and_refused(tmp_path):
    flux = identify(mf.write_gguf(tmp_path / "flux1-dev-Q4_K_S.gguf", "flux", template=None, layers=1))
    assert (flux.kind, flux.family) == (FoundKind.image, "Flux")
    assert flux.reason.startswith("GGUF diffusion models (ComfyUI-GGUF) are not supported")


def test_a_gguf_without_its_suffix_is_known_by_its_magic(tmp_path):
    blob = mf.write_gguf(tmp_path / "sha256-0123", name="Llama 3.2 3B Instruct")
    assert identify(blob).family == "Llama"


def test_a_pickle_checkpoint_is_listed_but_never_opened(tmp_path):
    path = tmp_path / "old.ckpt"
    path.write_bytes(b"\x80\x02 this would run code if unpickled")
    identity = identify(path)
    assert (identity.kind, identity.format, identity.parameters) == (FoundKind.unknown, "pickle", 0)
    assert "pickle" in identity.reason and "convert it to .safetensors" in identity.reason


def test_a_real_saved_demo_model_is_counted_as_torch_counts_it():
    """The demo SD pipeline, built from configs and saved with save_pretrained (session-cached)."""
    from models.image import build_demo_sd, ensure_demo_sd

    identity = identify(ensure_demo_sd())
    pipe = build_demo_sd()
    parameters = sum(
        p.numel() for m in pipe.components.values() if hasattr(m, "parameters") for p in m.parameters()
    )
    assert (identity.kind, identity.family, identity.runnable, identity.dtype) == (
        FoundKind.image,
        "SD1.5",
        True,
        "F32",
    )
    assert identity.parameters == parameters


# --------------------------------------------------------------------------- bad input


def _refused(path: Path) -> str:
    start = time.perf_counter()
    with pytest.raises(BadInput) as caught:
        identify(path)
    assert time.perf_counter() - start < 1.0  # refused from the header, nothing parsed at length
    return str(caught.value)


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("shopping list")
    assert "notes.txt is not a model file" in _refused(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    assert "has no config.json or model_index.json: not a model folder" in _refused(tmp_path / "folder")
    assert "No such file or directory" in _refused(tmp_path / "gone.safetensors")


def test_a_truncated_safetensors_file_is_refused(tmp_path):
    whole = mf.write_safetensors(tmp_path / "whole.safetensors", mf.SD15)
    message = _refused(mf.truncated_copy(whole, tmp_path / "cut.safetensors"))
    assert "cut.safetensors" in message and "outside the file" in message


def test_hostile_safetensors_headers_are_refused(tmp_path):
    assert "damaged or hostile" in _refused(mf.huge_header(tmp_path / "huge.safetensors"))
    assert "unreadable safetensors header" in _refused(mf.non_json_header(tmp_path / "garbage.safetensors"))


def test_a_safetensors_shape_that_does_not_match_its_bytes_is_refused(tmp_path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F16", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    assert "has shape" in _refused(path) and "8 bytes of data" in _refused(path)


def test_a_gguf_with_a_bogus_tensor_count_is_refused(tmp_path):
    message = _refused(mf.bogus_tensor_count_gguf(tmp_path / "bogus.gguf"))
    assert "bogus.gguf is damaged or hostile: its tensor count is 1152921504606846976" in message


def test_a_truncated_gguf_is_refused(tmp_path):
    whole = mf.write_gguf(tmp_path / "whole.gguf")
    assert "truncated" in _refused(mf.truncated_copy(whole, tmp_path / "cut.gguf"))


def test_a_fifo_or_a_symlink_loop_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    assert "is not a regular file" in _refused(fifo)
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop.name)
    assert "Too many levels of symbolic links" in _refused(loop)


def test_a_hostile_config_is_refused(tmp_path):
    folder = tmp_path / "model"
    mf.write_config(
        folder / "config.json", {"model_type": "llama", "hidden_size": "wide", "num_attention_heads": 0}
    )
    mf.write_safetensors(folder / "model.safetensors", {"model.embed_tokens.weight": (4, 4)})
    assert "config.json" in _refused(folder)
    mf.write_config(folder / "config.json", [1, 2, 3])
    assert "is not a JSON object" in _refused(folder)
    (folder / "config.json").write_bytes(b"{" * 100_000)
    assert "not readable JSON" in _refused(folder)


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_mutated_headers_are_identified_or_refused_never_a_crash(tmp_path, kind):
    """Seeded byte flips and cuts through the header of a real file: each one either still reads
    (a flip in a name, say) or is a BadInput; no other exception escapes."""
    import random

    if kind == "gguf":
        original = mf.write_gguf(tmp_path / "seed.gguf", name="SmolLM2").read_bytes()
    else:
        original = mf.write_safetensors(
            tmp_path / "seed.safetensors", mf.SDXL, {"ss_base_model_version": "x"}
        ).read_bytes()
    header_end = min(len(original), 1200)
    rng = random.Random(17)
    path = tmp_path / f"mutant.{kind}"
    for _ in range(300):
        data = bytearray(original)
        for _flip in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path.write_bytes(bytes(data))
        try:
            identify(path)
        except BadInput:
            pass
