"""Write a rendered video (MP4 H.264, GIF, WebP) with its generation parameters inside the file and
in a sidecar JSON, atomically; read them back for playback and re-export.

No torch here: the GUI imports this module to play a result and to export it to another format.
MP4 goes through imageio-ffmpeg (parameters in the container's ``comment`` tag), GIF and WebP
through Pillow (GIF comment extension; WebP EXIF ImageDescription).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from workers.atomic import atomic_path
from workers.errors import BadInput
from workers.outputs import write_sidecar

MEDIA_TYPES = {".mp4": "video/mp4", ".gif": "image/gif", ".webp": "image/webp"}
FORMATS = tuple(suffix[1:] for suffix in MEDIA_TYPES)
EXIF_DESCRIPTION = 0x010E


def media_type(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MEDIA_TYPES:
        raise BadInput(f"{Path(path).name}: unsupported video format {suffix!r}; use .mp4, .gif or .webp")
    return MEDIA_TYPES[suffix]


def export_video(frames, path: Path, fps: int, params: dict[str, Any], sidecar: bool = True) -> Path:
    """Write ``frames`` (uint8 arrays (H, W, 3) or PIL images) to ``path`` by its suffix; returns the path."""
    path = Path(path)
    kind = media_type(path)
    arrays = [_array(frame) for frame in frames]
    if not arrays:
        raise BadInput("there are no frames to export")
    comment = json.dumps(params, sort_keys=True, default=str)
    with atomic_path(path) as tmp:
        if kind == "video/mp4":
            _write_mp4(arrays, tmp, fps, comment)
        else:
            _write_animation(arrays, tmp, fps, comment, "GIF" if kind == "image/gif" else "WEBP")
    if sidecar:
        write_sidecar(path, params)
    return path


def _array(frame):
    import numpy as np

    return np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame, dtype=np.uint8)


def _write_mp4(arrays, path: Path, fps: int, comment: str) -> None:
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        str(path),
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=8,
        quality=8,
        output_params=["-metadata", f"comment={comment}"],
    )
    try:
        for array in arrays:
            writer.append_data(array)
    finally:
        writer.close()


def _write_animation(arrays, path: Path, fps: int, comment: str, fmt: str) -> None:
    from PIL import Image

    images = [Image.fromarray(array) for array in arrays]
    duration = max(1, round(1000 / fps))
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "duration": duration, "loop": 0}
    if fmt == "GIF":
        options["comment"] = comment.encode()
    else:
        exif = Image.Exif()
        exif[EXIF_DESCRIPTION] = comment
        options.update(exif=exif, lossless=False, quality=90)
    images[0].save(path, format=fmt, **options)


def read_metadata(path: Path) -> dict[str, Any]:
    """The generation parameters embedded in a video Hearth wrote ({} when there are none);
    ``BadInput`` for a file that is not a readable video."""
    from PIL import Image

    path = Path(path)
    try:
        text = _mp4_comment(path) if path.suffix.lower() == ".mp4" else _image_comment(path)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{path.name} is not a readable video ({exc})") from None
    try:
        params = json.loads(text) if text else {}
    except (ValueError, RecursionError):  # not JSON, an integer of 4301 digits, nested too deep
        return {}
    return params if isinstance(params, dict) else {}


def _mp4_comment(path: Path) -> str:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    # ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash.
    for line in re.split(r"(?<!\\)\n", result.stdout):
        if line.startswith("comment="):
            return re.sub(r"\\(.)", r"\1", line[len("comment=") :], flags=re.DOTALL)
    return ""


def _image_comment(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        if "comment" in image.info:
            comment = image.info["comment"]
            return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
        return str(image.getexif().get(EXIF_DESCRIPTION, ""))


def read_frames(path: Path) -> tuple[list, float]:
    """Every frame as a uint8 array (H, W, 3), and the frame rate, for playback or re-export."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            fps = float(reader.get_meta_data().get("fps", 8))
            return [frame for frame in reader], fps
        finally:
            reader.close()
    return _read_animation(path)


def _read_animation(path: Path) -> tuple[list, float]:
    import numpy as np
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        duration = image.info.get("duration", 125) or 125
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    return frames, 1000.0 / duration
