"""Re-encode a GGUF's weights in another llama.cpp type (F16 or Q8_0), GGUF to GGUF, with the
``gguf`` package: every tensor dequantized from the file's own type, then written in the new one.

Why: the embedded SmolLM2-135M ships as Q4_1, and on llama.cpp that file gets simple questions
wrong ("What is the capital of France?" answered with the Marseillaise) where the same weights
at a higher precision answer right (``models.chat_memory.EMBEDDED_F16`` says which). The model
stays a GGUF on llama.cpp: no transformers folder, no safetensors.

Memory stays low: the header is written first (every tensor's new size is arithmetic), then each
tensor is converted and appended one at a time. The result appears complete or not at all.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path

from workers.atomic import atomic_path, sweep_stale_temp_files

TARGETS = ("F16", "Q8_0")
Progress = Callable[[float], None]


def requantized_types(tensors: dict, target: str, f16: tuple[str, ...] = ()) -> dict:
    """``tensors`` (name -> (GGUF dims, ggml type)) as they will be after re-encoding in ``target``:
    matrices in ``target`` (those whose name holds one of ``f16`` in F16), vectors (norms,
    biases) in F32, as llama.cpp's own quantizer does."""
    from gguf.constants import GGMLQuantizationType as T

    out = {}
    for name, (dims, old) in tensors.items():
        kind = T.F16 if any(part in name for part in f16) else T[target]
        matrix = len(dims) >= 2 and (kind is not T.Q8_0 or dims[0] % 32 == 0)
        out[name] = (dims, int(kind) if matrix else (old if old == T.F32 else int(T.F32)))
    return out


def requantize(
    source: Path,
    target_path: Path,
    target: str,
    f16: tuple[str, ...] = (),
    on_progress: Progress = lambda _: None,
) -> Path:
    """Write ``source`` re-encoded in ``target`` (F16 or Q8_0; tensors named with a part in ``f16``
    in F16) to ``target_path``, atomically."""
    import gguf
    import numpy as np
    from gguf.constants import GGMLQuantizationType as T

    if target not in TARGETS:
        raise ValueError(f"unknown GGUF target type {target!r}: use one of {', '.join(TARGETS)}")
    reader = gguf.GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    planned = requantized_types(
        {t.name: (list(map(int, t.shape)), int(t.tensor_type)) for t in reader.tensors}, target, f16
    )
    file_type = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[target]
    total = sum(int(t.n_elements) for t in reader.tensors) or 1
    done = 0
    with atomic_path(target_path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        for field in reader.fields.values():
            # the writer writes the GGUF.* counts and the architecture itself
            if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
        writer.add_file_type(int(file_type))
        for tensor in reader.tensors:
            kind = T(planned[tensor.name][1])
            shape = tuple(int(d) for d in reversed(tensor.shape))  # numpy order
            writer.add_tensor_info(
                tensor.name, shape, np.float32, _encoded_bytes(shape, kind), raw_dtype=kind
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            kind = T(planned[tensor.name][1])
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(
                tuple(int(d) for d in reversed(tensor.shape))
            )
            writer.write_tensor_data(np.ascontiguousarray(gguf.quants.quantize(values, kind)))
            done += int(tensor.n_elements)
            on_progress(done / total)
        writer.close()
    return target_path


def _encoded_bytes(shape: tuple[int, ...], kind) -> int:
    from gguf.constants import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[kind]
    count = 1
    for dim in shape:
        count *= dim
    return count // block * size


def requantized_once(
    source: Path,
    target_path: Path,
    target: str,
    f16: tuple[str, ...] = (),
    on_status: Callable[[str], None] = lambda _: None,
) -> Path:
    """``target_path``, converted from ``source`` the first time (one process at a time: a second
    worker waits on the lock and then finds the file); progress goes to ``on_status``."""
    if target_path.is_file():
        return target_path
    target_path.parent.mkdir(parents=True, exist_ok=True)
    with open(target_path.parent / f".{target_path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target_path.is_file():  # the other worker finished while this one waited
            return target_path
        # Every writer holds this lock: a temp file here now is one a killed conversion left.
        sweep_stale_temp_files(target_path.parent, target_path.name, older_than_s=0)
        on_status(f"Preparing {target_path.name} from {source.name} (once, about 10 s) ...")
        shown = [0.0]

        def progress(fraction: float) -> None:
            if fraction - shown[0] >= 0.25 or fraction >= 1.0:
                shown[0] = fraction
                on_status(f"Preparing {target_path.name}: {fraction:.0%}")

        start = time.perf_counter()
        requantize(source, target_path, target, f16, progress)
        on_status(f"Prepared {target_path.name} in {time.perf_counter() - start:.0f} s")
    return target_path
