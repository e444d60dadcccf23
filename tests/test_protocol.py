"""The job protocol travels as JSON and refuses anything malformed with a reason."""

from __future__ import annotations

import json

import pytest

from workers.arbiter.messages import ClientMessage, Granted, Register, Tier
from workers.codec import PROTOCOL_VERSION, MalformedMessage, VersionMismatch, decode, encode
from workers.errors import BadInput, ErrorKind
from workers.protocol import (
    SEED_MAX,
    BrushBaseRequest,
    BrushLayer,
    BrushRenderRequest,
    Cancel,
    ChatMessage,
    ChatRequest,
    Command,
    Failed,
    Hello,
    ImageRequest,
    MusicRequest,
    Priority,
    Progress,
    Submit,
    VideoRequest,
    WorkerEvent,
    WorkerKind,
)


def test_every_message_round_trips_through_json():
    messages = [
        Submit(job_id="a", request=ImageRequest(prompt="cat", steps=3), priority=Priority.background),
        Submit(
            job_id="b",
            request=ChatRequest(messages=(ChatMessage(role="user", content="hi"),)),
            priority=Priority.interactive,
        ),
        Progress(job_id="c", step=1, total=4, message="m", preview_png=b"\x89PNG\x00\xff"),
        Failed(job_id="d", kind=ErrorKind.worker_crashed, message="gone", traceback="tb"),
    ]
    for message in messages:
        data = encode(message)
        assert json.loads(data)["type"] == type(message).__name__  # plain JSON, never a pickle
        assert decode(data) == message


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x00garbage", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "Submit", "v": 99}', "protocol version 99; this build speaks version 1"),
        (b'{"type": "Explode", "v": 1}', "unknown message type"),
        (b'{"type": "Progress", "v": 1, "job_id": "x", "step": "one", "total": 2}', "expected int"),
        (
            b'{"type": "Failed", "v": 1, "job_id": "x", "kind": "meltdown", "message": ""}',
            "not a valid ErrorKind",
        ),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(data, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode(data)


@pytest.mark.parametrize(
    "request_, problem",
    [
        (ImageRequest(prompt=""), "prompt is empty"),
        (ImageRequest(prompt="x", steps=0), "steps"),
        (ImageRequest(prompt="x", height=100), "height must be a multiple of 8"),
        (VideoRequest(prompt="x", frames=0), "frames"),
        (VideoRequest(prompt="x", fps=0), "fps"),
        (MusicRequest(prompt="x", seconds=0), "seconds"),
        (MusicRequest(prompt="x", bpm=1000), "bpm"),
        (ChatRequest(messages=(ChatMessage(role="user", content=" "),)), "prompt is empty"),
        (ChatRequest(messages=(ChatMessage(role="user", content="hi"),), max_new_tokens=0), "max new tokens"),
        (
            ChatRequest(messages=(ChatMessage(role="user", content="hi"),), quant="int3"),
            "quantization must be one of auto",
        ),
    ],
)
def test_requests_name_the_bad_field(request_, problem):
    with pytest.raises(BadInput, match=problem):
        request_.validate()


# --------------------------------------------------------------------------- typed decoding


def _plain(message) -> dict:
    return json.loads(encode(message))


def _submit() -> Submit:
    return Submit(job_id="a", request=ImageRequest(prompt="cat"), priority=Priority.single_shot)


def test_a_field_takes_only_the_message_types_it_names():
    data = _plain(_submit())
    data["request"] = _plain(Cancel(job_id="a"))
    with pytest.raises(
        MalformedMessage, match=r"Submit\.request: expected ImageRequest \| ChatRequest .*, got Cancel"
    ):
        decode(json.dumps(data))
    chat = _plain(ChatRequest(messages=(ChatMessage(role="user", content="hi"),)))
    chat["messages"][0] = _plain(Tier(name="t", bytes=1))
    with pytest.raises(MalformedMessage, match=r"ChatRequest\.messages\[0\]: expected ChatMessage, got Tier"):
        decode(json.dumps(chat))


def test_decode_refuses_a_top_level_message_of_another_type():
    granted = encode(Granted(request_id="r", lease_id="l", bytes=1, tier="t"))
    with pytest.raises(MalformedMessage, match=r"expected Submit \| Cancel \| Shutdown, got Granted"):
        decode(granted, expected=Command)
    with pytest.raises(MalformedMessage, match="got Submit"):
        decode(encode(_submit()), expected=WorkerEvent)
    with pytest.raises(MalformedMessage, match="got Hello"):
        decode(encode(Hello(kind=WorkerKind.image, pid=1)), expected=ClientMessage)
    assert decode(encode(_submit()), expected=Command) == _submit()
    assert decode(encode(Register(owner="x", pid=1)), expected=(Register,)) == Register(owner="x", pid=1)


def test_unknown_and_missing_fields_are_refused_by_name():
    data = _plain(_submit())
    data["request"]["clip_skip"] = 2
    with pytest.raises(MalformedMessage, match="Submit.request: ImageRequest has no field 'clip_skip'"):
        decode(json.dumps(data))
    data = _plain(_submit())
    del data["job_id"]
    with pytest.raises(MalformedMessage, match="Submit is missing the field 'job_id'"):
        decode(json.dumps(data))
    data = _plain(_submit())
    data["request"]["v"] = 1  # the version belongs to the envelope only
    with pytest.raises(MalformedMessage, match="has no field 'v'"):
        decode(json.dumps(data))


def test_a_message_from_another_protocol_version_is_refused_naming_both():
    data = _plain(Hello(kind=WorkerKind.chat, pid=7))
    assert data["v"] == PROTOCOL_VERSION
    data["v"] = PROTOCOL_VERSION + 1
    with pytest.raises(VersionMismatch) as caught:
        decode(json.dumps(data), expected=WorkerEvent)
    text = str(caught.value)
    assert f"version {PROTOCOL_VERSION + 1}" in text and f"version {PROTOCOL_VERSION}" in text
    assert (caught.value.theirs, caught.value.ours) == (PROTOCOL_VERSION + 1, PROTOCOL_VERSION)
    del data["v"]
    with pytest.raises(MalformedMessage, match="not a Hearth message: it has no protocol version") as caught:
        decode(json.dumps(data))
    assert not isinstance(caught.value, VersionMismatch)


def test_nested_bytes_and_tuples_name_their_path():
    data = _plain(Progress(job_id="x", step=1, total=2, preview_png=b"png"))
    data["preview_png"] = "cG5n"
    with pytest.raises(MalformedMessage, match=r"Progress\.preview_png: expected bytes \| None, got str"):
        decode(json.dumps(data))
    render = BrushRenderRequest(session_id="s", project_path="p", width=8, height=8, steps=4)
    data = _plain(render)
    data["layers"] = [{"type": "BrushLayer", "id": "l", "mask_png": {"__bytes__": "AA=="}, "seed": "7"}]
    with pytest.raises(
        MalformedMessage, match=r"BrushRenderRequest\.layers\[0\]\.seed: expected int, got str"
    ):
        decode(json.dumps(data))


SEEDED = [
    lambda seed: ImageRequest(prompt="x", seed=seed),
    lambda seed: ChatRequest(messages=(ChatMessage(role="user", content="hi"),), seed=seed),
    lambda seed: VideoRequest(prompt="x", seed=seed),
    lambda seed: MusicRequest(prompt="x", seed=seed),
    lambda seed: BrushBaseRequest(session_id="s", prompt="x", seed=seed),
]


@pytest.mark.parametrize("make", SEEDED)
@pytest.mark.parametrize("seed", [2**70, 2**63, -1, True])
def test_every_seed_out_of_range_is_bad_input_naming_the_field(make, seed):
    with pytest.raises(BadInput, match="seed must be (a whole number )?between 0 and 9223372036854775807"):
        make(seed).validate()


@pytest.mark.parametrize("make", SEEDED)
def test_the_largest_seed_is_accepted_and_fits_a_torch_generator(make):
    make(SEED_MAX).validate()
    make(0).validate()


def test_the_largest_seed_fits_a_torch_generator_even_with_music_windows():
    torch = pytest.importorskip("torch")
    torch.Generator("cpu").manual_seed(SEED_MAX + 7200)  # music seeds window i with seed + i


def test_a_brush_layer_seed_out_of_range_names_the_layer():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="PNG")
    layer = BrushLayer(id="l1", name="sky", mask_png=buffer.getvalue(), regen_step=0, seed=2**64)
    with pytest.raises(BadInput, match="layer 'sky': seed must be between"):
        layer.validate(8, 8, 4)


