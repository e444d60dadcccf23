"""Image sizes checked before any pixel is decoded: a PNG's header can claim 50,000 x 50,000
pixels (10 GB once decoded) in a file of a few hundred bytes.

PIL's own guard (``Image.MAX_IMAGE_PIXELS``) is set here on purpose to Hearth's limit, so every
``Image.open`` in the process refuses a bomb even where nobody calls ``image_size``; PIL only
warns between one and two times the limit, so ``image_size`` turns that warning into a refusal.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from workers.errors import BadInput

MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
"""64 megapixels: bigger than any camera photo Hearth imports, far below a decompression bomb."""


def limit_pil() -> None:
    """Make PIL refuse images over Hearth's pixel limit (call before opening outside images)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def image_size(source: bytes | str | Path, what: str, max_side: int = MAX_IMAGE_SIDE) -> tuple[int, int]:
    """(width, height) of an image's bytes or file, read from its header only; ``BadInput`` naming
    ``what`` if it is damaged or too big."""
    from PIL import Image, UnidentifiedImageError

    limit_pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                size = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"{what} is larger than {MAX_IMAGE_PIXELS} pixels; refused before decoding") from None
    except FileNotFoundError:
        raise BadInput(f"{what} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadInput(f"{what} is not a readable image ({exc})") from None
    if max(size) > max_side:
        raise BadInput(f"{what} is {size[0]} x {size[1]} pixels; at most {max_side} on a side")
    return size
