"""Memory estimates the quantization picker shows, computed without torch or loading a model."""

from __future__ import annotations

import json

from models.catalog import MIB, entry
from models.chat_memory import (
    LLAMA_3_2_1B,
    SMOLLM2_135M,
    describe_estimate,
    estimate_bytes,
    shape_for,
    shape_from_config,
    weight_bytes,
)


def test_smollm2_shape_has_its_135m_parameters():
    assert 134_000_000 < SMOLLM2_135M.linear_params + SMOLLM2_135M.dense_params < 135_000_000
    assert 1_200_000_000 < LLAMA_3_2_1B.linear_params + LLAMA_3_2_1B.dense_params < 1_300_000_000


def test_leaner_quantizations_need_less_memory():
    sizes = [estimate_bytes(SMOLLM2_135M, q) for q in ("fp32", "bf16", "int8", "nf4")]
    assert sizes == sorted(sizes, reverse=True)
    assert estimate_bytes(SMOLLM2_135M, "fp4") < estimate_bytes(SMOLLM2_135M, "int8")


def test_weight_estimates_match_the_catalog_within_a_fifth():
    catalog = entry("smollm2-135m-instruct").memory_bytes
    for quant in ("fp32", "bf16", "int8", "nf4"):
        assert abs(weight_bytes(SMOLLM2_135M, quant) - catalog[quant]) < 0.2 * catalog[quant], quant


def test_shape_from_a_local_folder_and_the_hub_id_fallback(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "vocab_size": 1000,
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "intermediate_size": 128,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 256,
            }
        )
    )
    shape = shape_for(str(folder))
    assert shape == shape_from_config(json.loads((folder / "config.json").read_text()))
    assert (shape.layers, shape.kv_heads, shape.context) == (2, 2, 256)
    assert shape_for("nobody/not-cached-anywhere") is None
    assert "known once the model is loaded" in describe_estimate("nobody/not-cached-anywhere", "nf4")


def test_described_estimate_reads_like_the_picker_label(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 576, "num_hidden_layers": 30}))
    assert describe_estimate(str(folder), "nf4").startswith("memory: about ")
    assert "MiB with nf4" in describe_estimate(str(folder), "nf4")
    auto = describe_estimate(str(folder), "auto")
    assert "(nf4) to" in auto and "(bf16)" in auto
    assert estimate_bytes(SMOLLM2_135M, "bf16") > 270 * MIB


def test_a_gguf_estimate_is_its_llama_cpp_footprint_whatever_the_quantization():
    """The embedded model is a GGUF on llama.cpp, so nf4 or bf16 change nothing; the label names the
    type it runs in, converted once from the shipped Q4_1."""
    from models.chat_memory import embedded_footprint, gguf_context

    footprint = embedded_footprint()
    label = describe_estimate("smollm2-135m-instruct", "nf4")
    assert label == describe_estimate("smollm2-135m-instruct", "auto")
    assert label.startswith("memory: about ")
    assert "on llama.cpp (Q8_0 converted once from the shipped Q4_1, 8192-token context" in label
    assert 300 * MIB < footprint.host_bytes(gguf_context(footprint)) < 600 * MIB
    assert footprint.shape == SMOLLM2_135M  # the header and the catalog's shape agree


def test_the_embedded_estimate_before_the_conversion_is_the_converted_files(
    tmp_path, monkeypatch, shared_models_dir
):
    """On a fresh machine the Memory panel shows the footprint of the file the first answer will
    write, read from the shipped header; after the conversion, from the new file: the same."""
    from models.chat import embedded_gguf_path, embedded_run_path
    from models.chat_memory import embedded_footprint, read_gguf_footprint

    monkeypatch.setenv("HEARTH_MODELS_DIR", str(tmp_path / "models"))  # a fresh machine's
    planned, label = embedded_footprint(), describe_estimate("smollm2-135m-instruct", "auto")
    # Converted where this run's first answer converted it (the same code, on another empty folder).
    monkeypatch.setenv("HEARTH_MODELS_DIR", str(shared_models_dir))
    converted = embedded_run_path()
    assert read_gguf_footprint(converted) == planned
    assert describe_estimate("smollm2-135m-instruct", "auto") == label
    shipped = read_gguf_footprint(embedded_gguf_path())
    assert planned.file_weight_bytes > shipped.file_weight_bytes  # 8-bit and F16 weigh more than 4-bit
    assert planned.file_type == "Q8_0" and shipped.file_type == "Q4_1"
