"""How much memory a chat model needs per quantization: pure arithmetic, no torch.

The GUI shows these estimates next to the quantization picker and the chat worker offers them
to the arbiter as lease tiers. Only the transformer blocks' linear layers are quantized by
bitsandbytes; embeddings, the output head and norms stay in the compute precision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

QUANTS = ("auto", "nf4", "fp4", "int8", "bf16", "fp16", "fp32")
QUANT_TITLES = {
    "auto": "Auto (from the memory the arbiter grants)",
    "nf4": "NF4 4-bit (double quant)",
    "fp4": "FP4 4-bit",
    "int8": "LLM.int8() 8-bit",
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32 (full precision)",
}
# Bytes per weight of a quantized linear layer, including block scales (64-weight blocks for 4-bit
# with double-quantized scales, one fp32 scale per row for int8).
LINEAR_BYTES = {
    "nf4": 0.5 + 0.127 / 16,
    "fp4": 0.5 + 4 / 64,
    "int8": 1.0 + 0.01,
    "bf16": 2,
    "fp16": 2,
    "fp32": 4,
}
# What the unquantized parts (embeddings, head, norms) are kept in.
DENSE_BYTES = {"nf4": 2, "fp4": 2, "int8": 2, "bf16": 2, "fp16": 2, "fp32": 4}
RUNTIME_OVERHEAD = 1.10
FIXED_OVERHEAD = 48 * 1024**2
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True, slots=True)
class ChatModelShape:
    """The few numbers of a decoder-only transformer that decide its memory."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    tied_embeddings: bool = False
    context: int = DEFAULT_CONTEXT

    @property
    def linear_params(self) -> int:
        head_dim = self.hidden // self.heads
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    @property
    def dense_params(self) -> int:
        embeddings = self.vocab * self.hidden
        return embeddings * (1 if self.tied_embeddings else 2) + (2 * self.layers + 1) * self.hidden


SMOLLM2_135M = ChatModelShape(
    vocab=49152,
    hidden=576,
    layers=30,
    intermediate=1536,
    heads=9,
    kv_heads=3,
    tied_embeddings=True,
    context=8192,
)
LLAMA_3_2_1B = ChatModelShape(
    vocab=128256,
    hidden=2048,
    layers=16,
    intermediate=8192,
    heads=32,
    kv_heads=8,
    tied_embeddings=True,
    context=131072,
)
KNOWN_SHAPES = {"smollm2-135m-instruct": SMOLLM2_135M}


def weight_bytes(shape: ChatModelShape, quant: str) -> int:
    quant = "bf16" if quant == "auto" else quant
    return int(shape.linear_params * LINEAR_BYTES[quant] + shape.dense_params * DENSE_BYTES[quant])


def kv_cache_bytes(shape: ChatModelShape, tokens: int, element_bytes: int = 2) -> int:
    head_dim = shape.hidden // shape.heads
    return 2 * shape.layers * shape.kv_heads * head_dim * tokens * element_bytes


def estimate_bytes(shape: ChatModelShape, quant: str, context_tokens: int = 2048) -> int:
    """Weights + KV cache for ``context_tokens`` + a margin for activations and the CUDA context."""
    element = 4 if quant == "fp32" else 2
    tokens = min(context_tokens, shape.context)
    total = weight_bytes(shape, quant) + kv_cache_bytes(shape, tokens, element)
    return int(total * RUNTIME_OVERHEAD) + FIXED_OVERHEAD


def est_token_seconds(shape: ChatModelShape, quant: str, on_gpu: bool) -> float:
    """A rough decode time per token: weights streamed once per token, int8 pays its outlier pass."""
    bandwidth = 300e9 if on_gpu else 10e9
    slowdown = {"int8": 3.0, "nf4": 1.3, "fp4": 1.3}.get(quant, 1.0)
    return weight_bytes(shape, quant) / bandwidth * slowdown + 0.005


def human_bytes(count: int) -> str:
    if count >= 1024**3:
        return f"{count / 1024**3:.1f} GiB"
    return f"{count / 1024**2:.0f} MiB"


def shape_from_config(config: dict) -> ChatModelShape:
    """Read a transformers ``config.json`` (as a dict) of a Llama-like decoder."""
    cfg = config.get("text_config", config)
    heads = int(cfg.get("num_attention_heads", 1))
    return ChatModelShape(
        vocab=int(cfg.get("vocab_size", 32000)),
        hidden=int(cfg.get("hidden_size", 4096)),
        layers=int(cfg.get("num_hidden_layers", 1)),
        intermediate=int(cfg.get("intermediate_size", 4096)),
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        context=int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT)),
    )


def shape_from_gguf(path: Path) -> ChatModelShape:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = _gguf_value(reader, "general.architecture")

    def number(key: str, default: int = 0) -> int:
        value = _gguf_value(reader, f"{arch}.{key}")
        return int(value) if value is not None else default

    heads = number("attention.head_count", 1)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return ChatModelShape(
        vocab=len(tokens.data) if tokens else 32000,
        hidden=number("embedding_length"),
        layers=number("block_count"),
        intermediate=number("feed_forward_length"),
        heads=heads,
        kv_heads=number("attention.head_count_kv", heads),
        tied_embeddings="output.weight" not in {t.name for t in reader.tensors},
        context=number("context_length", DEFAULT_CONTEXT),
    )


def _gguf_value(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode()
    return value[0]


def shape_for(spec: str) -> ChatModelShape | None:
    """The shape of the model the user picked, without loading it; None when it cannot be known yet."""
    spec = spec.strip()
    if spec in KNOWN_SHAPES:
        return KNOWN_SHAPES[spec]
    path = Path(spec).expanduser()
    try:
        if path.is_dir() and (path / "config.json").is_file():
            return shape_from_config(json.loads((path / "config.json").read_text()))
        if path.is_file() and path.suffix == ".gguf":
            return shape_from_gguf(path)
        return _shape_from_hub_cache(spec)
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _shape_from_hub_cache(spec: str) -> ChatModelShape | None:
    if spec.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json")
    if not isinstance(cached, str):
        return None
    return shape_from_config(json.loads(Path(cached).read_text()))


def describe_estimate(spec: str, quant: str, context_tokens: int = 2048) -> str:
    """The line the GUI shows under the quantization picker."""
    shape = shape_for(spec)
    if shape is None:
        return "memory: known once the model is loaded"
    if quant == "auto":
        low, high = (
            estimate_bytes(shape, "nf4", context_tokens),
            estimate_bytes(shape, "bf16", context_tokens),
        )
        return f"memory: about {human_bytes(low)} (nf4) to {human_bytes(high)} (bf16)"
    return f"memory: about {human_bytes(estimate_bytes(shape, quant, context_tokens))} with {quant}"
