"""``/v1/chat/completions`` and ``/v1/completions`` through the official client, on the embedded model."""

from __future__ import annotations

import base64

import httpx2 as httpx
import numpy as np
import openai
import pytest

from tests.api_helpers import running_api
from workers.protocol import Cancelled, JobOrigin, Queued, WorkerKind

pytestmark = pytest.mark.timeout(300)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "extra_body": {"repetition_penalty": 1.0}}


@pytest.fixture(scope="module")
def running(isolated_hearth_env):
    with running_api([WorkerKind.chat]) as running:
        yield running


@pytest.fixture
def api(running):
    yield running
    running.close_clients()  # so each test's connections end with it


def test_streamed_answer_names_paris_and_ends_with_usage(api):
    stream = api.client().chat.completions.create(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] in (["stop"], ["length"])
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_whole_answer_equals_the_streamed_one_at_temperature_zero(api):
    client = api.client()
    whole = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=QUESTION, max_tokens=16, **GREEDY
    )
    streamed = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=QUESTION, max_tokens=16, stream=True, **GREEDY
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert whole.choices[0].message.content == text != ""
    assert whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens <= 16
    if whole.usage.completion_tokens == 16:
        assert whole.choices[0].finish_reason == "length"


def test_a_short_limit_ends_with_finish_reason_length(api):
    answer = api.client().chat.completions.create(
        model="smollm2-135m-instruct", messages=QUESTION, max_completion_tokens=2, **GREEDY
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 2


def test_legacy_completion_continues_plain_text(api):
    answer = api.client().completions.create(
        model="smollm2-135m-instruct", prompt="The capital of France is", max_tokens=8, **GREEDY
    )
    assert answer.object == "text_completion"
    assert answer.choices[0].text.strip() != ""
    assert answer.usage.completion_tokens <= 8


def test_api_jobs_are_labelled_as_coming_from_the_api(api):
    api.client().chat.completions.create(
        model="smollm2-135m-instruct", messages=QUESTION, max_tokens=2, **GREEDY
    )
    queued = api.recorder.wait_for(lambda e: isinstance(e, Queued))
    assert queued.origin is JobOrigin.api


def test_without_the_key_the_answer_is_401(api):
    with (
        openai.OpenAI(base_url=api.base_url, api_key="not-the-key", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.models.list()
    assert caught.value.status_code == 401
    assert httpx.get(api.base_url + "/models").status_code == 401


def test_an_unknown_model_is_a_404_in_openais_shape(api):
    with pytest.raises(openai.NotFoundError) as caught:
        api.client().chat.completions.create(model="gpt-4o", messages=QUESTION)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-4o" in error["message"]


def test_an_out_of_range_field_is_a_400_naming_it(api):
    with pytest.raises(openai.BadRequestError) as caught:
        api.client().chat.completions.create(
            model="smollm2-135m-instruct", messages=QUESTION, max_tokens=10**9
        )
    assert caught.value.body["param"] == "max_tokens"
    assert "between 1 and 32768" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        api.client().chat.completions.create(
            model="smollm2-135m-instruct", messages=QUESTION, extra_body={"top_k": -3}
        )
    assert caught.value.body["param"] == "top_k"
    with pytest.raises(openai.BadRequestError) as caught:
        api.client().chat.completions.create(
            model="smollm2-135m-instruct", messages=QUESTION, extra_body={"temprature": 0.1}
        )
    assert caught.value.body["param"] == "temprature"
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        api.client().chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, n=2)


def test_an_oversized_body_is_a_413(api):
    huge = [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]
    with pytest.raises(openai.APIStatusError) as caught:
        api.client().chat.completions.create(model="smollm2-135m-instruct", messages=huge)
    assert caught.value.status_code == 413


def test_a_client_leaving_mid_stream_cancels_its_job(api):
    body = {
        "model": "smollm2-135m-instruct",
        "messages": QUESTION,
        "max_tokens": 4000,
        "stream": True,
        "temperature": 0.8,
    }
    headers = {"Authorization": f"Bearer {api.server.key}"}
    with httpx.stream(
        "POST", api.base_url + "/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert '"role":"assistant"' in first  # then the client goes away mid-answer
    queued = api.recorder.wait_for(lambda e: isinstance(e, Queued) and e.request.max_new_tokens == 4000)
    ended = api.recorder.job_end(queued.job_id)
    assert isinstance(ended, Cancelled)
    assert api.server.hub.active_jobs("127.0.0.1") == 0


def test_embeddings_are_unit_vectors_that_tell_texts_apart(api):
    texts = ["Paris is the capital of France.", "Paris is the capital of France.", "A recipe for soup."]
    result = api.client().embeddings.create(model="smollm2-135m-instruct", input=texts)
    vectors = [np.array(item.embedding) for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    assert len(vectors[0]) == 576  # SmolLM2-135M's hidden size
    assert np.allclose(vectors[0], vectors[1])
    assert vectors[0] @ vectors[2] < 0.999
    assert result.usage.prompt_tokens > 0
    packed = api.client().embeddings.create(
        model="smollm2-135m-instruct", input=texts[0], encoding_format="base64"
    )
    unpacked = np.frombuffer(base64.b64decode(packed.data[0].embedding), dtype="<f4")
    assert np.allclose(unpacked, vectors[0], atol=1e-6)


def test_embeddings_refuse_token_arrays_by_name(api):
    with pytest.raises(openai.BadRequestError) as caught:
        api.client().embeddings.create(model="smollm2-135m-instruct", input=[[1, 2, 3]])
    assert caught.value.body["param"] == "input"


def test_tools_for_a_model_whose_template_cannot_show_them_are_a_400_naming_tools(api):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            answer = api.client().chat.completions.create(
                model="smollm2-135m-instruct", messages=QUESTION, tools=[tool], stream=stream
            )
            list(answer) if stream else None
        assert "no tool support" in caught.value.body["message"]
