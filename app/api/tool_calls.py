"""Tool calls in a model's answer, as OpenAI's ``tool_calls``, streamed or whole.

Chat templates teach models one of a few ways to write a call; all three are read here:
- Hermes, Qwen 2.5/3, SmolLM3 and most fine-tunes: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- Mistral: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``;
- Llama 3.1+: the whole answer is ``{"name": ..., "parameters": {...}}``, after ``<|python_tag|>`` or not.
A call is only taken for a function the request offered, so an answer that merely contains JSON
stays text. While streaming, text that may be the start of a call is held back until it is
clear; the calls then go out with their ids and their arguments whole.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL_MARK = "[TOOL_CALLS]"
PYTHON_TAG = "<|python_tag|>"
MARKERS = (HERMES_OPEN, MISTRAL_MARK, PYTHON_TAG)
_HERMES = re.compile(re.escape(HERMES_OPEN) + r"\s*(.*?)\s*" + re.escape(HERMES_CLOSE), re.S)


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    name: str
    arguments: str
    """A JSON object, as text."""


def _call(obj: object, names: set[str]) -> Call | None:
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        text = arguments
    else:
        text = json.dumps(arguments, ensure_ascii=False)
    return Call(id="call_" + secrets.token_hex(12), name=obj["name"], arguments=text)


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse(text: str, names: set[str]) -> tuple[str, list[Call]]:
    """(the text that is not a call, the calls) of a whole answer."""
    blocks = list(_HERMES.finditer(text))
    if blocks:
        calls = [c for c in (_call(_json(m.group(1)), names) for m in blocks) if c]
        if calls:
            return _HERMES.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith(MISTRAL_MARK):
        found = _json(stripped[len(MISTRAL_MARK) :].strip())
        items = found if isinstance(found, list) else [found]
        calls = [c for c in (_call(item, names) for item in items) if c]
        if calls:
            return "", calls
    body = stripped.removeprefix(PYTHON_TAG).strip()
    if body.startswith("{"):
        found = _json(body)
        items = found if isinstance(found, list) else [found]
        calls = [c for c in (_call(item, names) for item in items) if c]
        if calls:
            return "", calls
    return text, []


class StreamGate:
    """Passes streamed text through, holding back what may be the start of a tool call."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.held = ""
        self.sent = ""
        self.holding_call = False

    def feed(self, delta: str) -> str:
        """The text that can be sent now."""
        self.held += delta
        if self.holding_call:
            return ""
        start = self.held.lstrip()
        if not self.sent and (
            start.startswith("{") or any(m.startswith(start) or start.startswith(m) for m in MARKERS)
        ):
            if start.startswith(MARKERS) or start.startswith("{"):
                self.holding_call = True
            return ""  # undecided: a marker may be arriving token by token
        at = self.held.find(HERMES_OPEN)
        if at >= 0:  # text, then a call: send the text, hold the call
            self.holding_call = True
            return self._send(self.held[:at])
        keep = _partial_marker_length(self.held)
        return self._send(self.held[: len(self.held) - keep])

    def finish(self) -> tuple[str, list[Call]]:
        """(the rest of the text, the calls) once the answer has ended."""
        content, calls = parse(self.held, self.names)
        if calls:
            self.held = ""
            return content, calls
        rest, self.held = self.held, ""
        return rest, []

    def _send(self, text: str) -> str:
        self.held = self.held[len(text) :]
        self.sent += text
        return text


def _partial_marker_length(text: str) -> int:
    """How many characters at the end of ``text`` could begin ``<tool_call>``."""
    for length in range(min(len(HERMES_OPEN) - 1, len(text)), 0, -1):
        if HERMES_OPEN.startswith(text[-length:]):
            return length
    return 0


def tool_names(tools: list[dict]) -> set[str]:
    return {t["function"]["name"] for t in tools}
