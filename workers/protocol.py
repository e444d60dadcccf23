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

from workers.codec import PROTOCOL_VERSION, message
from workers.errors import BadInput, ErrorKind

SEED_MAX = 2**63 - 1
"""Seeds are 0..2^63-1: torch generators take up to 2^64-1, SQLite and JSON readers a signed
64-bit integer, and music seeds each window with ``seed + window index``."""
MAX_SLICES = 1024
"""Largest N of a video's ``memory_mode = "slices:N"`` (the worker's memory plan reads it here)."""
MAX_SIDE = 4096
"""Largest image or video width and height, in pixels (a multiple of 8 from 8 up to this)."""
MAX_STEPS = 1000
"""Most denoising steps of an image, video or brush session."""
MAX_GUIDANCE = 50.0
"""Largest classifier-free guidance scale of an image, video or brush session."""
MAX_BRUSH_LAYERS = 256
"""Most layers of a brush session (a ``.hearth`` project holding more is refused on load)."""

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


def _require_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise BadInput(f"{name} must be a whole number from 0 to {SEED_MAX}, got {value!r}")


def _require_multiple_of_8(name: str, value: int) -> None:
    _require_range(name, value, 8, MAX_SIDE)
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
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    model: str = "demo-sd"
    """Catalog id, hub id, local diffusers folder or single-file checkpoint."""
    out_path: str = ""
    """Where to write the PNG; empty means the outputs folder."""

    kind = WorkerKind.image
    default_priority = Priority.single_shot

    def validate(self) -> None:
        _require_prompt(self.prompt)
        _require_range("steps", self.steps, 1, MAX_STEPS)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        _require_range("guidance", self.guidance, 0, MAX_GUIDANCE)
        _require_seed("seed", self.seed)


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
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    assisted: str = ""
    """"" for plain decoding, "prompt_lookup", or a draft model id for assisted decoding."""
    conversation_id: str = ""
    """Conversation the answer is appended to as it streams (empty: not stored)."""
    stop: tuple[str, ...] = ()
    """Stop sequences: the answer ends before the first one appears (it is not included)."""
    context_length: int = 0
    """Prompt + answer token limit; 0 uses the model's own. Oldest turns are dropped to fit."""
    allow_pickle: bool = False
    """Allow pickle-based weights (they can run code when loaded); safetensors only otherwise."""

    kind = WorkerKind.chat
    default_priority = Priority.interactive

    def validate(self) -> None:
        if not self.messages or not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise BadInput("prompt is empty: write a message first")
        for m in self.messages:
            if m.role not in ("system", "user", "assistant"):
                raise BadInput(f"unknown chat role {m.role!r}")
        if self.quant not in ("auto", "fp32", "bf16", "fp16", "nf4", "fp4", "int8"):
            raise BadInput(
                f"unknown quantization {self.quant!r}: use nf4, fp4, int8, bf16, fp16, fp32 or auto"
            )
        _require_range("max new tokens", self.max_new_tokens, 1, 32768)
        _require_range("temperature", self.temperature, 0, 5)
        _require_range("top-p", self.top_p, 0.0, 1.0)
        _require_range("top-k", self.top_k, 0, 100000)
        _require_range("repetition penalty", self.repetition_penalty, 0.5, 5)
        _require_range("context length", self.context_length, 0, 10_000_000)
        _require_seed("seed", self.seed)


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
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    model: str = "demo-animatediff"
    memory_mode: str = "auto"
    """"auto" (from the lease) or "slices:N"."""
    out_path: str = ""
    format: str = "mp4"
    """"mp4" (H.264), "gif" or "webp"; an ``out_path`` suffix takes precedence."""
    step_rehash: bool = False
    """Reuse the deep UNet blocks' output on non-key steps (faster, approximate)."""
    rehash_interval: int = 2
    """With step rehash: every N-th step is a key step that runs the whole UNet."""

    kind = WorkerKind.video
    default_priority = Priority.background

    def validate(self) -> None:
        _require_prompt(self.prompt)
        _require_range("frames", self.frames, 1, 1024)
        _require_range("fps", self.fps, 1, 120)
        _require_range("steps", self.steps, 1, MAX_STEPS)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        _require_range("guidance", self.guidance, 0, MAX_GUIDANCE)
        if self.format not in ("mp4", "gif", "webp"):
            raise BadInput(f"video format must be mp4, gif or webp, got {self.format!r}")
        if self.memory_mode != "auto" and not (
            self.memory_mode.startswith("slices:")
            and self.memory_mode[7:].isdigit()
            and 1 <= int(self.memory_mode[7:]) <= MAX_SLICES
        ):
            raise BadInput(
                f"memory mode must be 'auto' or 'slices:N' with N from 1 to {MAX_SLICES}, "
                f"got {self.memory_mode!r}"
            )
        _require_range("rehash interval", self.rehash_interval, 1, 100)
        _require_seed("seed", self.seed)


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
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    model: str = "demo-musicgen"
    out_path: str = ""
    format: str = ""
    """wav, flac, ogg or mp3; empty: from out_path's suffix, else wav."""
    window_seconds: float = 0.0
    """Longest stretch one generation window makes; 0: the model's own (30 s for MusicGen)."""

    kind = WorkerKind.music
    LONG_SECONDS = 30.0

    @property
    def default_priority(self) -> Priority:
        """A clip that fits one window is single-shot; a longer piece runs in the background."""
        return Priority.background if self.seconds > self.LONG_SECONDS else Priority.single_shot

    def validate(self) -> None:
        from workers.music.chords import parse_meter, parse_progression  # pure Python, no torch

        _require_prompt(self.prompt)
        _require_range("seconds", self.seconds, 0.1, 3600)
        _require_range("guidance", self.guidance, 0, 20)
        _require_range("temperature", self.temperature, 0.01, 5)
        _require_seed("seed", self.seed)
        if self.bpm or self.chords.strip():
            if not self.bpm:
                raise BadInput("chords need a tempo: give a BPM between 20 and 400")
            _require_range("bpm", self.bpm, 20, 400)
        parse_meter(self.meter)
        parse_progression(self.chords)
        if self.format and self.format.lower() not in ("wav", "flac", "ogg", "mp3"):
            raise BadInput(f"audio format {self.format!r} is not supported; use wav, flac, ogg or mp3")
        if self.window_seconds:
            _require_range("window seconds", self.window_seconds, 0.5, 60)


