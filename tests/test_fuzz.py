"""Fuzzing the surfaces that take outside input (issue 14): shared settings and strategies, and
the job schema decoder itself.

Every target holds one property: outside bytes either give a result or raise the one error kind
its callers handle (``BadInput``; ``MalformedMessage`` for the wire codec), never another
exception, never a hang, never more than ``MAX_EXTRA_MB`` of memory, never a write outside the
folders the test gives it. Each input that once broke a property lives in ``tests/fuzz_corpus/``
and is replayed by a parametrized test beside its target.

The default run (``make test``) is small and derandomized, so CI is reproducible;
``HEARTH_FUZZ_EXAMPLES=2000`` (``make fuzz``) raises every target's example count and draws fresh
random inputs. Other targets: ``test_fuzz_files.py`` (projects, media metadata, model headers),
``test_fuzz_arbiter.py`` (the arbiter socket), ``test_fuzz_cli.py`` (``hearth run`` arguments).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
import resource
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers import codec
from workers.arbiter.messages import ArbiterMessage, ClientMessage
from workers.errors import BadInput
from workers.protocol import (
    BrushBaseRequest,
    BrushLayer,
    BrushRenderRequest,
    ChatMessage,
    ChatRequest,
    Command,
    ImageRequest,
    MusicRequest,
    Priority,
    Submit,
    VideoRequest,
    WorkerEvent,
)

CORPUS = Path(__file__).with_name("fuzz_corpus")
EXAMPLES_ENV = "HEARTH_FUZZ_EXAMPLES"
LONG_RUN = bool(os.environ.get(EXAMPLES_ENV))
MAX_EXTRA_MB = 100
"""Peak resident memory one example may add (the hostile-project tests' bound)."""
ADDRESS_HEADROOM = 1 << 30
"""Address space one example may map beyond what the process maps when it starts."""

settings.register_profile(
    "hearth-fuzz",
    derandomize=True,  # the same inputs on every run: a CI failure reproduces locally
    database=None,
    deadline=2000,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile(
    "hearth-fuzz-long",
    settings.get_profile("hearth-fuzz"),
    derandomize=False,  # fresh inputs each run; a failure prints its blob to replay it
)
PROFILE = settings.get_profile("hearth-fuzz-long" if LONG_RUN else "hearth-fuzz")
"""Applied per test (never loaded globally): other suites' hypothesis tests keep their own."""


def fuzz_settings(examples: int, share: float = 1.0, **changes) -> settings:
    """``examples`` in the default run; ``share`` of ``$HEARTH_FUZZ_EXAMPLES`` in a long one
    (the arbiter's examples each cost a socket round trip, so it takes a smaller share)."""
    if LONG_RUN:
        examples = max(examples, int(int(os.environ[EXAMPLES_ENV]) * share))
    return settings(PROFILE, max_examples=examples, **changes)


def long_run_timeout(seconds: float):
    """pytest-timeout for a fuzz test: ``seconds`` by default, none in a long run."""
    return pytest.mark.timeout(0 if LONG_RUN else seconds)


pytestmark = long_run_timeout(300)


# --------------------------------------------------------------------------- guards


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/self/status has no {field}")


@contextlib.contextmanager
def bounded_memory(max_extra_mb: float = MAX_EXTRA_MB) -> Iterator[None]:
    """Asserts the block's peak resident memory stayed within ``max_extra_mb`` of the start.

    The block also runs under an address-space limit ``ADDRESS_HEADROOM`` above what the process
    maps now: a reader that asks for gigabytes (a header's count of 2^32) fails at once with a
    ``MemoryError``, which the property rejects, instead of taking the machine's memory first.
    """
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident size now
    start = _status_kb("VmRSS")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _status_kb("VmSize") * 1024 + ADDRESS_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    extra_mb = (_status_kb("VmHWM") - start) / 1024
    assert extra_mb < max_extra_mb, f"one input took {extra_mb:.0f} MB more memory"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and mtime: a write anywhere shows."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@contextlib.contextmanager
def no_writes_under(root: Path, except_for: tuple[Path, ...] = ()) -> Iterator[None]:
    """Asserts nothing under ``root`` (but ``except_for``) was created, changed or removed."""
    skip = {str(Path(p).relative_to(root)) for p in except_for}
    before = {k: v for k, v in tree(root).items() if k not in skip}
    yield
    after = {k: v for k, v in tree(root).items() if k not in skip}
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"


@contextlib.contextmanager
def in_folder(path: Path) -> Iterator[None]:
    """Relative paths in an input land here, where ``no_writes_under`` watches."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


# --------------------------------------------------------------------------- the corpus


def corpus(target: str) -> list[Path]:
    """Regression inputs of a target: one file each, ``.gz`` ones stored compressed."""
    folder = CORPUS / target
    return (
        sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")
        if folder.is_dir()
        else []
    )


def corpus_params(target: str):
    """``pytest.mark.parametrize`` over a target's corpus, with readable ids."""
    paths = corpus(target)
    return pytest.mark.parametrize("case", paths, ids=[p.name for p in paths])


def corpus_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


# --------------------------------------------------------------------------- strategies

TRICKY_TEXT = (
    "",
    " ",
    "..",
    "../../../x",
    "/abs",
    "a\\..\\b",
    "C:\\x",
    "nul\x00byte",
    "\ud800",
    "²",
    "٣",
    "slices:²",
    "slices:0",
    "slices:1025",
    "slices:-1",
    "4/0",
    "0/4",
    "99/4",
    "C G Am F",
    "%",
    "NaN",
    "Infinity",
    "-0",
)


ODD_CHARACTERS = ("²", "٣", "𝟘", "\x00", "\ud800", "/", "\\", ".", ":", " ", "\n", "-", "+")
DIGIT_RUNS = st.sampled_from((1, 3, 4, 4300, 4301, 6000)).map(lambda n: "1" * n)
"""int() refuses a run of more than 4300 digits (CPython's guard against quadratic parsing)."""


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text that reaches the odd corners: the tricky ones above, long digit runs, prefixes a
    parser keys on, and plain random text."""
    prefixed = st.tuples(
        st.sampled_from(("slices:", "4/", "C", "blk.", "/")), st.text(max_size=8) | DIGIT_RUNS
    )
    return st.one_of(
        st.sampled_from(TRICKY_TEXT), st.text(max_size=max_size), DIGIT_RUNS, prefixed.map("".join)
    )


@st.composite
def edited_text(draw, text: str) -> str:
    """``text`` (a real value of the field) with characters inserted, replaced or removed."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        match draw(st.sampled_from(("insert", "replace", "delete"))):
            case "insert":
                piece = draw(st.sampled_from(ODD_CHARACTERS) | DIGIT_RUNS | st.text(max_size=4))
                text = text[:at] + piece + text[at:]
            case "replace":
                text = text[:at] + draw(st.sampled_from(ODD_CHARACTERS)) + text[at + 1 :]
            case "delete":
                text = text[:at] + text[at + draw(st.integers(1, 4)) :]
    return text


def like(value) -> st.SearchStrategy:
    """A value for a field that now holds ``value``: mostly of its type, sometimes of any."""
    match value:
        case bool():
            kind = st.booleans()
        case int() | float():
            near = st.sampled_from((-1, 0, 1)).map(lambda d: value + d)
            kind = near | NUMBERS
        case str():
            kind = edited_text(value) | texts()
        case tuple() if value:
            kind = st.lists(st.sampled_from(value).flatmap(like), max_size=4).map(tuple)
        case _ if dataclasses.is_dataclass(value):
            kind = edited_fields(value)
        case _:
            kind = json_values()
    return st.one_of(kind, kind, kind, json_values(4))


@st.composite
def edited_fields(draw, message, share: int = 3):
    """``message`` with one in ``share`` of its fields given other values (see ``like``)."""
    changes = {
        f.name: draw(like(getattr(message, f.name)))
        for f in dataclasses.fields(message)
        if draw(st.integers(1, share)) == 1
    }
    return dataclasses.replace(message, **changes)


NUMBERS = st.one_of(
    st.integers(-5, 70),
    st.integers(),
    st.sampled_from((0, 1, 8, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    """Any JSON value (NaN and infinities included: Python's json reads them)."""
    leaves = st.none() | NUMBERS | texts()
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(12), inner, max_size=4),
        max_leaves=max_leaves,
    )


def nested_json() -> st.SearchStrategy[bytes]:
    """Deeply nested JSON text: Python's parser recurses once per level (the limit is 1000, and
    hypothesis raises it by 2000 while a test runs). Depths are sampled: hypothesis draws small
    integers far more often than large ones."""
    depths = st.sampled_from((1, 990, 3000, 50_000, 50_000))
    return st.tuples(depths, st.sampled_from((b"[", b'{"a":'))).map(
        lambda n_open: n_open[1] * n_open[0] + b"0" + (b"]" if n_open[1] == b"[" else b"}") * n_open[0]
    )


TOKENS = (
    b"[" * 50_000,
    b"{" * 100,
    b'{"a":' * 20_000,
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"1" * 5000,
    b'"\\ud800"',
    b"\x00",
    b"\xff\xfe",
    b'{"__bytes__":"!!"}',
    b"null",
    b'"type"',
)
"""Byte strings a mutation may insert (a fuzzing dictionary): structure that random bytes almost
never spell, such as nesting deeper than the JSON parser recurses or an integer too long to read."""


@st.composite
def mutated(draw, data: bytes, max_ops: int = 4, head: int = 256) -> bytes:
    """``data`` with a few byte-level mutations: flips, cuts, insertions, deletions, duplications,
    and integers overwritten; half of them in the first ``head`` bytes, where formats keep their
    lengths and counts."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        at = draw(st.integers(0, min(head, len(out))) | st.integers(0, len(out)))
        match draw(st.sampled_from(("flip", "set", "cut", "insert", "token", "delete", "repeat", "number"))):
            case "flip" if at < len(out):
                out[at] ^= 1 << draw(st.integers(0, 7))
            case "set" if at < len(out):
                out[at] = draw(st.sampled_from((0, 0xFF, 0x7F, 0x80, ord('"'), ord("["))))
            case "cut":
                del out[at:]
            case "insert":
                out[at:at] = draw(st.binary(min_size=1, max_size=16))
            case "token":
                out[at:at] = draw(st.sampled_from(TOKENS))
            case "delete":
                del out[at : at + draw(st.integers(1, 64))]
            case "repeat":
                out[at:at] = out[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 50))
            case "number":
                fmt = draw(st.sampled_from(("<Q", "<I", ">I", "<q")))
                bits = 8 * struct.calcsize(fmt)
                value = draw(
                    st.sampled_from((0, 1, 2, 7, 8, 9, 255, 2**31, 2**32 - 1)) | st.integers(0, 2**bits - 1)
                )
                if fmt == "<q":
                    value -= 2**63
                out[at : at + bits // 8] = struct.pack(fmt, value)
    return bytes(out)


@st.composite
def edited_json(draw, value):
    """A JSON value with a few parts replaced, removed or added, at any depth."""
    for _ in range(draw(st.integers(1, 3))):
        value = _edit(draw, value)
    return value


def _edit(draw, value):
    containers = []

    def walk(node):
        if isinstance(node, (dict, list)) and node:
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(value)
    if not containers or draw(st.integers(0, 9)) == 0:
        return draw(json_values())
    node = draw(st.sampled_from(containers))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    key = draw(st.sampled_from(keys))
    match draw(st.sampled_from(("replace", "remove", "add"))):
        case "replace":
            node[key] = draw(like(node[key]))
        case "remove":
            del node[key]
        case "add" if isinstance(node, dict):
            node[draw(texts(12) | st.sampled_from(("type", "v", "__bytes__")))] = draw(json_values())
        case "add":
            node.insert(key, draw(json_values()))
    return value


# --------------------------------------------------------------------------- the job schema decoder

EXPECTED = {
    "command": Command,
    "worker event": WorkerEvent,
    "client message": ClientMessage,
    "arbiter message": ArbiterMessage,
}


def _png(size=(16, 16), mode="L", color=255) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _real_requests() -> list:
    mask = _png()
    layer = BrushLayer(id="a", mask_png=mask, name="sky", regen_step=2)
    return [
        ImageRequest(prompt="a red apple"),
        ChatRequest(messages=(ChatMessage(role="user", content="hi"),), stop=("\n\n",)),
        VideoRequest(prompt="a cat", memory_mode="slices:4"),
        MusicRequest(prompt="lofi", chords="C G Am F", bpm=90),
        BrushBaseRequest(session_id="s1", prompt="a red apple"),
        BrushRenderRequest(
            session_id="s1", project_path="p.hearth", width=16, height=16, steps=6, layers=(layer,)
        ),
    ]


REAL_SUBMITS = [Submit(job_id="j1", request=r, priority=Priority.single_shot) for r in _real_requests()]
REAL_PAYLOADS = [json.loads(codec.encode(m)) for m in REAL_SUBMITS]


@st.composite
def wire_payloads(draw) -> bytes:
    """What might arrive where a message is expected: real Submits edited field by field or byte
    by byte, envelopes of every registered type with random fields, and any JSON at all."""
    real = draw(st.sampled_from(REAL_PAYLOADS))
    envelope = st.fixed_dictionaries(
        {"type": st.sampled_from(sorted(codec._REGISTRY)), "v": st.just(1) | NUMBERS},
        optional={"job_id": texts(), "request": json_values(), "priority": texts()},
    )
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return json.dumps(draw(edited_json(json.loads(json.dumps(real))))).encode()
    if choice == 1:
        return draw(mutated(codec.encode(draw(st.sampled_from(REAL_SUBMITS)))))
    if choice == 2:
        return json.dumps(draw(envelope)).encode()
    if choice == 3:
        return draw(mutated(json.dumps(draw(edited_json(json.loads(json.dumps(real))))).encode()))
    return json.dumps(draw(json_values())).encode() if draw(st.booleans()) else draw(st.binary(max_size=64))


MASKS = [_png(), _png((16, 16), "RGBA"), _png((16, 16), "L", 0), _png((8, 8))]


@st.composite
def brush_masks(draw) -> bytes:
    """Mask PNGs: real ones, damaged ones, random bytes, and headers claiming huge sizes."""
    from tests.test_hostile_projects import bomb_png

    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.sampled_from(MASKS))
    if choice == 1:
        return draw(mutated(draw(st.sampled_from(MASKS))))
    if choice == 2:
        sides = st.sampled_from((16, 4096, 9000, 13000, 20000, 50000))
        return bomb_png(draw(sides), draw(sides))
    return draw(st.binary(max_size=64))


def check_decode(data: bytes) -> None:
    """The codec's property: a message of an expected type, or ``MalformedMessage``; a decoded
    job request's ``validate()`` raises only ``BadInput``; what decodes re-encodes to itself."""
    for expected in EXPECTED.values():
        with bounded_memory():
            try:
                msg = codec.decode(data, expected=expected)
            except codec.MalformedMessage:
                continue
        assert isinstance(msg, codec._classes(expected))
        encoded = codec.encode(msg)
        assert codec.encode(codec.decode(encoded, expected=expected)) == encoded
        if isinstance(msg, Submit):
            check_validate(msg.request)


def check_validate(request) -> None:
    with bounded_memory():
        try:
            request.validate()
        except BadInput:
            pass


@fuzz_settings(120)
@given(wire_payloads())
def test_fuzz_the_job_schema_decoder(data):
    check_decode(data)


@pytest.mark.parametrize("real", REAL_SUBMITS, ids=[type(m.request).__name__ for m in REAL_SUBMITS])
@fuzz_settings(30, share=0.5)
@given(data=st.data())
def test_fuzz_job_requests_field_by_field(real, data):
    """Each request kind with wild values in its own fields' types, through the wire and ``validate()``."""
    request = data.draw(edited_fields(real.request, share=2), label="request")
    check_decode(codec.encode(dataclasses.replace(real, request=request)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    """Photo files a brush request may name: real, damaged, a bomb header, and missing."""
    from tests.test_hostile_projects import bomb_png

    folder = tmp_path_factory.mktemp("photos")
    files = {
        "real.png": _png((16, 16), "RGB"),
        "bomb.png": bomb_png(20000, 20000),
        "junk.jpg": b"\xff\xd8junk",
    }
    files["cut.png"] = files["real.png"][:40]
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in [*files, "missing.png"]] + [str(folder)]


@fuzz_settings(60)
@given(st.lists(brush_masks(), min_size=1, max_size=3), st.data())
def test_fuzz_brush_requests_with_hostile_images(photos, masks, data):
    """Masks travel inside requests as PNG bytes and photos as paths; ``validate()`` opens both."""
    layers = [
        BrushLayer(id=f"l{i}", mask_png=mask, regen_step=data.draw(st.integers(-1, 4)))
        for i, mask in enumerate(masks)
    ]
    render = BrushRenderRequest(
        session_id="s1", project_path="p.hearth", width=16, height=16, steps=6, layers=tuple(layers)
    )
    base = BrushBaseRequest(session_id="s1", photo_path=data.draw(st.sampled_from(photos)))
    for request in (render, base):
        check_decode(codec.encode(Submit(job_id="j", request=request, priority=Priority.interactive)))


@corpus_params("codec")
def test_fuzz_corpus_codec(case):
    check_decode(corpus_bytes(case))


REPLAYED = {"codec", "project", "media", "sidecar", "safetensors", "gguf", "cli", "arbiter"}
"""Corpus folders some test replays (``corpus_params``); tests/fuzz_corpus/README.md says which."""


def test_fuzz_corpus_files_are_named_for_what_they_hold():
    """Every corpus folder is replayed, and a file's name says what broke (its bytes are the
    input; ``.gz``: compressed)."""
    folders = [path for path in CORPUS.iterdir() if path.is_dir()]
    assert {folder.name for folder in folders} <= REPLAYED
    for folder in folders:
        for path in folder.iterdir():
            assert path.name == path.name.lower() and " " not in path.name, path
