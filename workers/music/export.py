"""Writing music files: WAV, FLAC, OGG Vorbis (and MP3 where libsndfile has it) through soundfile.

Every file carries its generation parameters twice: in the file's own tags (title = the prompt,
comment = the parameters as JSON, software = Hearth; RIFF INFO for WAV, Vorbis comments for
FLAC/OGG) and in a sidecar ``<file>.json``. Writes are atomic. No torch here: the GUI uses this
module too (save-as converts between formats and keeps the tags).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from workers.atomic import atomic_path
from workers.errors import BadInput
from workers.outputs import write_sidecar

FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
TITLE_MAX = 200


def format_of(path: Path, requested: str = "") -> str:
    """The format to write: the one asked for, else the file's suffix, else WAV."""
    import soundfile

    name = (requested or Path(path).suffix.lstrip(".") or "wav").lower()
    if name not in FORMATS:
        raise BadInput(f"audio format {name!r} is not supported; use one of {', '.join(FORMATS)}")
    if FORMATS[name][0] not in soundfile.available_formats():
        raise BadInput(f"this build of libsndfile cannot write {name.upper()}; use WAV or FLAC")
    return name


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(Path(path).suffix.lstrip(".").lower(), "audio/wav")


def save_audio(
    path: Path,
    audio: np.ndarray,
    sample_rate: int,
    params: dict[str, Any],
    fmt: str = "",
    sidecar: bool = True,
) -> Path:
    """Write ``audio`` (channels, samples) float in [-1, 1] atomically, tagged, plus its sidecar."""
    import soundfile

    path = Path(path)
    fmt = format_of(path, fmt)
    container, subtype = FORMATS[fmt]
    frames = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0).T  # (samples, channels)
    with atomic_path(path) as tmp:
        with soundfile.SoundFile(
            tmp, "w", sample_rate, frames.shape[1], format=container, subtype=subtype
        ) as out:
            _tag(out, params)
            out.write(frames)
    if sidecar:
        write_sidecar(path, params)
    return path


def _tag(out, params: dict[str, Any]) -> None:
    title = _tag_text(params.get("prompt", ""))[:TITLE_MAX]
    if title:  # libsndfile refuses an empty string ("bad string")
        out.title = title
    out.comment = json.dumps(params, sort_keys=True, default=str)
    out.software = "Hearth"
    out.date = time.strftime("%Y-%m-%d")
    if params.get("model"):
        out.artist = _tag_text(f"Hearth ({params['model']})")


def _tag_text(value: Any) -> str:
    """Text libsndfile can store: UTF-8 (a lone surrogate, which JSON may carry, is replaced)."""
    return str(value).encode("utf-8", "replace").decode()


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the sample rate."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise BadInput(f"{Path(path).name} is not a readable audio file ({exc})") from None
    return data.T, rate


def read_parameters(path: Path) -> dict[str, Any]:
    """The generation parameters from a file's tags (empty when it has none)."""
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as handle:
            comment = handle.comment
    except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise BadInput(f"{Path(path).name} is not a readable audio file ({exc})") from None
    return _parameters(comment)


def _parameters(text: str) -> dict[str, Any]:
    """Parameters from a tag or a sidecar: a JSON object, else none."""
    try:
        params = json.loads(text) if text else {}
    except (ValueError, RecursionError):  # not JSON, an integer of 4301 digits, nested too deep
        return {}
    return params if isinstance(params, dict) else {}


def convert(source: Path, target: Path, fmt: str = "") -> Path:
    """Save-as: re-encode ``source`` into ``target``'s format, keeping its parameters."""
    audio, rate = read_audio(source)
    params = read_parameters(source)
    sidecar = Path(str(source) + ".json")
    if not params and sidecar.exists():
        params = _parameters(sidecar.read_text(errors="replace"))
    return save_audio(target, audio, rate, params, fmt=fmt)
