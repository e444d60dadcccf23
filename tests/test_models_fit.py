"""Fit verdicts before any load, for real models' real sizes, on 4, 8, 12 and 24 GiB devices.

The parameter counts are the published models' own (summed from their configs), so the verdicts
are the ones their users know: SD1.5 runs anywhere, SDXL wants 8 GB with offloading and 12 GB
resident, Wan 2.1 1.3B wants 8 GB with offloading (its README: 8.19 GB) and 24 GB resident, a
7B Q4 GGUF runs fully on 8 GB and half offloaded on 4 GB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from models.fit import (
    GIB,
    Budget,
    Verdict,
    catalog_tiers,
    gguf_tiers,
    image_tiers,
    judge,
    music_tiers,
    video_tiers,
)

# Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5): UNet2DConditionModel
# 859,520,964; CLIP ViT-L/14 text encoder 123,060,480; AutoencoderKL 83,653,863 (1.066e9 in all).
SD15_PARTS = {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863}
# SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0): UNet 2,567,463,684; CLIP ViT-L
# 123,060,480; OpenCLIP ViT-bigG with projection 694,659,840; VAE 83,653,863 (3.47e9 in all).
SDXL_PARTS = {
    "unet": 2_567_463_684,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "vae": 83_653_863,
}
# Wan 2.1 T2V 1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers): WanTransformer3DModel with dim 1536,
# ffn 8960, 30 layers = 1,418,996,800; the UMT5-XXL encoder (d_model 4096, d_ff 10240, 24 layers,
# vocabulary 256,384) = 5,680,910,336; the causal 3D VAE about 127e6 (Wan2.1_VAE.pth: 508 MB in fp32).
WAN_13B_PARTS = {"transformer": 1_418_996_800, "text_encoder": 5_680_910_336, "vae": 127_000_000}
# Mistral 7B v0.1 (mistralai/Mistral-7B-v0.1 config.json): vocabulary 32,000, hidden 4096,
# 32 layers, 32 heads of which 8 for K/V, intermediate 14,336, untied head: 7,241,732,096 parameters.
MISTRAL_7B = dict(
    vocab=32_000, hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14_336, context=32_768
)
MISTRAL_7B_PARAMETERS = 7_241_732_096

HOST = 32 * GIB
"""A desktop's system memory."""
BUDGETS = (4, 8, 12, 24)


