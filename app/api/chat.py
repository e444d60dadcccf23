"""``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``, in OpenAI's shapes, on the chat worker.

Streaming follows OpenAI's server-sent events exactly: a first chunk with the assistant role,
one chunk per text delta, a chunk with ``finish_reason``, then (``stream_options.include_usage``)
a chunk with empty ``choices`` and the ``usage``, then ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator

from starlette.responses import JSONResponse, StreamingResponse

from app.api.bodies import bool_field, int_field, json_body, take_extras
from app.api.errors import ApiError, bad_input
from app.api.follow import ClientGone, JobResult, events_until_end, raise_for_end, run_to_end
from app.api.hub import JobHub, JobWatch
from app.api.model_list import require_model
from app.api.tool_calls import StreamGate, parse, tool_names
from models.catalog import ModelKind
from workers.errors import BadInput
from workers.protocol import (
    ChatMessage,
    ChatRequest,
    Embeddings,
    EmbedRequest,
    Finished,
    TextDelta,
    ToolCall,
    tool_definitions,
)

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
RENAMES = {"max_new_tokens": "max_tokens"}
"""Hearth field -> the name an OpenAI client sent it under (for the error's ``param``)."""
_SHARED_FIELDS = {
    "model", "temperature", "top_p", "max_tokens", "stop", "seed", "stream", "stream_options", "n", "user",
    "frequency_penalty", "presence_penalty", "logprobs",
}  # fmt: skip
CHAT_FIELDS = _SHARED_FIELDS | {
    "messages", "max_completion_tokens", "tools", "tool_choice", "parallel_tool_calls", "response_format",
}  # fmt: skip
COMPLETION_FIELDS = _SHARED_FIELDS | {"prompt", "echo", "suffix"}
OPENAI_MAX_TOKENS_DEFAULT_COMPLETIONS = 16
"""OpenAI's legacy completions answer 16 tokens unless told otherwise; clients rely on it."""
# Parameters OpenAI has and Hearth does not: accepted at their neutral value, refused otherwise.
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": False, "echo": False, "suffix": None}


def chat_messages(raw: object) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    messages = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object", param=where)
        role = item.get("role")
        if role not in ROLES:
            raise ApiError(400, f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", param=where)
        call_id = item.get("tool_call_id") if role == "tool" else ""
        if role == "tool" and (not isinstance(call_id, str) or not call_id):
            raise ApiError(400, f"{where}: a tool message needs the tool_call_id it answers", param=where)
        messages.append(
            ChatMessage(
                role=ROLES[role],
                content=_content(item.get("content"), where),
                tool_calls=_tool_calls(item.get("tool_calls"), where) if role == "assistant" else (),
                tool_call_id=call_id,
            )
        )
    return tuple(messages)


def _tool_calls(raw: object, where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's earlier calls, as the client sends them back."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ApiError(400, f"{where}.tool_calls must be a list", param=where)
    calls = []
    for index, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ApiError(400, f"{where}.tool_calls[{index}] needs a function with a name", param=where)
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(ToolCall(id=str(call.get("id", "")), name=function["name"], arguments=arguments))
    return tuple(calls)


def _content(content: object, where: str) -> str:
    """A string, or OpenAI's list of content parts of which only text parts are understood."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(
                    400, f"{where}: content parts of type {kind!r} are not supported (text only)", param=where
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", param=where)


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "stop must be a string or a list of up to 4 non-empty strings", param="stop")
    return tuple(stops)


def _sampling(body: dict, used: set[str], default_max: int | None) -> dict:
    """OpenAI's sampling fields as ChatRequest fields (unset ones keep the declared defaults)."""
    fields = {}
    for name in ("temperature", "top_p", "seed"):
        if body.get(name) is not None:
            fields[name] = body[name]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None and default_max is not None:
        max_tokens = default_max
    if max_tokens is not None:
        fields["max_new_tokens"] = max_tokens
    if int_field(body, "n", 1, low=1, high=1_000_000) != 1:
        raise ApiError(400, "n > 1 is not supported: Hearth returns one choice per request", param="n")
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] not in (neutral, None):
            raise ApiError(400, f"{name} is not supported by Hearth's chat engine", param=name)
    tools, choice = body.get("tools"), body.get("tool_choice")
    if choice not in (None, "none", "auto"):
        raise ApiError(
            400, "tool_choice can be 'auto' or 'none': Hearth cannot force a call", param="tool_choice"
        )
    if tools is not None and not isinstance(tools, list):
        raise ApiError(400, "tools must be a list", param="tools")
    if tools and choice != "none":
        fields["tools"] = json.dumps(tools)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise ApiError(400, "response_format other than text is not supported", param="response_format")
    return fields


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    return bool_field(options, "include_usage")


def build_chat_request(body: dict, messages: tuple[ChatMessage, ...], fields: set[str], default_max=None):
    model = require_model(body.get("model"), ModelKind.chat)
    used = set(fields)
    sampling = _sampling(body, used, default_max)
    extras = take_extras(body, ChatRequest, used=used, exclude=("model", "allow_pickle", "max_new_tokens"))
    try:
        request = ChatRequest(messages=messages, model=model, stop=_stops(body), **sampling, **extras)
        request.validate()
    except BadInput as exc:
        raise bad_input(exc, RENAMES) from None
    except TypeError as exc:
        raise ApiError(400, str(exc)) from None
    return request


def usage_of(result_or_finished) -> dict:
    finished = (
        result_or_finished.finished if isinstance(result_or_finished, JobResult) else result_or_finished
    )
    metrics = {m.name: m.value for m in finished.metrics}
    prompt, completion = int(metrics.get("prompt_tokens", 0)), int(metrics.get("new_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(finished: Finished) -> str:
    cut = next((m.value for m in finished.metrics if m.name == "hit_token_limit"), 0.0)
    return "length" if cut else "stop"


class ChatEndpoints:
    """Both text endpoints over one hub; ``client`` names who asked (for the per-client cap)."""

    def __init__(self, hub: JobHub) -> None:
        self.hub = hub

    async def chat_completions(self, request, client: str):
        body = await json_body(request)
        chat = build_chat_request(body, chat_messages(body.get("messages")), CHAT_FIELDS)
        return await self._answer(request, body, chat, client, chat_shape=True)

    async def completions(self, request, client: str):
        body = await json_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, "prompt must be a non-empty string (one prompt per request)", param="prompt")
        messages = (ChatMessage(role="user", content=prompt),)
        chat = build_chat_request(
            body, messages, COMPLETION_FIELDS, default_max=OPENAI_MAX_TOKENS_DEFAULT_COMPLETIONS
        )
        chat = _as_raw_completion(chat)
        return await self._answer(request, body, chat, client, chat_shape=False)

    async def _answer(self, request, body: dict, chat: ChatRequest, client: str, chat_shape: bool):
        stream = bool_field(body, "stream")
        include_usage = _include_usage(body)
        watch = self._submit(chat, client)
        shape = CompletionShape(watch.job_id, body["model"], chat_shape)  # the id asked for, never a path
        names = tool_names(tool_definitions(chat.tools)) if chat.tools else set()
        if not stream:
            result = await run_to_end(self.hub, watch, request, chat.model)
            text = "".join(e.text for e in result.events if isinstance(e, TextDelta))
            content, calls = parse(text, names) if names else (text, [])
            finish = "tool_calls" if calls else finish_reason(result.finished)
            return JSONResponse(shape.whole(content, finish, usage_of(result), calls))
        events = events_until_end(self.hub, watch, request)
        first = await _first_event(events, chat.model)  # a model that fails to load is a 4xx, not a stream
        gate = StreamGate(names) if names else None
        return StreamingResponse(
            _sse(shape, first, events, include_usage, lambda: self.hub.cancel(watch), gate),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _submit(self, chat: ChatRequest, client: str) -> JobWatch:
        try:
            return self.hub.submit(chat, client)
        except BadInput as exc:
            raise bad_input(exc, RENAMES) from None


def _as_raw_completion(chat: ChatRequest) -> ChatRequest:
    import dataclasses

    return dataclasses.replace(chat, raw_prompt=True)


async def _first_event(events: AsyncIterator, model: str):
    """The first text or end event; raises the ``ApiError`` of a job that failed before answering."""
    try:
        async for event in events:
            if isinstance(event, TextDelta | Finished):
                return event
            raise_for_end(event, model)
    except ClientGone:
        raise ApiError(499, "the client closed the connection", code="client_closed") from None
    raise ApiError(500, "the job ended without an answer", type="server_error")


async def _sse(
    shape: CompletionShape, first, events: AsyncIterator, include_usage: bool, cancel, gate: StreamGate | None
):
    def data(payload: dict) -> str:
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

    extra = {"usage": None} if include_usage else {}
    try:
        if shape.chat:
            yield data(shape.chunk({"role": "assistant", "content": ""}, None, extra))
        event = first
        while True:
            if isinstance(event, TextDelta):
                text = gate.feed(event.text) if gate else event.text
                if text:
                    yield data(shape.chunk(shape.delta(text), None, extra))
            elif isinstance(event, Finished):
                rest, calls = gate.finish() if gate else ("", [])
                if rest:
                    yield data(shape.chunk(shape.delta(rest), None, extra))
                for index, call in enumerate(calls):  # the id and name first, then the arguments whole
                    yield data(shape.chunk(_call_delta(index, call, head=True), None, extra))
                    yield data(shape.chunk(_call_delta(index, call, head=False), None, extra))
                finish = "tool_calls" if calls else finish_reason(event)
                yield data(shape.chunk(shape.delta(None), finish, extra))
                if include_usage:
                    yield data(shape.usage_chunk(usage_of(event)))
                yield "data: [DONE]\n\n"
                return
            else:
                try:
                    raise_for_end(event, shape.model)
                except ApiError as exc:  # OpenAI's in-stream error event
                    yield data(
                        {
                            "error": {
                                "message": exc.message,
                                "type": exc.type,
                                "param": exc.param,
                                "code": exc.code,
                            }
                        }
                    )
                    return
            try:
                event = await anext(events)
            except (StopAsyncIteration, ClientGone):
                return
    finally:
        cancel()  # first, without awaiting: a client that left mid-stream gets its memory back
        with contextlib.suppress(Exception):
            await events.aclose()


def _call_delta(index: int, call, head: bool) -> dict:
    if head:
        function = {"name": call.name, "arguments": ""}
        return {"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": function}]}
    return {"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}


class CompletionShape:
    """The JSON objects of one answer, as a chat completion or a legacy text completion."""

    def __init__(self, job_id: str, model: str, chat: bool) -> None:
        self.id = ("chatcmpl-" if chat else "cmpl-") + job_id
        self.model, self.chat, self.created = model, chat, int(time.time())

    def _head(self, obj: str) -> dict:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "hearth",
        }

    def delta(self, text: str | None) -> dict:
        if self.chat:
            return {} if text is None else {"content": text}
        return {"text": text or ""}

    def chunk(self, delta: dict, finish: str | None, extra: dict) -> dict:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**self._head("chat.completion.chunk"), "choices": [choice], **extra}
        choice = {"index": 0, "text": delta.get("text", ""), "logprobs": None, "finish_reason": finish}
        return {**self._head("text_completion"), "choices": [choice], **extra}

    def usage_chunk(self, usage: dict) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage}

    def whole(self, text: str, finish: str, usage: dict, calls=()) -> dict:
        if self.chat:
            message = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
            if calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            return {**self._head("chat.completion"), "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._head("text_completion"), "choices": [choice], "usage": usage}


class EmbeddingEndpoint:
    """``POST /v1/embeddings``: see ``workers.chat_embed`` for which layer and how it is pooled."""

    def __init__(self, hub: JobHub) -> None:
        self.hub = hub

    async def embeddings(self, request, client: str):
        import base64
        import struct

        body = await json_body(request)
        used = {"input", "model", "encoding_format", "user", "dimensions"}
        unknown = sorted(set(body) - used)
        if unknown:
            raise ApiError(
                400, f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0]
            )
        model = require_model(body.get("model"), ModelKind.chat)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(
                400,
                "input must be a string or a list of strings (token arrays are not supported)",
                param="input",
            )
        if body.get("dimensions") is not None:
            raise ApiError(
                400, "dimensions is not supported: vectors have the model's hidden size", param="dimensions"
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, "encoding_format must be float or base64", param="encoding_format")
        try:
            job = EmbedRequest(texts=tuple(texts), model=model)
            job.validate()
            watch = self.hub.submit(job, client)
        except BadInput as exc:
            raise bad_input(exc) from None
        result = await run_to_end(self.hub, watch, request, model)
        found = next(e for e in result.events if isinstance(e, Embeddings))

        def encoded(vector):
            if encoding == "float":
                return list(vector)
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

        data = [
            {"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(found.vectors)
        ]
        usage = {"prompt_tokens": found.prompt_tokens, "total_tokens": found.prompt_tokens}
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": usage})
