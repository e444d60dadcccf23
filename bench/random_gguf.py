"""A random-weight GGUF of a real model's shape, for benchmarks on a machine with no network.

Speed on llama.cpp depends on the shapes and the weight type, not on what the weights say, so a
Llama-3.2-1B-shaped Q8_0 file with random weights decodes as fast as the real one. Q8_0 blocks are
written directly (random int8 values and one small f16 scale per 32 weights), so a 1.3 GB file
takes seconds, not the minutes quantizing random floats would. The vocabulary is a SentencePiece
one llama.cpp loads without merges: the specials, every printable ASCII character with and
without the word-start mark, then numbered filler pieces up to the real vocabulary size.

    python bench/random_gguf.py --config llama-3.2-1b --out /tmp/llama-1b.gguf
    python bench/random_gguf.py --config tiny --out /tmp/tiny.gguf   # seconds, for the CPU check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = {
    # https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct config.json
    "llama-3.2-1b": dict(
        vocab=128256, hidden=2048, layers=16, ffn=8192, heads=32, kv_heads=8, context=131072
    ),
    # Qwen2.5-1.5B-Instruct's shape (a Llama-architecture file: speed is the point, not the biases)
    "qwen2.5-1.5b": dict(vocab=151936, hidden=1536, layers=28, ffn=8960, heads=12, kv_heads=2, context=32768),
    "tiny": dict(vocab=2048, hidden=256, layers=4, ffn=512, heads=4, kv_heads=2, context=2048),
}
TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
WORD = "\u2581"  # SentencePiece's word-start mark


BYTES = range(3, 3 + 256)
"""Where the byte pieces sit (llama.cpp needs them: a newline is the piece <0x0A>)."""


def vocabulary(size: int) -> list[str]:
    ascii_chars = [chr(c) for c in range(33, 127)]
    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [WORD, *ascii_chars, *(WORD + c for c in ascii_chars)]
    pieces += [f"{WORD}w{i}" for i in range(size - len(pieces))]
    return pieces[:size]


def write(path: Path, config: str, seed: int = 0) -> Path:
    import gguf
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    c = CONFIGS[config]
    rng = np.random.default_rng(seed)
    head_dim = c["hidden"] // c["heads"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"random-{config}")
    writer.add_context_length(c["context"])
    writer.add_embedding_length(c["hidden"])
    writer.add_block_count(c["layers"])
    writer.add_feed_forward_length(c["ffn"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv_heads"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    pieces = vocabulary(c["vocab"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores([-float(i) for i in range(len(pieces))])
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * len(BYTES)
    writer.add_token_types(types + [gguf.TokenType.NORMAL] * (len(pieces) - len(types)))
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(TEMPLATE)

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0]
    scale = np.frombuffer(np.float16(0.02 / 73).tobytes(), dtype=np.uint8)  # std of uniform int8 ~73

    def q8(rows: int, cols: int) -> np.ndarray:
        blocks = rng.integers(-127, 128, size=(rows * cols // block, size), dtype=np.int8).view(np.uint8)
        blocks[:, :2] = scale
        return blocks.reshape(rows, cols // block * size)

    def matrix(name: str, rows: int, cols: int) -> None:
        writer.add_tensor(name, q8(rows, cols), raw_dtype=GGMLQuantizationType.Q8_0)

    ones = np.ones(c["hidden"], dtype=np.float32)
    kv = c["kv_heads"] * head_dim
    # Tied: the embeddings are the output head too. The byte pieces' rows are zero, so their logits
    # are 0 and never the largest of 100k random ones: no answer holds half a UTF-8 character.
    embeddings = q8(c["vocab"], c["hidden"])
    embeddings[BYTES.start : BYTES.stop] = 0
    writer.add_tensor("token_embd.weight", embeddings, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", ones)
    for i in range(c["layers"]):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        matrix(f"blk.{i}.attn_q.weight", c["hidden"], c["hidden"])
        matrix(f"blk.{i}.attn_k.weight", kv, c["hidden"])
        matrix(f"blk.{i}.attn_v.weight", kv, c["hidden"])
        matrix(f"blk.{i}.attn_output.weight", c["hidden"], c["hidden"])
        matrix(f"blk.{i}.ffn_gate.weight", c["ffn"], c["hidden"])
        matrix(f"blk.{i}.ffn_up.weight", c["ffn"], c["hidden"])
        matrix(f"blk.{i}.ffn_down.weight", c["hidden"], c["ffn"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="llama-3.2-1b")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    print(write(args.out, args.config))


if __name__ == "__main__":
    main()
