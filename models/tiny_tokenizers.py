"""Tokenizers for the demo models, written locally: no hub access needed (see docs/FIELD-NOTES.md §4)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "a cat playing piano",
    "a dog running on the beach",
    "the quick brown fox jumps over the lazy dog",
    "a cinematic shot of a city at night",
    "an astronaut riding a horse",
    "upbeat electronic music with drums",
    "lofi beat with soft piano",
    "a red apple on a wooden table",
    "a portrait of a woman in the rain",
] * 20


def _bytes_to_unicode() -> dict[int, str]:
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """A byte-level BPE vocab (CLIP format) covering every byte; returns (vocab.json, merges.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("c", "a"), ("ca", "t</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab))
    merges_path.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return vocab_path, merges_path


def clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    vocab, merges = write_clip_vocab(folder)
    return CLIPTokenizer(str(vocab), str(merges), model_max_length=77)


def fast_tokenizer(vocab_size: int = 300, model_max_length: int = 512):
    """A small BPE tokenizer trained on the fly (for T5/UMT5 text-encoder slots)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    eos, pad, unk = "</s>", "<pad>", "<unk>"
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[pad, eos, unk])
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=pad, unk_token=unk, model_max_length=model_max_length
    )
