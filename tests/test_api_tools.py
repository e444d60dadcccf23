"""Tool calls: read from the model's answer in each template family's way, and sent as OpenAI sends
them (ids, names and arguments intact, streamed or whole), checked with the official client."""

from __future__ import annotations

import itertools
import json
import threading

import openai
import pytest

from app.api.serve import ApiServer
from app.api.tool_calls import StreamGate, parse
from models.chat import tiny_chat_tokenizer
from workers.errors import BadInput
from workers.jobs.chat import encode_chat
from workers.protocol import ChatMessage, Finished, Metric, Started, TextDelta

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NAMES = {"get_weather"}
ARGUMENTS = {"city": "Paris", "unit": "celsius", "note": 'a "quoted" word, ünïcode, {braces}'}
HERMES_ANSWER = f'<tool_call>\n{{"name": "get_weather", "arguments": {json.dumps(ARGUMENTS)}}}\n</tool_call>'
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t.function.name }} {% endfor %}<|im_end|>\n"
    "{% endif %}{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize(
    "answer",
    [
        HERMES_ANSWER,
        f"[TOOL_CALLS] [{json.dumps({'name': 'get_weather', 'arguments': ARGUMENTS})}]",
        f"<|python_tag|>{json.dumps({'name': 'get_weather', 'parameters': ARGUMENTS})}",
        json.dumps({"name": "get_weather", "parameters": ARGUMENTS}),
    ],
)
def test_each_template_familys_calls_are_read_with_their_arguments_intact(answer):
    content, calls = parse(answer, NAMES)
    assert content == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", ARGUMENTS)]
    assert calls[0].id.startswith("call_")


def test_json_naming_a_function_nobody_offered_stays_text():
    answer = '{"name": "delete_everything", "arguments": {}}'
    assert parse(answer, NAMES) == (answer, [])


def test_plain_text_streams_at_once_and_a_call_is_held_until_the_end():
    gate = StreamGate(NAMES)
    assert gate.feed("Hello") == "Hello"
    assert gate.feed(" there <tool") == " there "  # "<tool" may begin a call
    assert gate.feed("box> is a tag") == "<toolbox> is a tag"
    held = StreamGate(NAMES)
    assert [held.feed(piece) for piece in HERMES_ANSWER[:40]] == [""] * 40
    for piece in HERMES_ANSWER[40:]:
        held.feed(piece)
    rest, calls = held.finish()
    assert rest == "" and json.loads(calls[0].arguments) == ARGUMENTS


def test_tools_reach_a_template_that_shows_them_and_are_refused_by_one_that_cannot():
    tokenizer = tiny_chat_tokenizer()
    messages = [ChatMessage(role="user", content="weather?")]
    plain = encode_chat(tokenizer, messages)
    with pytest.raises(BadInput, match="no tool support") as refused:
        encode_chat(tokenizer, messages, tools=json.dumps([WEATHER]))
    assert refused.value.field == "tools"
    tokenizer.chat_template = TOOL_TEMPLATE
    with_tools = encode_chat(tokenizer, messages, tools=json.dumps([WEATHER]))
    assert "get_weather" in tokenizer.decode(with_tools) and len(with_tools) > len(plain)


class ScriptedSupervisor:
    """Answers every chat job with ``answer``, a few characters per delta, as a worker streams."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.listeners = []
        self.ids = (f"job{n}" for n in itertools.count())
        self.requests = []

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener) -> None:
        self.listeners.remove(listener)

    def cancel(self, job_id: str) -> None:
        pass

    def submit(self, request, priority=None, origin=None) -> str:
        request.validate()
        job_id = next(self.ids)
        self.requests.append(request)
        threading.Thread(target=self._answer, args=(job_id,)).start()
        return job_id

    def _answer(self, job_id: str) -> None:
        self._emit(Started(job_id=job_id))
        for start in range(0, len(self.answer), 3):
            self._emit(TextDelta(job_id=job_id, text=self.answer[start : start + 3]))
        metrics = (Metric(name="prompt_tokens", value=20), Metric(name="new_tokens", value=30))
        self._emit(Finished(job_id=job_id, metrics=metrics))

    def _emit(self, event) -> None:
        for listener in list(self.listeners):
            listener(event)


@pytest.fixture
def scripted_api():
    supervisor = ScriptedSupervisor(HERMES_ANSWER)
    server = ApiServer(supervisor, port=0)
    server.start()
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key, max_retries=0) as client:
        yield client, supervisor
    server.stop()


def ask(client, **kwargs):
    return client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        **kwargs,
    )


def test_a_streamed_call_arrives_with_its_id_name_and_arguments(scripted_api):
    client, supervisor = scripted_api
    chunks = list(ask(client, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas)  # the call's text is never shown as content
    parts = [call for d in deltas for call in (d.tool_calls or [])]
    head = parts[0]
    assert head.id.startswith("call_") and head.type == "function" and head.function.name == "get_weather"
    arguments = "".join(p.function.arguments or "" for p in parts if p.index == 0)
    assert json.loads(arguments) == ARGUMENTS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert json.loads(supervisor.requests[0].tools) == [WEATHER]


def test_a_whole_answer_carries_the_call_and_a_conversation_can_answer_it(scripted_api):
    client, supervisor = scripted_api
    answer = ask(client)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls" and message.content is None
    call = message.tool_calls[0]
    assert json.loads(call.function.arguments) == ARGUMENTS
    client.chat.completions.create(
        model="smollm2-135m-instruct",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
        ],
    )
    sent = supervisor.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    assert sent[1].tool_calls[0].id == call.id and json.loads(sent[1].tool_calls[0].arguments) == ARGUMENTS
    assert sent[2].tool_call_id == call.id


def test_tool_choice_none_sends_no_tools_and_forcing_a_call_is_refused(scripted_api):
    client, supervisor = scripted_api
    ask(client, tool_choice="none")
    assert supervisor.requests[-1].tools == ""
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, tool_choice="required")
    assert caught.value.body["param"] == "tool_choice"
