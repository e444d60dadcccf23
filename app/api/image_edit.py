"""``POST /v1/images/edits`` as a layered-brush edit: the image enters a brush session through DDIM
inversion (``BrushBaseRequest`` with ``photo_path``) and the mask becomes one layer
(``BrushRenderRequest``), so only the layer's last steps run and every pixel outside the
(feathered) mask is the uploaded image's own, bit for bit.

The mask follows OpenAI: fully transparent pixels are edited. A mask without transparency is
read as Hearth's brush masks are: white is edited. With no mask, the image's own transparent
pixels are edited. The session is kept as a ``.hearth`` project, so the edit can be refined in
the Brushes tab.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.api.bodies import form_values
from app.api.errors import ApiError
from app.api.model_list import require_model
from models.catalog import ModelKind
from workers.atomic import write_bytes
from workers.errors import BadInput
from workers.paths import data_dir
from workers.protocol import BRUSH_MERGE_STEPS, BrushBaseRequest, BrushLayer, BrushRenderRequest
from workers.safe_images import image_size
from workers.safe_names import path_inside
from workers.schema import default_of

FORM_FIELDS = {
    "image",
    "image[]",
    "mask",
    "prompt",
    "model",
    "n",
    "size",
    "response_format",
    "user",
    "quality",
    "background",
    "input_fidelity",
    "output_format",
}
BASE_EXTRAS = ("negative_prompt", "steps", "guidance")
LAYER_EXTRAS = ("strength", "regen_step", "feather", "seed")


def uploads_dir() -> Path:
    path = data_dir() / "api-uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class EditPlan:
    base: BrushBaseRequest
    layer: BrushLayer
    upload: Path

    def render(self) -> BrushRenderRequest:
        return BrushRenderRequest(
            session_id=self.base.session_id,
            project_path=self.base.project_path or _project(self.base),
            width=self.base.width,
            height=self.base.height,
            steps=self.base.steps,
            layers=(self.layer,),
            revision=1,
        )

    def discard_upload(self) -> None:
        self.upload.unlink(missing_ok=True)


def _project(base: BrushBaseRequest) -> str:
    from workers.brushes.project_io import project_path_for

    return str(project_path_for(base.session_id))


def plan_edit(form: dict) -> EditPlan:
    """Check the upload and build both jobs; raises ``ApiError``/``BadInput`` naming the problem."""
    image = form.get("image", form.get("image[]"))
    if not isinstance(image, bytes) or not image:
        raise ApiError(400, "image is required: the PNG to edit, as a file", param="image")
    if "image[][]" in form:
        raise ApiError(400, "one image per edit", param="image")
    prompt = form.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "prompt is required: what to paint in the masked region", param="prompt")
    if form.get("n") not in (None, "1"):
        raise ApiError(400, "n > 1 is not supported for edits", param="n")
    unknown = sorted(set(form) - FORM_FIELDS - set(BASE_EXTRAS) - set(LAYER_EXTRAS))
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])
    model = require_model(form.get("model") or default_of(BrushBaseRequest, "model"), ModelKind.image)
    width, height = image_size(image, "image")
    if width % 8 or height % 8:
        raise BadInput(f"image is {width}x{height}; width and height must be multiples of 8", field="image")
    size = form.get("size")
    if size not in (None, "auto", f"{width}x{height}"):
        raise ApiError(400, f"size {size!r} differs from the image's own size {width}x{height}", param="size")
    mask = edit_mask(form.get("mask"), image, (width, height))
    base_fields = {k: v for k, v in form_values(form, BrushBaseRequest).items() if k in BASE_EXTRAS}
    layer_fields = {k: v for k, v in form_values(form, BrushLayer).items() if k in LAYER_EXTRAS}
    session = uuid.uuid4().hex[:12]
    upload = path_inside(uploads_dir(), f"{session}.png")
    _save_rgb_png(image, upload)
    try:
        base = BrushBaseRequest(
            session_id=session, photo_path=str(upload), width=width, height=height, model=model, **base_fields
        )
        base.validate()
        regen = layer_fields.pop("regen_step", None)
        if regen is None:  # the declared default, or the last step this schedule allows
            regen = min(default_of(BrushLayer, "regen_step"), base.steps - 1 - BRUSH_MERGE_STEPS)
        layer = BrushLayer(
            id="api-edit", mask_png=mask, name="API edit", prompt=prompt, regen_step=regen, **layer_fields
        )
        layer.validate(width, height, base.steps)
    except (BadInput, TypeError) as exc:
        upload.unlink(missing_ok=True)
        if isinstance(exc, TypeError):
            raise ApiError(400, str(exc)) from None
        raise
    return EditPlan(base=base, layer=layer, upload=upload)


def edit_mask(mask: object, image: bytes, size: tuple[int, int]) -> bytes:
    """The layer mask (8-bit gray PNG, white = edited) from OpenAI's transparent-means-edit mask."""
    from PIL import Image

    source = mask if isinstance(mask, bytes) and mask else image
    what = "mask" if source is mask else "image (used as its own mask)"
    found = image_size(source, what)
    if found != size:
        raise BadInput(f"{what} is {found[0]}x{found[1]}; the image is {size[0]}x{size[1]}", field="mask")
    try:
        with Image.open(io.BytesIO(source)) as opened:
            opened.load()
            has_alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
            rgba = opened.convert("RGBA")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadInput(f"{what} is not a readable image ({exc})", field="mask") from None
    if has_alpha:
        gray = rgba.getchannel("A").point(lambda a: 255 if a == 0 else 0)
    elif source is mask:
        gray = rgba.convert("L").point(lambda v: 255 if v >= 128 else 0)
    else:
        raise BadInput("give a mask: the image has no transparent pixels to edit", field="mask")
    if gray.getbbox() is None:
        raise BadInput(f"{what} marks nothing to edit (no fully transparent pixels)", field="mask")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    return buffer.getvalue()


def _save_rgb_png(image: bytes, path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image)) as opened:
            rgb = opened.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadInput(f"image is not a readable image ({exc})", field="image") from None
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
