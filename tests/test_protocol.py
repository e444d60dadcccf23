"""The job protocol travels as JSON and refuses anything malformed with a reason."""

from __future__ import annotations

import json

import pytest

from workers.codec import MalformedMessage, decode, encode
from workers.errors import BadInput, ErrorKind
from workers.protocol import (
    ChatMessage,
    ChatRequest,
    Failed,
    ImageRequest,
    MusicRequest,
    Priority,
    Progress,
    Submit,
    VideoRequest,
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
        (b'{"type": "Submit", "v": 99}', "wire version"),
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
            "unknown quantization",
        ),
    ],
)
def test_requests_name_the_bad_field(request_, problem):
    with pytest.raises(BadInput, match=problem):
        request_.validate()
