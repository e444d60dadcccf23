"""Gallery thumbnails, made once per file version and kept on disk.

An image is scaled down; a video shows its first frame (imageio for MP4, Pillow for GIF/WebP);
music shows its waveform, the min/max of each pixel column, read block by block with soundfile
so a long piece never sits in memory whole. No Qt: the Gallery tab calls ``thumbnail`` from its
background thread and gets PNG bytes back. The cache key is the file's path, size and mtime, so
an overwritten file (a brush render re-rendered) gets a fresh thumbnail.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from workers.atomic import write_bytes
from workers.errors import BadInput

SIDE = 160
"""Thumbnails fit in SIDE x SIDE pixels."""
WAVE_SIZE = (SIDE, SIDE * 9 // 16)
WAVE_BACKGROUND = (30, 30, 36)
WAVE_COLOUR = (90, 176, 240)
AUDIO_BLOCK = 65536


def cache_dir() -> Path:
    from workers.paths import data_dir

    return data_dir() / "thumbnails"


def cache_path(path: Path, mtime: float, size: int, folder: Path | None = None) -> Path:
    key = hashlib.sha256(f"{Path(path).resolve()}|{mtime!r}|{size}".encode()).hexdigest()[:32]
    return (folder or cache_dir()) / f"{key}.png"


def thumbnail(
    path: Path, kind: str, mtime: float, size: int, folder: Path | None = None
) -> tuple[bytes, bool]:
    """(PNG bytes, made now?) for ``path``: from the cache, else made and cached."""
    cached = cache_path(path, mtime, size, folder)
    try:
        return cached.read_bytes(), False
    except OSError:
        pass
    png = render(Path(path), kind)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(cached, png)
    except OSError:
        pass  # a read-only data folder: thumbnails are made again next time
    return png, True


def render(path: Path, kind: str) -> bytes:
    """A fresh thumbnail; ``BadInput`` when the file cannot be decoded."""
    try:
        if kind == "music":
            image = waveform(path)
        elif kind == "video" and path.suffix.lower() == ".mp4":
            image = _first_video_frame(path)
        else:
            image = _still(path)
    except BadInput:
        raise
    except (OSError, ValueError, RuntimeError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        raise BadInput(f"{path.name} cannot be shown ({exc})") from None
    image = _fit(image)
    if kind == "video":
        _play_badge(image)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _fit(image):
    """Down to SIDE with smoothing; a tiny picture (a 64 px demo image) up to SIDE with hard edges."""
    from PIL import Image

    longest = max(image.size)
    if longest > SIDE:
        image.thumbnail((SIDE, SIDE))
    elif longest < SIDE:
        scale = SIDE / longest
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.NEAREST)
    return image


def _play_badge(image) -> None:
    """A play triangle in the corner: a clip's first frame is not taken for a still."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    left, bottom = 6, image.height - 6
    draw.rounded_rectangle((left, bottom - 22, left + 26, bottom), radius=5, fill=(17, 24, 39))
    draw.polygon(
        [(left + 9, bottom - 17), (left + 9, bottom - 5), (left + 19, bottom - 11)], fill=(243, 244, 246)
    )


def _still(path: Path):
    """An image, or the first frame of a GIF/WebP animation."""
    from PIL import Image

    from workers.safe_images import image_size

    image_size(path, path.name)  # a decompression bomb is refused before decoding
    with Image.open(path) as image:
        image.draft("RGB", (SIDE * 2, SIDE * 2))  # JPEG decodes at a fraction of its size
        image.seek(0)
        return image.convert("RGB")


def _first_video_frame(path: Path):
    import imageio.v2 as imageio
    from PIL import Image

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frame = reader.get_data(0)
    finally:
        reader.close()
    return Image.fromarray(frame).convert("RGB")


def waveform(path: Path, size: tuple[int, int] = WAVE_SIZE):
    """The mixed-down waveform: for each pixel column, a line from its lowest to its highest sample."""
    import numpy as np
    import soundfile
    from PIL import Image, ImageDraw

    width, height = size
    with soundfile.SoundFile(str(path)) as audio:
        frames = audio.frames
        if frames <= 0:
            raise BadInput(f"{path.name} holds no audio")
        per_column = max(1, -(-frames // width))
        lows, highs = np.zeros(width, np.float32), np.zeros(width, np.float32)
        column = 0
        for block in audio.blocks(
            blocksize=per_column * max(1, AUDIO_BLOCK // per_column), dtype="float32", always_2d=True
        ):
            mono = block.mean(axis=1)
            for start in range(0, mono.size, per_column):
                if column >= width:
                    break
                piece = mono[start : start + per_column]
                lows[column], highs[column] = piece.min(), piece.max()
                column += 1
    image = Image.new("RGB", size, WAVE_BACKGROUND)
    draw = ImageDraw.Draw(image)
    middle, half = height / 2, height / 2 - 2
    draw.line([(0, middle), (width, middle)], fill=(68, 68, 68))
    for x in range(column):
        top, bottom = middle - float(highs[x]) * half, middle - float(lows[x]) * half
        draw.line([(x, top), (x, max(bottom, top + 1))], fill=WAVE_COLOUR)
    return image
