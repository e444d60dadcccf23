"""What made an output: the generation parameters carried by a PNG, video or audio file.

Read from, in this order of trust:
- Hearth's own JSON: the ``hearth`` PNG text chunk, the ``<file>.json`` sidecar, the MP4
  ``comment`` tag, the GIF/WebP comment, or the WAV/FLAC/OGG ``comment`` tag (``workers/outputs.py``,
  ``workers/video/export.py``, ``workers/music/export.py`` write them);
- the A1111 ``parameters`` text that Stable Diffusion web UI, Forge, Fooocus and SD.Next write
  (and Hearth too, beside its JSON): the prompt, a ``Negative prompt:`` line, then one line of
  ``Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, Size: 512x768, Model: ...``.

Every file may come from anywhere (dropped on the window, ``hearth info``): sizes are bounded,
images are checked by their header before PIL reads a chunk (``workers/safe_images.py``), and
anything unreadable is a ``BadInput`` that says what is wrong, never a crash. Pure Python and
PIL: the window and the command line both import this module, neither imports torch.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.errors import BadInput
from workers.schema import check_value, params

MAX_PARAMETERS_CHARS = 64 * 1024
"""Longest A1111 ``parameters`` text read (A1111's own prompts stay far below it)."""
MAX_SIDECAR_BYTES = 1024 * 1024
"""Largest sidecar JSON read (Hearth's are a few hundred bytes)."""
MAX_PROMPT_CHARS = 32 * 1024
"""Longest prompt restored into a form."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".gif", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SUFFIXES = tuple(dict.fromkeys(IMAGE_SUFFIXES + VIDEO_SUFFIXES + AUDIO_SUFFIXES))
"""Every file a generation's parameters are read from."""

JOB_KINDS = {
    "ImageRequest": "image",
    "VideoRequest": "video",
    "MusicRequest": "music",
    "BrushRender": "brush",
    "BrushExport": "brush",
    "BrushBaseRequest": "brush",
}
"""Hearth's ``job`` field -> the tab that made it."""

EXIF_DESCRIPTION = 0x010E
EXIF_IFD = 0x8769
EXIF_USER_COMMENT = 0x9286
"""Where A1111 puts ``parameters`` in a JPEG or WebP."""
_KEY = re.compile(r"\w[\w \-/]+")
"""A1111's setting names: "Steps", "CFG scale", "Model hash", "Schedule type"."""


@dataclass(frozen=True)
class GenerationInfo:
    """The parameters of one output, normalised to Hearth's request field names."""

    path: Path
    kind: str
    """"image", "video", "music" or "brush" (a brush render or export)."""
    params: dict[str, Any]
    """Hearth's own record, or what A1111's text gives: prompt, negative_prompt, steps, sampler,
    guidance, seed, width, height, model (and ``a1111``: every setting as written)."""
    source: str
    """Where they were read, in words ("the PNG's hearth chunk", "the sidecar x.png.json", ...)."""
    text: str = ""
    """The A1111 ``parameters`` text, when the file carries one."""
    notes: tuple[str, ...] = ()
    """What was found but could not be used ("Steps: 'many' is not a whole number")."""

    @property
    def prompt(self) -> str:
        value = self.params.get("prompt", "")
        return value if isinstance(value, str) else ""

    @property
    def model(self) -> str:
        value = self.params.get("model", "")
        return value if isinstance(value, str) else ""

    @property
    def from_hearth(self) -> bool:
        return "job" in self.params

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "kind": self.kind,
            "source": self.source,
            "parameters": self.params,
            "a1111": self.text,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- reading files


def read_info(path: str | Path) -> GenerationInfo:
    """The generation parameters of ``path``; ``BadInput`` saying why when there are none."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(
            f"{path.name}: Hearth reads parameters from {', '.join(SUFFIXES)} files, not {suffix!r}"
        )
    try:
        if not path.is_file():
            raise BadInput(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    except OSError as exc:  # a name too long for the file system, say
        raise BadInput(f"{str(path)[:80]!r} cannot be opened ({exc.strerror})") from None
    if suffix in (".png", ".jpg", ".jpeg") or (suffix == ".webp" and not _is_animated(path)):
        return _from_image(path)
    if suffix in (".mp4", ".gif", ".webp"):
        return _from_media(path, _video_metadata, "the video's comment tag")
    return _from_media(path, _audio_metadata, "the audio file's comment tag")


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's JSON object (None when there is no sidecar); ``BadInput`` when it is damaged."""
    sidecar = sidecar_of(path)
    try:
        size = sidecar.stat().st_size
    except OSError:
        return None
    if size > MAX_SIDECAR_BYTES:
        raise BadInput(f"{sidecar.name} is {size} bytes; a sidecar is at most {MAX_SIDECAR_BYTES}")
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{sidecar.name} cannot be read ({exc})") from None
    return _json_object(text, sidecar.name)


def _sidecar_noting(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """The sidecar, or None with a note saying why a damaged one was passed over."""
    try:
        return read_sidecar(path)
    except BadInput as exc:
        notes.append(str(exc))
        return None


def _from_image(path: Path) -> GenerationInfo:
    chunks = _image_text(path)
    notes: list[str] = []
    if "hearth" in chunks:
        try:
            own = _json_object(chunks["hearth"], "the hearth chunk")
            return _hearth(path, own, "the PNG's hearth text chunk", chunks.get("parameters", ""))
        except BadInput as exc:
            notes.append(str(exc))
    sidecar = _sidecar_noting(path, notes)
    if sidecar is not None:
        return _hearth(
            path, sidecar, f"the sidecar {sidecar_of(path).name}", chunks.get("parameters", ""), notes
        )
    if chunks.get("parameters"):
        parsed = parse_a1111(chunks["parameters"])
        return GenerationInfo(
            path=path,
            kind="image",
            params=parsed.params,
            source="the image's A1111 parameters",
            text=chunks["parameters"],
            notes=tuple(notes) + parsed.notes,
        )
    if "workflow" in chunks or "prompt" in chunks:
        raise BadInput(
            f"{path.name} carries a ComfyUI workflow graph, not A1111 parameters; "
            "Hearth does not read ComfyUI graphs"
        )
    raise BadInput(f"{path.name} carries no generation parameters" + (f" ({notes[0]})" if notes else ""))


def _image_text(path: Path) -> dict[str, str]:
    """Text chunks of a PNG (or A1111's EXIF UserComment of a JPEG/WebP), header-checked first."""
    from PIL import Image, UnidentifiedImageError

    from workers.safe_images import image_size

    image_size(path, path.name)  # a decompression bomb is refused before any chunk is read
    unreadable = (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        Image.DecompressionBombError,
    )
    try:
        with Image.open(path) as image:
            # Chunks before the pixel data are in ``info`` (Hearth, A1111 and others write them
            # there); ``text`` decodes the image to find any written after it.
            found = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
            if image.format == "PNG" and not found:
                found = {k: v for k, v in image.text.items() if isinstance(v, str)}
            if image.format == "WEBP" and str(image.getexif().get(EXIF_DESCRIPTION, "")).startswith("{"):
                found.setdefault("hearth", str(image.getexif()[EXIF_DESCRIPTION]))  # a one-frame video export
            if image.format in ("JPEG", "WEBP") and "parameters" not in found:
                comment = image.getexif().get_ifd(EXIF_IFD).get(EXIF_USER_COMMENT)
                if comment is not None:
                    found["parameters"] = _user_comment(comment)
    except unreadable as exc:
        raise BadInput(f"{path.name} is not a readable image ({exc})") from None
    return found


def _user_comment(value: Any) -> str:
    """EXIF UserComment: an 8-byte charset mark, then the text (A1111 writes UTF-16 'UNICODE')."""
    if isinstance(value, str):
        return value
    data = bytes(value)
    head, body = data[:8], data[8:]
    if head.startswith(b"UNICODE"):
        big = body[:2] != b"\xff\xfe" and (len(body) < 2 or body[0] == 0)
        return body.decode("utf-16-be" if big else "utf-16-le", "replace").lstrip("\ufeff")
    return body.decode("utf-8", "replace") if head.startswith(b"ASCII") else data.decode("utf-8", "replace")


def _is_animated(path: Path) -> bool:
    from PIL import Image

    from workers.safe_images import limit_pil

    limit_pil()
    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False  # the image reader says why


def _from_media(path: Path, embedded, where: str) -> GenerationInfo:
    """Video and audio: the sidecar (no decoder needed), else the parameters inside the file."""
    notes: list[str] = []
    own = _sidecar_noting(path, notes)
    if own is not None:
        return _hearth(path, own, f"the sidecar {sidecar_of(path).name}", "", notes)
    own = embedded(path)
    if own:
        return _hearth(path, own, where, "", notes)
    raise BadInput(f"{path.name} carries no generation parameters" + (f" ({notes[0]})" if notes else ""))


def _video_metadata(path: Path) -> dict[str, Any]:
    from workers.video.export import read_metadata

    try:
        return read_metadata(path)
    except subprocess.TimeoutExpired:
        raise BadInput(f"{path.name}: reading its tags took over a minute; refused") from None


def _audio_metadata(path: Path) -> dict[str, Any]:
    from workers.music.export import read_parameters

    return read_parameters(path)


def _hearth(path: Path, own: dict, source: str, text: str, notes=()) -> GenerationInfo:
    job = own.get("job")
    kind = JOB_KINDS.get(job) if isinstance(job, str) else None
    if kind is None:
        kind = _kind_of_suffix(path)
    return GenerationInfo(path=path, kind=kind, params=own, source=source, text=text, notes=tuple(notes))


def _kind_of_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "music"
    if suffix in (".mp4", ".gif"):
        return "video"
    return "image"


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, nested too deep, an integer of 4301 digits
        raise BadInput(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what} is not a JSON object")
    return value


# --------------------------------------------------------------------------- A1111's text


@dataclass(frozen=True)
class Parsed:
    params: dict[str, Any]
    notes: tuple[str, ...] = ()


_NUMBERS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "CFG scale": ("guidance", float),
    "Seed": ("seed", int),
}


def parse_a1111(text: str) -> Parsed:
    """A1111's ``parameters`` text, read the way A1111's own ``parse_generation_parameters`` does.

    Lines up to ``Negative prompt:`` are the prompt, the lines after it the negative prompt; the
    last line holds the settings when it has at least three ``Key: value`` pairs (values may be
    quoted JSON strings holding commas). A value that is not what its key needs is left out and
    named in ``notes``. Runs in linear time on any input (no backtracking regex over the line).
    """
    if not isinstance(text, str):
        raise BadInput("the parameters text is not text")
    if len(text) > MAX_PARAMETERS_CHARS:
        raise BadInput(
            f"the parameters text is {len(text)} characters; at most {MAX_PARAMETERS_CHARS} are read"
        )
    text = text.replace("\r\n", "\n").replace("\x00", "")
    *lines, last = text.strip().split("\n")
    pairs = settings_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt, negative = _prompts(lines)
    if not prompt and not negative and not pairs:
        raise BadInput("the parameters text holds no prompt and no settings")
    result: dict[str, Any] = {
        "prompt": prompt[:MAX_PROMPT_CHARS],
        "negative_prompt": negative[:MAX_PROMPT_CHARS],
    }
    notes: list[str] = []
    settings = dict(pairs)
    for key, value in pairs:
        _setting(key, value, settings, result, notes)
    if pairs:
        result["a1111"] = settings
    return Parsed(params=result, notes=tuple(notes))


def _prompts(lines: list[str]) -> tuple[str, str]:
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    return "\n".join(prompt).strip(), "\n".join(negative).strip()


def _setting(key: str, value: str, settings: dict, result: dict, notes: list[str]) -> None:
    if key in _NUMBERS:
        name, kind = _NUMBERS[key]
        number = _number(value, kind)
        if number is None:
            notes.append(
                f"{key}: {value[:40]!r} is not {'a whole number' if kind is int else 'a number'}; left out"
            )
        else:
            result[name] = number
    elif key == "Size":
        size = _size(value)
        if size is None:
            notes.append(f"Size: {value[:40]!r} is not WIDTHxHEIGHT; left out")
        else:
            result["width"], result["height"] = size
    elif key == "Sampler" and value:
        schedule = settings.get("Schedule type", "")
        # A1111 1.9+ writes "Sampler: DPM++ 2M, Schedule type: Karras"; older ones "DPM++ 2M Karras".
        joined = (
            f"{value} {schedule}"
            if schedule and schedule != "Automatic" and not value.endswith(schedule)
            else value
        )
        result["sampler"] = joined
    elif key == "Model" and value:
        result["model"] = value


def _number(value: str, kind: type) -> int | float | None:
    value = value.strip()
    if not value or len(value) > 32:
        return None
    try:
        number = int(value) if kind is int else float(value)
    except ValueError:
        return None
    return number if kind is int or math.isfinite(number) else None


def _size(value: str) -> tuple[int, int] | None:
    width, sep, height = value.strip().partition("x")
    if not sep or not (width.isascii() and width.isdigit() and height.isascii() and height.isdigit()):
        return None
    if len(width) > 6 or len(height) > 6:
        return None
    return int(width), int(height)


def settings_pairs(line: str) -> list[tuple[str, str]]:
    """``Key: value, Key: "quoted, value", ...`` -> pairs, skipping what is not a pair.

    Each search stays inside the current comma-separated piece (or one quoted value), so the
    whole line is read in linear time whatever it holds."""
    pairs: list[tuple[str, str]] = []
    n, i = len(line), 0
    while i < n:
        comma = line.find(",", i)
        piece_end = n if comma < 0 else comma
        colon = line.find(":", i, piece_end)
        if colon < 0:
            i = piece_end + 1
            continue
        key = line[i:colon].strip()
        start = colon + 1
        while start < piece_end and line[start] == " ":
            start += 1
        if start < n and line[start] == '"':  # a quoted value may hold commas
            end = _closing_quote(line, start)
            value = _unquote(line[start : end + 1])
            comma = line.find(",", end + 1)
        else:
            value = line[start:piece_end].strip()
        if _KEY.fullmatch(key):
            pairs.append((key, value))
        i = n if comma < 0 else comma + 1
    return pairs


def _closing_quote(line: str, start: int) -> int:
    k = start + 1
    while k < len(line) and line[k] != '"':
        k += 2 if line[k] == "\\" else 1
    return min(k, len(line) - 1)


def _unquote(quoted: str) -> str:
    try:
        value = json.loads(quoted)
    except (ValueError, RecursionError):
        return quoted
    return value if isinstance(value, str) else quoted


# --------------------------------------------------------------------------- into a request


@dataclass(frozen=True)
class Restored:
    """The fields of one request class a file's parameters give, checked against the schema."""

    prompt: str = ""
    negative_prompt: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def request_fields(
    params_: dict[str, Any], request_cls: type, skip: tuple[str, ...] = ("out_path",)
) -> Restored:
    """What of ``params_`` fits ``request_cls``: every declared parameter present, of the right
    type and in its range (``workers/schema.py``); the rest is named in ``notes``, never raised."""
    notes: list[str] = []
    fields_: dict[str, Any] = {}
    for name, info in params(request_cls).items():
        if name in skip or name not in params_:
            continue
        value = _coerce(params_[name], info.type)
        try:
            if value is None:
                raise BadInput(
                    f"{info.label} {str(params_[name])[:40]!r} is not {_TYPE_WORDS.get(info.type, 'of its type')}"
                )
            check_value(info, value)
        except BadInput as exc:
            notes.append(f"{exc}; left as it was")
            continue
        fields_[name] = value
    return Restored(
        prompt=_text(params_.get("prompt")),
        negative_prompt=fields_.pop("negative_prompt", _text(params_.get("negative_prompt"))),
        fields=fields_,
        notes=tuple(notes),
    )


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "yes or no"}