# --------------------------------------------------------------------------- layered diffusion brushes

BRUSH_MERGE_STEPS = 2
"""Layers merge into the composite this many steps before the end (the paper merges at N-2)."""


def _require_mask_png(where: str, data: bytes, width: int, height: int) -> None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            size, box = image.size, image.convert("L").getbbox()
    except (UnidentifiedImageError, OSError, ValueError):
        raise BadInput(f"{where}: the mask is not a readable PNG image") from None
    if size != (width, height):
        raise BadInput(f"{where}: the mask is {size[0]}x{size[1]} but the image is {width}x{height}")
    if box is None:
        raise BadInput(f"{where}: the mask is empty; paint the region to change first")


def _require_image_file(path: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        raise BadInput(f"photo {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadInput(f"photo {path} is not a readable image ({exc})") from None


@message
@frozen
class BrushLayer:
    """One layered-diffusion-brush layer; the mask is a grayscale PNG at image resolution."""

    id: str
    mask_png: bytes
    """8-bit grayscale PNG, the size of the base image; 0 = untouched, 255 = fully regenerated."""
    name: str = ""
    prompt: str = ""
    """What to paint inside the mask; empty re-rolls the region with the base prompt."""
    strength: float = 0.8
    """0..1: how much of the cached latent inside the mask is replaced by fresh noise."""
    regen_step: int = 10
    """n: the layer restarts from the cached latent after n of the N steps (0 <= n <= N-3)."""
    seed: int = 0
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    visible: bool = True
    opacity: float = 1.0
    feather: float = 2.0
    """Gaussian blur radius (image pixels) applied to the mask edge before merging."""

    def validate(self, width: int, height: int, steps: int) -> None:
        where = f"layer {self.name or self.id!r}"
        _require_mask_png(where, self.mask_png, width, height)
        last = steps - 1 - BRUSH_MERGE_STEPS
        n = self.regen_step
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= last:
            raise BadInput(f"{where}: regeneration step must be between 0 and {last}, got {n!r}")
        _require_range(f"{where}: strength", self.strength, 0, 1)
        _require_range(f"{where}: opacity", self.opacity, 0, 1)
        _require_range(f"{where}: feather", self.feather, 0, 64)
        _require_seed(f"{where}: seed", self.seed)


@message
@frozen
class BrushBaseRequest:
    """Start a brush session: generate a base image (caching its trajectory) or invert a photo."""

    session_id: str
    prompt: str = ""
    negative_prompt: str = ""
    photo_path: str = ""
    """A photo to edit: it enters through DDIM inversion instead of being generated."""
    width: int = 64
    height: int = 64
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    """0 to ``SEED_MAX`` (2^63-1); the same seed gives the same result."""
    model: str = "demo-sd"
    project_path: str = ""
    """Where the ``.hearth`` project is written; empty means the projects folder."""

    kind = WorkerKind.image
    default_priority = Priority.single_shot

    def validate(self) -> None:
        if not self.session_id:
            raise BadInput("brush session id is empty")
        if self.photo_path:
            _require_image_file(self.photo_path)
        else:
            _require_prompt(self.prompt)
        _require_range("steps", self.steps, BRUSH_MERGE_STEPS + 1, MAX_STEPS)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        _require_range("guidance", self.guidance, 0, MAX_GUIDANCE)
        _require_seed("seed", self.seed)


@message
@frozen
class BrushRenderRequest:
    """Render the composite of a session's layers (only changed layers rerun their last steps)."""

    session_id: str
    project_path: str
    """The session's ``.hearth`` file: reloaded when the worker no longer holds the session warm."""
    width: int
    height: int
    steps: int
    """N of the session's schedule, to check each layer's regeneration step."""
    layers: tuple[BrushLayer, ...] = ()
    """Bottom to top; where masks overlap, the upper layer covers the lower one."""
    revision: int = 0
    """Increases with every edit; a render older than one the worker already saw is dropped."""
    out_path: str = ""

    kind = WorkerKind.image
    default_priority = Priority.interactive

    def validate(self) -> None:
        if not self.session_id:
            raise BadInput("brush session id is empty")
        _require_range("steps", self.steps, BRUSH_MERGE_STEPS + 1, MAX_STEPS)
        _require_multiple_of_8("width", self.width)
        _require_multiple_of_8("height", self.height)
        if len(self.layers) > MAX_BRUSH_LAYERS:
            raise BadInput(f"{len(self.layers)} layers; a brush session holds at most {MAX_BRUSH_LAYERS}")
        ids = [layer.id for layer in self.layers]
        if len(set(ids)) != len(ids):
            raise BadInput("two layers share one id")
        for layer in self.layers:
            layer.validate(self.width, self.height, self.steps)


JobRequest = ImageRequest | ChatRequest | VideoRequest | MusicRequest | BrushBaseRequest | BrushRenderRequest


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
    """The same version the codec's envelope carries and checks: a Hello of another build never
    decodes, and the supervisor shows why in the worker's ``WorkerState.detail``."""


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
WorkerEvent = Hello | Started | Progress | TextDelta | Output | Finished | Cancelled | Failed
"""What a worker sends its supervisor (``Queued`` and ``WorkerState`` are the supervisor's own)."""
Command = Submit | Cancel | Shutdown
"""What a supervisor sends its worker."""

REQUEST_TYPES: dict[WorkerKind, type] = {
    WorkerKind.image: ImageRequest,
    WorkerKind.chat: ChatRequest,
    WorkerKind.video: VideoRequest,
    WorkerKind.music: MusicRequest,
}

__all__ = [name for name in dir() if not name.startswith("_")] + ["field"]