def write_sparse_7b_q4_gguf(path: Path) -> Path:
    """Mistral 7B's real tensor shapes in Q4_K (the output head in Q6_K), as a Q4_K_M GGUF; the
    tensor data is a hole in a sparse file, so 4 GB of header-described weights take no disk."""
    import gguf
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    m = MISTRAL_7B
    kv = m["hidden"] // m["heads"] * m["kv_heads"]
    tensors = {"token_embd.weight": ((m["vocab"], m["hidden"]), GGMLQuantizationType.Q4_K)}
    for block in range(m["layers"]):
        for name, shape in (
            ("attn_q", (m["hidden"], m["hidden"])),
            ("attn_k", (kv, m["hidden"])),
            ("attn_v", (kv, m["hidden"])),
            ("attn_output", (m["hidden"], m["hidden"])),
            ("ffn_gate", (m["intermediate"], m["hidden"])),
            ("ffn_up", (m["intermediate"], m["hidden"])),
            ("ffn_down", (m["hidden"], m["intermediate"])),
        ):
            tensors[f"blk.{block}.{name}.weight"] = (shape, GGMLQuantizationType.Q4_K)
        for norm in ("attn_norm", "ffn_norm"):
            tensors[f"blk.{block}.{norm}.weight"] = ((m["hidden"],), GGMLQuantizationType.F32)
    tensors["output_norm.weight"] = ((m["hidden"],), GGMLQuantizationType.F32)
    tensors["output.weight"] = ((m["vocab"], m["hidden"]), GGMLQuantizationType.Q6_K)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Mistral 7B Instruct v0.1")
    writer.add_context_length(m["context"])
    writer.add_embedding_length(m["hidden"])
    writer.add_block_count(m["layers"])
    writer.add_feed_forward_length(m["intermediate"])
    writer.add_head_count(m["heads"])
    writer.add_head_count_kv(m["kv_heads"])
    writer.add_vocab_size(m["vocab"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_chat_template("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    data_bytes = 0
    for name, (shape, kind) in tensors.items():
        block, size = GGML_QUANT_SIZES[kind]
        nbytes = int(np.prod(shape)) // block * size
        writer.add_tensor_info(name, shape, np.float32, nbytes, raw_dtype=kind)
        data_bytes += writer.ggml_pad(nbytes, writer.data_alignment)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = os.path.getsize(path)
    os.truncate(path, writer.ggml_pad(header, writer.data_alignment) + data_bytes)
    return path


@pytest.fixture(scope="module")
def mistral_7b_q4(tmp_path_factory) -> Path:
    return write_sparse_7b_q4_gguf(tmp_path_factory.mktemp("gguf") / "mistral-7b-instruct-v0.1.Q4_K_M.gguf")


def verdicts(tiers, host: int = HOST) -> dict[int, Verdict]:
    return {gib: judge(tiers, Budget(gib * GIB, host)).verdict for gib in BUDGETS}


def test_sd15_fits_every_budget_resident():
    fits = Verdict.fits
    assert verdicts(image_tiers("SD1.5", SD15_PARTS)) == {4: fits, 8: fits, 12: fits, 24: fits}


def test_sdxl_needs_offloading_on_8_gib_and_fits_resident_from_12():
    # Hearth offloads whole parts, not layers: SDXL's UNet alone is 4.8 GiB in fp16, so a 4 GiB
    # card runs it on the CPU.
    assert verdicts(image_tiers("SDXL", SDXL_PARTS)) == {
        4: Verdict.cpu_only,
        8: Verdict.fits_reduced,
        12: Verdict.fits,
        24: Verdict.fits,
    }


def test_wan_1_3b_needs_8_gib_offloaded_and_24_resident():
    # Its UMT5-XXL text encoder (5.7e9 parameters, 10.6 GiB in bf16) is what keeps it off 12 GiB resident.
    assert verdicts(video_tiers("Wan 2.1", WAN_13B_PARTS)) == {
        4: Verdict.cpu_only,
        8: Verdict.fits_reduced,
        12: Verdict.fits_reduced,
        24: Verdict.fits,
    }


def test_a_7b_q4_gguf_fits_8_gib_and_runs_half_offloaded_on_4(mistral_7b_q4):
    from models.identify import identify

    identity = identify(mistral_7b_q4)
    assert (identity.kind.value, identity.family, identity.dtype) == ("chat", "Llama", "Q4_K_M")
    assert identity.parameters == MISTRAL_7B_PARAMETERS
    assert 3.8 * GIB < identity.file_bytes < 4.2 * GIB
    assert verdicts(identity.tiers) == {
        4: Verdict.fits_reduced,
        8: Verdict.fits,
        12: Verdict.fits,
        24: Verdict.fits,
    }
    fit = judge(identity.tiers, Budget(4 * GIB, HOST))
    assert fit.tier == "gpu-16/32" and fit.slowdown > 1


def test_the_gguf_tiers_are_the_ones_the_chat_worker_leases(mistral_7b_q4):
    from models.chat_memory import gguf_context, gguf_plans, read_gguf_footprint

    footprint = read_gguf_footprint(mistral_7b_q4)
    plans = gguf_plans(footprint, gguf_context(footprint), offload=True)
    tiers = gguf_tiers(footprint)
    assert [t.name for t in tiers] == [p.name for p in plans]
    assert [t.device_bytes for t in tiers if not t.on_cpu] == [p.bytes for p in plans if p.gpu_layers]
    assert tiers[-1].host_bytes == footprint.host_bytes(gguf_context(footprint))


def test_without_a_gpu_everything_that_fits_memory_is_cpu_only(mistral_7b_q4):
    from models.identify import identify

    no_gpu = Budget(0, HOST)
    for tiers in (image_tiers("SD1.5", SD15_PARTS), identify(mistral_7b_q4).tiers):
        assert judge(tiers, no_gpu).verdict is Verdict.cpu_only


def test_too_little_system_memory_for_the_cpu_tier_is_wont_fit():
    fit = judge(video_tiers("Wan 2.1", WAN_13B_PARTS), Budget(4 * GIB, 16 * GIB))
    assert fit.verdict is Verdict.wont_fit
    assert fit.tier == "cpu" and fit.needs_bytes > 16 * GIB


def test_reduced_tiers_say_how_much_slower():
    fit = judge(image_tiers("SDXL", SDXL_PARTS), Budget(8 * GIB, HOST))
    assert (fit.tier, fit.slowdown) == ("offloaded", 4.0)
    assert judge(image_tiers("SDXL", SDXL_PARTS), Budget(4 * GIB, HOST)).slowdown >= 10


def test_a_part_of_a_model_has_no_verdict_and_music_is_resident_only():
    assert judge((), Budget(8 * GIB, HOST)) is None
    musicgen_small = 590_000_000  # facebook/musicgen-small: T5-base encoder, decoder, EnCodec
    assert [t.name for t in music_tiers(musicgen_small)] == ["resident", "cpu"]
    assert judge(music_tiers(musicgen_small), Budget(4 * GIB, HOST)).verdict is Verdict.fits


def test_catalog_models_are_judged_by_the_catalogs_own_estimates():
    from models.catalog import entry

    tiers = catalog_tiers(entry("demo-animatediff").memory_bytes)
    assert judge(tiers, Budget(1 * GIB, HOST)).verdict is Verdict.fits
    assert judge(tiers, Budget(64 * 1024**2, HOST)).verdict is Verdict.fits_reduced
    assert judge(tiers, Budget(0, HOST)).verdict is Verdict.cpu_only


def test_a_tiny_demo_sized_model_is_not_charged_its_familys_activations():
    tiny = image_tiers("SDXL", {"unet": 2_000_000})
    assert tiny[0].device_bytes < 100 * 1024**2