def _text(value: Any) -> str:
    return value[:MAX_PROMPT_CHARS] if isinstance(value, str) else ""


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        if isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return _number(value, int)
        return value if isinstance(value, int) else None
    if kind is float:
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            return _number(value, float)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    if kind is str:
        return value[:MAX_PROMPT_CHARS] if isinstance(value, str) else None
    return None


# --------------------------------------------------------------------------- for people


LABELS = {
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "steps": "steps",
    "sampler": "sampler",
    "guidance": "CFG scale",
    "seed": "seed",
    "model": "model",
}


def describe(info: GenerationInfo) -> list[tuple[str, str]]:
    """(label, value) lines for a person: the usual settings first, then the rest."""
    p = info.params
    lines: list[tuple[str, str]] = [("kind", info.kind), ("source", info.source)]
    for key, label in LABELS.items():
        if p.get(key) not in (None, ""):
            lines.append((label, str(p[key])))
    if "width" in p and "height" in p:
        lines.append(("size", f"{p['width']}x{p['height']}"))
    shown = set(LABELS) | {"width", "height", "a1111"}
    for key in sorted(k for k in p if k not in shown and p[k] not in ("", None, [], {})):
        value = p[key]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append((key.replace("_", " "), text if len(text) <= 200 else text[:200] + "…"))
    lines.extend(("note", note) for note in info.notes)
    return lines
