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

from dataclasses import MISSING
from enum import StrEnum
from pathlib import Path
from typing import Any

from workers.codec import PROTOCOL_VERSION, frozen, message
from workers.errors import BadInput, ErrorKind
from workers.safe_names import safe_name
from workers.schema import check_params, param

SEED_MAX = 2**63 - 1
"""Seeds are 0..2^63-1: torch generators take up to 2^64-1, SQLite and JSON readers a signed
64-bit integer, and music seeds each window with ``seed + window index``."""
MAX_SLICES = 1024
"""Largest N of a video's ``memory_mode = "slices:N"`` (the worker's memory plan reads it here)."""
MAX_SIDE = 4096
"""Largest image or video width and height, in pixels (a multiple of 8 from 8 up to this)."""
MAX_STEPS = 500
"""Most denoising steps of an image, video or brush session. Schedulers with SD's
``steps_offset=1`` index past their 1000 training steps at 1000 inference steps; 500 is already
several times what any sampler needs."""
MAX_GUIDANCE = 50.0
"""Largest classifier-free guidance scale of an image, video or brush session."""
MAX_BRUSH_LAYERS = 256
"""Most layers of a brush session (a ``.hearth`` project holding more is refused on load)."""
CHAT_QUANTS = ("auto", "fp32", "bf16", "fp16", "nf4", "fp4", "int8")
VIDEO_FORMATS = ("mp4", "gif", "webp")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
IMAGE_SAMPLERS = ("", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM")
"""Samplers by the names A1111 and ComfyUI users know (``workers/image_samplers.py`` maps each to
its diffusers scheduler); "" keeps the model's own."""
UPSCALE_STRENGTH = 0.3
"""What the Image tab's Upscale button repaints a finished image with: low enough that the tiles
keep the picture (A1111's SD upscale is used at 0.2-0.4), high enough to add detail."""


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


class JobOrigin(StrEnum):
    """Which door a job came in by: the Jobs panel labels API jobs, and only the window's are restored."""

    window = "window"
    cli = "cli"
    api = "api"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    finished = "finished"
    cancelled = "cancelled"
    failed = "failed"


# --------------------------------------------------------------------------- shared parameters


def _require_prompt(prompt: str) -> None:
    if not prompt or not prompt.strip():
        raise BadInput("prompt is empty: describe what to generate")


def _side(default: Any, what: str) -> Any:
    return param(default, low=8, high=MAX_SIDE, multiple_of=8, step=8, help=f"{what} in pixels")


def _seed() -> Any:
    return param(0, low=0, high=SEED_MAX, help="the same seed and settings give the same result")


def _steps(default: Any, low: int = 1) -> Any:
    return param(default, low=low, high=MAX_STEPS, help="denoising steps: more is slower and finer")


def _guidance(default: float = 7.5) -> Any:
    return param(
        default,
        low=0,
        high=MAX_GUIDANCE,
        step=0.5,
        help="classifier-free guidance (CFG): how closely the result follows the prompt",
    )


_MODEL_HELP = "catalog id, hub id, local folder or single-file checkpoint"
_OUT_HELP = "output file (default: the outputs folder)"


# --------------------------------------------------------------------------- job requests


@message
@frozen
class ImageRequest:
    """Text-to-image with a Stable-Diffusion-style pipeline; image-to-image and a tiled upscale
    when ``init_image`` is set."""

    prompt: str
    negative_prompt: str = param("", help="what to keep out of the image")
    width: int = _side(64, "image width")
    height: int = _side(64, "image height")
    steps: int = _steps(20)
    guidance: float = _guidance()
    seed: int = _seed()
    sampler: str = param(
        "", choices=IMAGE_SAMPLERS, help="the sampler (scheduler), by its A1111 name; empty: the model's own"
    )
    batch_count: int = param(1, low=1, high=64, help="how many images, one seed each: seed, seed+1, ...")
    init_image: str = param(
        "", help="a picture to start from (image-to-image); the output takes its size, times the upscale"
    )
    strength: float = param(
        0.75,
        low=0,
        high=1,
        step=0.05,
        help="how much of the init image is repainted: 0 keeps it, 1 paints anew from the seed",
    )
    upscale: int = param(
        1,
        low=1,
        high=4,
        help="enlarge the init image this many times, repainting it tile by tile (tiled img2img)",
    )
    loras: str = param(
        "", help="LoRA files or model ids with weights, comma-separated: 'detail.safetensors:0.8, style'"
    )
    model: str = param("demo-sd", help=_MODEL_HELP)
    out_path: str = param("", flag="--out", help=_OUT_HELP)

    kind = WorkerKind.image
    default_priority = Priority.single_shot

    def validate(self) -> None:
        from workers.lora_list import parse_loras

        _require_prompt(self.prompt)
        check_params(self)
        if self.upscale > 1 and not self.init_image:
            raise BadInput("upscale needs an init image: the picture to enlarge", field="upscale")
        if self.init_image and not Path(self.init_image).is_file():
            raise BadInput(f"init image {self.init_image} is not a file", field="init_image")
        parse_loras(self.loras)


MAX_TOOLS_JSON = 256 * 1024
"""Largest tool list a chat request carries, as JSON."""


@message
@frozen
class ToolCall:
    """A function call the assistant made (OpenAI's ``tool_calls[i]``)."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: a JSON object, as text."""


@message
@frozen
class ChatMessage:
    role: str
    """"system", "user", "assistant" or "tool" (a function's result)."""
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """The calls an assistant turn made."""
    tool_call_id: str = ""
    """Which call a "tool" message answers."""


def tool_definitions(tools: str) -> list[dict]:
    """The checked tool list of a ``ChatRequest``; raises ``BadInput`` naming what is wrong."""
    import json

    if len(tools) > MAX_TOOLS_JSON:
        raise BadInput(f"the tool definitions are over {MAX_TOOLS_JSON // 1024} KiB", field="tools")
    try:
        parsed = json.loads(tools)
    except (ValueError, RecursionError):
        raise BadInput("tools must be a JSON list", field="tools") from None
    if not isinstance(parsed, list) or not parsed:
        raise BadInput("tools must be a non-empty list", field="tools")
    for index, tool in enumerate(parsed):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise BadInput(f"tools[{index}].type must be 'function'", field="tools")
        function = tool.get("function")
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise BadInput(f"tools[{index}].function.name is required", field="tools")
    return parsed


@message
@frozen
class ChatRequest:
    """One assistant turn for a conversation."""

    messages: tuple[ChatMessage, ...]
    model: str = param("smollm2-135m-instruct", help="catalog id, hub id, local folder or .gguf file")
    quant: str = param(
        "auto",
        choices=CHAT_QUANTS,
        label="quantization",
        help="weights' precision: auto picks from the memory the arbiter grants",
    )
    max_new_tokens: int = param(512, low=1, high=32768, step=64, help="longest answer, in tokens")
    temperature: float = param(0.7, low=0, high=5, step=0.05, help="0 always picks the likeliest token")
    top_p: float = param(0.95, low=0.0, high=1.0, step=0.01, label="top-p", help="nucleus sampling")
    top_k: int = param(40, low=0, high=100000, label="top-k", help="sample among the k likeliest; 0: all")
    repetition_penalty: float = param(
        1.1, low=0.5, high=5, step=0.05, help="above 1 discourages repeating tokens"
    )
    seed: int = _seed()
    assisted: str = param(
        "",
        help="'prompt_lookup', or a draft model for speculative decoding (for a GGUF: a smaller GGUF "
        "of the same vocabulary)",
    )
    conversation_id: str = ""
    """Conversation the answer is appended to as it streams (empty: not stored)."""
    stop: tuple[str, ...] = ()
    """Stop sequences: the answer ends before the first one appears (it is not included)."""
    context_length: int = param(
        0, low=16, high=10_000_000, zero_means="the model's own", help="prompt + answer token limit"
    )
    """Oldest turns are dropped to fit."""
    allow_pickle: bool = param(
        False, help="allow pickle-based weights (.bin/.pt: they can run code when loaded)"
    )
    raw_prompt: bool = False
    """Continue the one user message as plain text, without the chat template (legacy completions)."""
    tools: str = ""
    """OpenAI tool definitions (a JSON list of ``{"type": "function", "function": {...}}``) handed
    to the model's chat template; a model whose template has no tool support refuses them. Kept as
    JSON text: a tool's parameters are a JSON Schema, free-form by nature."""

    kind = WorkerKind.chat
    default_priority = Priority.interactive

    def validate(self) -> None:
        if not self.messages or not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise BadInput("prompt is empty: write a message first")
        for m in self.messages:
            if m.role not in ("system", "user", "assistant", "tool"):
                raise BadInput(f"unknown chat role {m.role!r}")
        if self.tools:
            tool_definitions(self.tools)
        if self.conversation_id:
            safe_name("conversation id", self.conversation_id)
        if self.raw_prompt and len(self.messages) != 1:
            raise BadInput("a plain-text completion continues exactly one prompt")
        check_params(self)


MAX_EMBED_INPUTS = 256
"""Most texts one embeddings request carries (the API's batch limit)."""
MAX_EMBED_CHARS = 1_000_000
"""Most characters across one request's texts."""


@message
@frozen
class EmbedRequest:
    """Text embeddings from a chat model: its last layer's hidden states (after the final norm),
    mean-pooled over each text's tokens and L2-normalised."""

    texts: tuple[str, ...]
    model: str = param("smollm2-135m-instruct", help="catalog id, hub id, local folder or .gguf file")
    allow_pickle: bool = param(
        False, help="allow pickle-based weights (.bin/.pt: they can run code when loaded)"
    )

    kind = WorkerKind.chat
    default_priority = Priority.interactive

    def validate(self) -> None:
        if not self.texts or len(self.texts) > MAX_EMBED_INPUTS:
            raise BadInput(
                f"give 1 to {MAX_EMBED_INPUTS} texts to embed, got {len(self.texts)}", field="input"
            )
        if not all(isinstance(t, str) and t for t in self.texts):
            raise BadInput("every text to embed must be a non-empty string", field="input")
        if sum(len(t) for t in self.texts) > MAX_EMBED_CHARS:
            raise BadInput(f"the texts to embed hold more than {MAX_EMBED_CHARS} characters", field="input")
        check_params(self)


@message
@frozen
class VideoRequest:
    """Text-to-video with memory-sliced diffusion."""

    prompt: str
    negative_prompt: str = param("", help="what to keep out of the clip")
    frames: int = param(8, low=1, high=1024, help="length of the clip in frames")
    fps: int = param(8, low=1, high=120, help="frames per second of the exported clip")
    width: int = _side(64, "frame width")
    height: int = _side(64, "frame height")
    steps: int = _steps(4)
    guidance: float = _guidance()
    seed: int = _seed()
    model: str = param("demo-animatediff", help=_MODEL_HELP)
    memory_mode: str = param(
        "auto", help=f"'auto' (slices from the arbiter's lease) or 'slices:N', N from 1 to {MAX_SLICES}"
    )
    out_path: str = param("", flag="--out", help=_OUT_HELP)
    format: str = param(
        "mp4", choices=VIDEO_FORMATS, help="mp4 (H.264), gif or webp; an --out suffix takes precedence"
    )
    step_rehash: bool = param(False, help="reuse the deep UNet blocks on non-key steps (faster, approximate)")
    rehash_interval: int = param(
        2, low=1, high=100, help="with step rehash: every N-th step runs the whole UNet"
    )
    image: str = param(
        "", help="first frame to animate (image-to-video models: Wan and LTX-Video I2V); an image file"
    )

    kind = WorkerKind.video
    default_priority = Priority.background

    def validate(self) -> None:
        _require_prompt(self.prompt)
        check_params(self)
        count = self.memory_mode[7:]
        if self.memory_mode != "auto" and not (
            self.memory_mode.startswith("slices:")
            and count.isascii()  # int() refuses '²', which isdigit() accepts
            and count.isdigit()
            and len(count) <= 4  # and runs of over 4300 digits
            and 1 <= int(count) <= MAX_SLICES
        ):
            raise BadInput(
                f"memory mode must be 'auto' or 'slices:N' with N from 1 to {MAX_SLICES}, "
                f"got {self.memory_mode!r}"
            )
        if self.image:
            _require_image_file(self.image, "first-frame image")


@message
@frozen
class MusicRequest:
    """Text-to-music, optionally with chords, tempo and meter."""

    prompt: str
    seconds: float = param(8.0, low=0.1, high=3600, step=1.0, help="length of the piece")
    chords: str = param("", help="one chord per bar, e.g. 'C G Am F' (needs a BPM)")
    bpm: float = param(0.0, low=20, high=400, step=1, zero_means="no fixed tempo", label="bpm", help="tempo")
    meter: str = param("4/4", help="beats per bar, e.g. 4/4, 3/4, 6/8")
    guidance: float = param(3.0, low=0, high=20, step=0.5, help="how closely the music follows the prompt")
    temperature: float = param(1.0, low=0.01, high=5, step=0.05, help="higher is more varied")
    seed: int = _seed()
    model: str = param("demo-musicgen", help="catalog id, hub id or local folder")
    out_path: str = param("", flag="--out", help=_OUT_HELP)
    format: str = param("", help="wav, flac, ogg or mp3; empty: from --out's suffix, else wav")
    window_seconds: float = param(
        0.0,
        low=0.5,
        high=60,
        zero_means="the model's own (30 s for MusicGen)",
        help="longest stretch one generation window makes",
    )
    steps: int = param(
        0,
        low=1,
        high=MAX_STEPS,
        zero_means="the engine's own (100 for Stable Audio Open)",
        help="denoising steps of a diffusion engine (Stable Audio Open); MusicGen makes tokens, not steps",
    )

    kind = WorkerKind.music
    LONG_SECONDS = 30.0

    @property
    def default_priority(self) -> Priority:
        """A clip that fits one window is single-shot; a longer piece runs in the background."""
        return Priority.background if self.seconds > self.LONG_SECONDS else Priority.single_shot

    def validate(self) -> None:
        from workers.music.chords import parse_meter, parse_progression  # pure Python, no torch

        _require_prompt(self.prompt)
        check_params(self)
        if self.format and self.format.lower() not in AUDIO_FORMATS:
            raise BadInput(f"audio format {self.format!r} is not supported; use wav, flac, ogg or mp3")
        if self.chords.strip() and not self.bpm:
            raise BadInput("chords need a tempo: give a BPM between 20 and 400")
        parse_meter(self.meter)
        parse_progression(self.chords)


# --------------------------------------------------------------------------- layered diffusion brushes

BRUSH_MERGE_STEPS = 2
"""Layers merge into the composite this many steps before the end (the paper merges at N-2)."""


def _require_mask_png(where: str, data: bytes, width: int, height: int) -> None:
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    unreadable = (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        Image.DecompressionBombError,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (*unreadable, Image.DecompressionBombWarning):
        raise BadInput(f"{where}: the mask is not a readable PNG image") from None
    with image:
        size = image.size
        if size != (width, height):  # from the header: a mask claiming 13000 x 13000 is never decoded
            raise BadInput(f"{where}: the mask is {size[0]}x{size[1]} but the image is {width}x{height}")
        try:
            box = image.convert("L").getbbox()
        except unreadable:
            raise BadInput(f"{where}: the mask is not a readable PNG image") from None
    if box is None:
        raise BadInput(f"{where}: the mask is empty; paint the region to change first")


def _require_image_file(path: str, what: str = "photo") -> None:
    from PIL import Image, UnidentifiedImageError

    from workers.safe_images import image_size

    try:
        is_file = Path(path).is_file()
    except OSError as exc:  # a name too long for the file system, say
        raise BadInput(f"{what} {path[:80]!r} cannot be opened ({exc.strerror})") from None
    if not is_file:
        raise BadInput(f"{what} {path} does not exist")
    image_size(path, f"{what} {path}")  # from the header: a decompression bomb is never decoded
    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        raise BadInput(f"{what} {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{what} {path} is not a readable image ({exc})") from None


@message
@frozen
class BrushLayer:
    """One layered-diffusion-brush layer; the mask is a grayscale PNG at image resolution."""

    id: str
    mask_png: bytes
    """8-bit grayscale PNG, the size of the base image; 0 = untouched, 255 = fully regenerated."""
    name: str = ""
    prompt: str = param("", help="what to paint inside the mask; empty re-rolls it with the base prompt")
    strength: float = param(
        0.8, low=0, high=1, step=0.05, help="how much of the region is replaced by fresh noise"
    )
    regen_step: int = param(
        10,
        low=0,
        high=MAX_STEPS - 1 - BRUSH_MERGE_STEPS,
        label="regeneration step",
        help="n: the layer restarts from the cached latent after n of the N steps (at most N-3)",
    )
    seed: int = _seed()
    visible: bool = True
    opacity: float = param(1.0, low=0, high=1, step=0.05, help="how much of the layer shows")
    feather: float = param(2.0, low=0, high=64, step=0.5, help="blur radius of the mask edge, in pixels")

    def validate(self, width: int, height: int, steps: int) -> None:
        safe_name("layer id", self.id)
        where = f"layer {self.name or self.id!r}"
        _require_mask_png(where, self.mask_png, width, height)
        check_params(self, where)
        last = steps - 1 - BRUSH_MERGE_STEPS
        if not self.regen_step <= last:
            raise BadInput(
                f"{where}: regeneration step must be between 0 and {last}, got {self.regen_step!r}"
            )


@message
@frozen
class BrushBaseRequest:
    """Start a brush session: generate a base image (caching its trajectory) or invert a photo."""

    session_id: str
    prompt: str = ""
    negative_prompt: str = param("", help="what to keep out of the image")
    photo_path: str = param("", help="a photo to edit: it enters through DDIM inversion")
    width: int = _side(64, "image width")
    height: int = _side(64, "image height")
    steps: int = _steps(20, low=BRUSH_MERGE_STEPS + 1)
    guidance: float = _guidance()
    seed: int = _seed()
    model: str = param("demo-sd", help=_MODEL_HELP)
    project_path: str = ""
    """Where the ``.hearth`` project is written; empty means the projects folder."""

    kind = WorkerKind.image
    default_priority = Priority.single_shot

    def validate(self) -> None:
        safe_name("brush session id", self.session_id)
        if self.photo_path:
            _require_image_file(self.photo_path)
        else:
            _require_prompt(self.prompt)
        check_params(self)


@message
@frozen
class BrushRenderRequest:
    """Render the composite of a session's layers (only changed layers rerun their last steps)."""

    session_id: str
    project_path: str
    """The session's ``.hearth`` file: reloaded when the worker no longer holds the session warm."""
    width: int = _side(MISSING, "image width")
    height: int = _side(MISSING, "image height")
    steps: int = _steps(MISSING, low=BRUSH_MERGE_STEPS + 1)
    """N of the session's schedule, to check each layer's regeneration step."""
    layers: tuple[BrushLayer, ...] = ()
    """Bottom to top; where masks overlap, the upper layer covers the lower one."""
    revision: int = 0
    """Increases with every edit; a render older than one the worker already saw is dropped."""
    out_path: str = ""

    kind = WorkerKind.image
    default_priority = Priority.interactive

    def validate(self) -> None:
        safe_name("brush session id", self.session_id)
        check_params(self)
        if len(self.layers) > MAX_BRUSH_LAYERS:
            raise BadInput(f"{len(self.layers)} layers; a brush session holds at most {MAX_BRUSH_LAYERS}")
        ids = [layer.id for layer in self.layers]
        if len(set(ids)) != len(ids):
            raise BadInput("two layers share one id")
        for layer in self.layers:
            layer.validate(self.width, self.height, self.steps)


JobRequest = (
    ImageRequest
    | ChatRequest
    | EmbedRequest
    | VideoRequest
    | MusicRequest
    | BrushBaseRequest
    | BrushRenderRequest
)


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
class JobStatus:
    """What a job is doing between steps (loading a model, waiting for memory, writing the file).

    Its own event, so a status line never resets a progress bar's step count."""

    job_id: str
    message: str


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
class Embeddings:
    """An embeddings job's vectors, one per text in order, and how many tokens they read."""

    job_id: str
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


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
    origin: JobOrigin = JobOrigin.window


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

Event = (
    Hello
    | Started
    | Progress
    | JobStatus
    | TextDelta
    | Embeddings
    | Output
    | Finished
    | Cancelled
    | Failed
    | Queued
    | WorkerState
)
WorkerEvent = (
    Hello | Started | Progress | JobStatus | TextDelta | Embeddings | Output | Finished | Cancelled | Failed
)
"""What a worker sends its supervisor (``Queued`` and ``WorkerState`` are the supervisor's own)."""
Command = Submit | Cancel | Shutdown
"""What a supervisor sends its worker."""
