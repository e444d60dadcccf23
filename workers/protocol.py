"""The job protocol between the supervisor and its worker processes: one file, one contract.

Commands (supervisor -> worker) are imperative nouns: ``Submit``, ``Cancel``, ``Shutdown``.
Events (worker -> supervisor, and supervisor -> its listeners) say what happened: ``Hello``,
``Started``, ``Progress``, ``TextDelta``, ``Output``, ``Finished``, ``Cancelled``, ``Failed``.
Every message is a frozen, slotted, keyword-only dataclass registered with the codec, so it
travels as JSON (``workers.codec``), never as a pickle or a positional tuple.

Job requests (``ImageRequest``, ``ChatRequest``, ...) carry their own ``validate()`` so a bad
request is refused in the GUI or CLI before it reaches a worker, and again in the worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from workers.codec import message
from workers.errors import BadInput, ErrorKind

PROTOCOL_VERSION = 1

frozen = dataclass(frozen=True, slots=True, kw_only=True)


class WorkerKind(StrEnum):
    """One worker process per sub-app, each keeping its models warm between jobs."""

    chat = "chat"
    image = "image"
    video = "video"
    music = "music"


class Priority(StrEnum):
    """Arbiter priority classes, strongest first."""

    interactive = "interactive"
    """Chat tokens and brush edits: a person is waiting on every step."""
    single_shot = "single_shot"
    """One image, a short music clip."""
    background = "background"
    """Video renders, long music: preempted at step boundaries, never starved."""


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    finished = "finished"
    cancelled = "cancelled"
    failed = "failed"


# --------------------------------------------------------------------------- validation helpers


def _require_prompt(prompt: str) -> None:
    if not prompt or not prompt.strip():
        raise BadInput("prompt is empty: describe what to generate")


def _require_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise BadInput(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise BadInput(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def _require_multiple_of_8(name: str, value: int) -> None:
    _require_range(name, value, 8, 4096)
    if value % 8:
        raise BadInput(f"{name} must be a multiple of 8, got {value}")


# --------------------------------------------------------------------------- job requests


@message
@frozen
class ImageRequest:
    """Text-to-image with a Stable-Diffusion-style pipeline."""

    prompt: str
    negative_prompt: str = ""
    width: int = 64
    height: int = 64
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    model: str = "demo-sd"
    """Catalog id, hub id, local diffusers folder or single-file checkpoint."""
    out_path: str = ""
    """Where to write the PNG; empty means the outputs folder."""

    kind = WorkerKind.image
    default_priority = Priority.single_shot

    def validate(self) -> None:
        _require_prompt(self.prompt)
        _require_range("steps", self.steps, 1, 1000)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        _require_range("guidance", self.guidance, 0, 50)


@message
@frozen
class ChatMessage:
    role: str
    """"system", "user" or "assistant"."""
    content: str


@message
@frozen
class ChatRequest:
    """One assistant turn for a conversation."""

    messages: tuple[ChatMessage, ...]
    model: str = "smollm2-135m-instruct"
    quant: str = "auto"
    """auto, fp32, bf16, fp16, nf4, fp4 or int8."""
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0
    assisted: str = ""
    """"" for plain decoding, "prompt_lookup", or a draft model id for assisted decoding."""
    conversation_id: str = ""
    """Conversation the answer is appended to as it streams (empty: not stored)."""

    kind = WorkerKind.chat
    default_priority = Priority.interactive

    def validate(self) -> None:
        if not self.messages or not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise BadInput("prompt is empty: write a message first")
        for m in self.messages:
            if m.role not in ("system", "user", "assistant"):
                raise BadInput(f"unknown chat role {m.role!r}")
        if self.quant not in ("auto", "fp32", "bf16", "fp16", "nf4", "fp4", "int8"):
            raise BadInput(f"unknown quantization {self.quant!r}: use nf4, fp4, int8, bf16, fp16, fp32 or auto")
        _require_range("max new tokens", self.max_new_tokens, 1, 32768)
        _require_range("temperature", self.temperature, 0, 5)
        _require_range("top-p", self.top_p, 0.0, 1.0)
        _require_range("top-k", self.top_k, 0, 100000)
        _require_range("repetition penalty", self.repetition_penalty, 0.5, 5)


@message
@frozen
class VideoRequest:
    """Text-to-video with memory-sliced diffusion."""

    prompt: str
    negative_prompt: str = ""
    frames: int = 8
    fps: int = 8
    width: int = 64
    height: int = 64
    steps: int = 4
    guidance: float = 7.5
    seed: int = 0
    model: str = "demo-animatediff"
    memory_mode: str = "auto"
    """"auto" (from the lease) or "slices:N"."""
    out_path: str = ""

    kind = WorkerKind.video
    default_priority = Priority.background

    def validate(self) -> None:
        _require_prompt(self.prompt)
        _require_range("frames", self.frames, 1, 1024)
        _require_range("fps", self.fps, 1, 120)
        _require_range("steps", self.steps, 1, 1000)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        _require_range("guidance", self.guidance, 0, 50)


@message
@frozen
class MusicRequest:
    """Text-to-music, optionally with chords, tempo and meter."""

    prompt: str
    seconds: float = 4.0
    chords: str = ""
    bpm: float = 0.0
    meter: str = "4/4"
    guidance: float = 3.0
    temperature: float = 1.0
    seed: int = 0
    model: str = "demo-musicgen"
    out_path: str = ""

    kind = WorkerKind.music
    default_priority = Priority.single_shot

    def validate(self) -> None:
        _require_prompt(self.prompt)
        _require_range("seconds", self.seconds, 0.1, 3600)
        _require_range("guidance", self.guidance, 0, 20)
        _require_range("temperature", self.temperature, 0.01, 5)
        if self.bpm:
            _require_range("bpm", self.bpm, 20, 400)


JobRequest = ImageRequest | ChatRequest | VideoRequest | MusicRequest


# --------------------------------------------------------------------------- commands


@message
@frozen
class Submit:
    """Run a job. A worker runs one job at a time; the supervisor queues the rest."""

    job_id: str
    request: JobRequest
    priority: Priority


@message
@frozen
class Cancel:
    """Stop the job at its next step or token; it ends ``Cancelled``."""

    job_id: str


@message
@frozen
class Shutdown:
    """Finish nothing more, release every lease and exit."""


# --------------------------------------------------------------------------- events


@message
@frozen
class Hello:
    """A worker is up, its imports done, ready for jobs."""

    kind: WorkerKind
    pid: int
    protocol_version: int = PROTOCOL_VERSION


@message
@frozen
class Started:
    job_id: str


@message
@frozen
class Progress:
    """A step is done. ``preview_png`` is an optional small PNG of the current state."""

    job_id: str
    step: int
    total: int
    message: str = ""
    preview_png: bytes | None = None


@message
@frozen
class TextDelta:
    """Streamed text (chat tokens), in order."""

    job_id: str
    text: str


@message
@frozen
class Output:
    """A file the job wrote (atomically), with its media type."""

    job_id: str
    path: str
    media_type: str


@message
@frozen
class Metric:
    name: str
    value: float


@message
@frozen
class Finished:
    job_id: str
    elapsed_s: float = 0.0
    metrics: tuple[Metric, ...] = ()


@message
@frozen
class Cancelled:
    job_id: str
    at_step: int = -1


@message
@frozen
class Failed:
    job_id: str
    kind: ErrorKind
    message: str
    traceback: str = ""


# Supervisor-level events (never sent by a worker).


@message
@frozen
class Queued:
    job_id: str
    request: JobRequest
    priority: Priority


class WorkerStatus(StrEnum):
    starting = "starting"
    ready = "ready"
    busy = "busy"
    crashed = "crashed"
    stopped = "stopped"


@message
@frozen
class WorkerState:
    kind: WorkerKind
    status: WorkerStatus
    pid: int = 0
    detail: str = ""


JOB_END_EVENTS = (Finished, Cancelled, Failed)

Event = Hello | Started | Progress | TextDelta | Output | Finished | Cancelled | Failed | Queued | WorkerState
Command = Submit | Cancel | Shutdown

REQUEST_TYPES: dict[WorkerKind, type] = {
    WorkerKind.image: ImageRequest,
    WorkerKind.chat: ChatRequest,
    WorkerKind.video: VideoRequest,
    WorkerKind.music: MusicRequest,
}

__all__ = [name for name in dir() if not name.startswith("_")] + ["field"]