def test_video_slices_share_the_workers_limit():
    from workers.protocol import MAX_SLICES
    from workers.video.memory_plan import parse_memory_mode

    VideoRequest(prompt="x", memory_mode=f"slices:{MAX_SLICES}").validate()
    assert parse_memory_mode(f"slices:{MAX_SLICES}") == MAX_SLICES
    for mode in (f"slices:{MAX_SLICES + 1}", "slices:0", "slices:-1", "slices:"):
        with pytest.raises(BadInput, match=f"N from 1 to {MAX_SLICES}"):
            VideoRequest(prompt="x", memory_mode=mode).validate()
        with pytest.raises(BadInput, match=f"N from 1 to {MAX_SLICES}"):
            parse_memory_mode(mode)


def test_the_supervisor_refuses_a_worker_hello_of_another_version(tmp_path):
    import multiprocessing as mp

    from workers.jobstore import JobStore
    from workers.protocol import WorkerState, WorkerStatus
    from workers.supervisor import Supervisor

    events: list[object] = []
    store = JobStore(tmp_path / "hearth.db")
    supervisor = Supervisor(kinds=[WorkerKind.image], store=store, listener=events.append)
    handle = supervisor._workers[WorkerKind.image]  # a worker of another build, without spawning one
    parent, child = mp.Pipe()
    handle.conn, handle.status = parent, WorkerStatus.starting
    hello = _plain(Hello(kind=WorkerKind.image, pid=4242))
    hello["v"] = hello["protocol_version"] = PROTOCOL_VERSION + 1
    child.send_bytes(json.dumps(hello).encode())
    supervisor._drain(handle)
    [state] = [event for event in events if isinstance(event, WorkerState)]
    assert handle.status is WorkerStatus.starting and state.status is not WorkerStatus.ready, "no jobs for it"
    assert f"Hello from a Hearth build speaking protocol version {PROTOCOL_VERSION + 1}" in state.detail
    assert f"this build speaks version {PROTOCOL_VERSION}" in state.detail
    parent.close()
    child.close()
    store.close()


def test_a_brush_render_holds_at_most_as_many_layers_as_a_project_may():
    from workers.protocol import MAX_BRUSH_LAYERS

    layers = tuple(BrushLayer(id=f"l{i}", mask_png=b"") for i in range(MAX_BRUSH_LAYERS + 1))
    render = BrushRenderRequest(session_id="s", project_path="p", width=8, height=8, steps=4, layers=layers)
    with pytest.raises(BadInput, match=f"257 layers; a brush session holds at most {MAX_BRUSH_LAYERS}"):
        render.validate()


def test_the_most_steps_the_schema_allows_stay_inside_the_schedulers_training_steps():
    """At 1000 steps an SD-style DDIM (steps_offset=1) indexed past its 1000 training steps."""
    from diffusers import DDIMScheduler, PNDMScheduler

    from workers.protocol import MAX_STEPS

    for scheduler in (
        DDIMScheduler(num_train_timesteps=1000, steps_offset=1, set_alpha_to_one=False),
        PNDMScheduler(num_train_timesteps=1000, steps_offset=1, skip_prk_steps=True),
    ):
        scheduler.set_timesteps(MAX_STEPS)
        assert int(scheduler.timesteps.max()) < scheduler.config.num_train_timesteps
