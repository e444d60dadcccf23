"""How many parameters a model file holds, and in which precision, from its header's shapes.

A header's shapes are the author's word like everything else in it: a safetensors tensor whose
shape does not match the bytes its offsets give it is refused, so a count can never run past what
the file really holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from workers.errors import BadInput

SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
MAX_DIMS = 8


@dataclass
class TensorCount:
    """Parameters in total, per top-level prefix (a checkpoint's parts), and bytes per dtype."""

    parameters: int = 0
    tensor_bytes: int = 0
    by_prefix: Counter = field(default_factory=Counter)
    bytes_by_dtype: Counter = field(default_factory=Counter)

    def add(self, other: TensorCount) -> None:
        self.parameters += other.parameters
        self.tensor_bytes += other.tensor_bytes
        self.by_prefix.update(other.by_prefix)
        self.bytes_by_dtype.update(other.bytes_by_dtype)

    @property
    def dtype(self) -> str:
        """The dtype holding most of the bytes ("F16"), or "" for no tensors."""
        return self.bytes_by_dtype.most_common(1)[0][0] if self.bytes_by_dtype else ""


def count_safetensors(header: dict, what: str, prefix_of=lambda name: name.split(".")[0]) -> TensorCount:
    """Count a checked safetensors header (``models.safetensors_header.read_safetensors_header``)."""
    count = TensorCount()
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        elements = _elements(tensor.get("shape"), what, name)
        start, end = tensor["data_offsets"]
        bits = SAFETENSORS_DTYPE_BITS.get(tensor.get("dtype"))
        if elements * (bits or 1) > (end - start) * 8 or (bits and elements * bits != (end - start) * 8):
            raise BadInput(
                f"{what} is damaged or hostile: tensor {name[:80]!r} has shape {tensor.get('shape')!r} "
                f"but {end - start} bytes of data"
            )
        count.parameters += elements
        count.tensor_bytes += end - start
        count.by_prefix[prefix_of(name)] += elements
        count.bytes_by_dtype[str(tensor.get("dtype"))] += end - start
    return count


def count_gguf(tensors: dict) -> TensorCount:
    """Count a GGUF's tensors (``models.chat_memory.read_gguf_header``: name -> (dims, type)); its
    bytes and quantization come from its footprint, which sizes every ggml type."""
    count = TensorCount()
    for name, (shape, _kind) in tensors.items():
        elements = 1
        for dim in shape:
            elements *= dim
        count.parameters += elements
        count.by_prefix[name.split(".")[0]] += elements
    return count


def _elements(shape: object, what: str, name: str) -> int:
    valid = (
        isinstance(shape, list)
        and len(shape) <= MAX_DIMS
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    )
    if not valid or not isinstance(shape, list):
        raise BadInput(f"{what}: tensor {name[:80]!r} has no valid shape ({str(shape)[:80]})")
    elements = 1
    for dim in shape:
        elements *= dim
    return elements
