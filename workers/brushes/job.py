"""The image worker's brush jobs: start a session (generate or invert) and render layers.

Sessions (trajectory + per-layer branch cache) stay warm in the worker between jobs, under one
key of ``ctx.cache``; a session the worker no longer holds is rebuilt from its ``.hearth`` file,
so an evicted session or a restarted worker costs a reload, never a regeneration.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

from workers.atomic import check_writable
from workers.brushes.layers import Layer
from workers.brushes.project import save_session, session_from_project
from workers.brushes.project_io import MEDIA_TYPE, project_path_for
from workers.brushes.render import BrushSession, region_preview
from workers.context import JobContext
from workers.errors import BadInput, JobCancelled
from workers.protocol import BrushBaseRequest, BrushRenderRequest
from workers.safe_names import path_inside, safe_name

SESSIONS_KEY = "brush-sessions"


class BrushSessions:
    """The warm sessions of one worker, least recently used first out."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, BrushSession] = OrderedDict()

    def get(self, session_id: str) -> BrushSession | None:
        if session_id in self._items:
            self._items.move_to_end(session_id)
        return self._items.get(session_id)

    def put(self, session: BrushSession) -> None:
        self._items[session.session_id] = session
        self._items.move_to_end(session.session_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def run(ctx: JobContext, request) -> None:
    # Ids end up in file names; a request may carry them from a project someone else made.
    safe_name("session id", request.session_id)
    for layer in getattr(request, "layers", ()):
        safe_name("layer id", layer.id)
    match request:
        case BrushBaseRequest():
            start_session(ctx, request)
        case BrushRenderRequest():
            render_layers(ctx, request)
        case _:
            raise BadInput(f"the image worker cannot run a {type(request).__name__}")


def start_session(ctx: JobContext, request: BrushBaseRequest) -> BrushSession:
    """Generate the base image (or invert the photo), cache its trajectory, write the project."""
    from workers.brushes.trajectory import decode, generate, invert

    path = _project_path(request)
    pipe = _pipeline(ctx, request.model, request.width, request.height)
    on_step = _stepper(ctx, "inverting photo" if request.photo_path else "generating base", pipe)
    if request.photo_path:
        base = load_photo(request.photo_path, request.width, request.height)
        trajectory = invert(
            pipe, base, request.prompt, request.negative_prompt, request.steps, request.guidance, on_step
        )
    else:
        trajectory = generate(
            pipe,
            request.prompt,
            request.negative_prompt,
            request.width,
            request.height,
            request.steps,
            request.guidance,
            request.seed,
            on_step,
        )
        base = decode(pipe, trajectory.latents[-1:])
    session = BrushSession(
        session_id=request.session_id,
        pipe=pipe,
        trajectory=trajectory,
        base_image=base,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        model=request.model,
    )
    _sessions(ctx).put(session)
    save_session(path, session, session_parameters(request))
    ctx.metric("unet_calls", request.steps)
    ctx.output(str(path), MEDIA_TYPE)
    return session


def render_layers(ctx: JobContext, request: BrushRenderRequest) -> None:
    """Composite the request's layers; only layers whose branch is not cached touch the UNet."""
    from workers.outputs import save_png

    path = _render_path(request)
    session = _session(ctx, request)
    if request.revision < session.latest_revision:
        raise JobCancelled(-1)  # a newer edit has already been rendered: latest wins
    session.latest_revision = request.revision
    layers = [Layer.from_message(message) for message in request.layers]
    start = time.perf_counter()
    result = session.render(
        layers, on_step=lambda i, n, preview: ctx.step(i, n, "rendering", preview=preview)
    )
    elapsed = time.perf_counter() - start
    save_png(result.image, path, render_parameters(session, request, result.unet_calls, elapsed))
    ctx.metric("unet_calls", result.unet_calls)
    ctx.metric("seconds", elapsed)
    ctx.output(str(path), "image/png")


def session_parameters(request: BrushBaseRequest) -> dict:
    return {
        "session_id": request.session_id,
        "model": request.model,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance": request.guidance,
        "seed": request.seed,
        "source": "photo" if request.photo_path else "generated",
    }


def render_parameters(
    session: BrushSession, request: BrushRenderRequest, unet_calls: int, seconds: float
) -> dict:
    layers = [
        {
            key: getattr(layer, key)
            for key in (
                "id",
                "name",
                "prompt",
                "strength",
                "regen_step",
                "seed",
                "visible",
                "opacity",
                "feather",
            )
        }
        for layer in request.layers
    ]
    return {
        "job": "BrushRender",
        "session_id": session.session_id,
        "model": session.model,
        "prompt": session.prompt,
        "negative_prompt": session.negative_prompt,
        "steps": session.steps,
        "guidance": session.trajectory.guidance,
        "width": request.width,
        "height": request.height,
        "family": _family_name(session.pipe),
        "sampler": "FlowMatchEuler" if _flow(session.pipe) else "DDIM",
        "layers": layers,
        "unet_calls": unet_calls,
        "seconds": round(seconds, 3),
    }


def _family_name(pipe) -> str:
    from models.image import image_family

    return image_family(pipe).name


def _flow(pipe) -> bool:
    from models.image import image_family

    return image_family(pipe).flow_matching


def load_photo(path: str, width: int, height: int):
    """The photo, cropped to the aspect and resized to the session's size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from workers.safe_images import image_size

    image_size(path, f"photo {path}")  # its size from the header, before a pixel is decoded
    try:
        with Image.open(path) as image:
            return ImageOps.fit(image.convert("RGB"), (width, height), Image.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInput(f"photo {path} is not a readable image ({exc})") from None


def _session(ctx: JobContext, request: BrushRenderRequest) -> BrushSession:
    sessions = _sessions(ctx)
    session = sessions.get(request.session_id)
    if session is None:
        from workers.brushes.project_io import read_project

        ctx.status("reopening the project")
        project = read_project(request.project_path)  # read once: what was checked is what is used
        if project.session_id != request.session_id:
            raise BadInput(f"{request.project_path} holds another session ({project.session_id})")
        pipe = _pipeline(ctx, project.params["model"], request.width, request.height)
        session = session_from_project(pipe, project)
        sessions.put(session)
    else:
        session.pipe = _pipeline(ctx, session.model, request.width, request.height)
    if session.steps != request.steps:
        raise BadInput(f"this session has {session.steps} steps, the request says {request.steps}")
    return session


def _sessions(ctx: JobContext) -> BrushSessions:
    return ctx.cache.get_or_load(SESSIONS_KEY, BrushSessions)


def _pipeline(ctx: JobContext, model: str, width: int, height: int):
    """The same warm pipeline and arbiter lease as text-to-image (key ``sd:<model>``).

    Brush edits are interactive: the tiers offered keep the denoiser resident (offloading it
    would move its weights for every step of every edit), from all parts resident down to the
    text encoders and VAE moving in only when used."""
    from models.image import load_image_pipeline
    from workers.devices import compute_device
    from workers.image_tiers import image_tiers

    key = f"sd:{model}"
    if key not in ctx.cache:
        ctx.status(f"loading {model}")
    device = compute_device()
    pipe = ctx.cache.get_or_load(key, lambda: load_image_pipeline(model, device=device))
    tiers = image_tiers(pipe, width, height, device, interactive=True)
    ctx.lease_memory(key, tiers, on_release=lambda: pipe.to("cpu"))
    return pipe


def _stepper(ctx: JobContext, message: str, pipe):
    from models.image import image_family

    family = image_family(pipe)

    def on_step(step: int, total: int, latents) -> None:
        ctx.step(step, total, message, preview=region_preview(latents, family=family))

    return on_step


def _project_path(request: BrushBaseRequest) -> Path:
    path = Path(request.project_path) if request.project_path else project_path_for(request.session_id)
    if not request.project_path:
        path.parent.mkdir(parents=True, exist_ok=True)
    return check_writable(path)


def _render_path(request: BrushRenderRequest) -> Path:
    if request.out_path:
        return check_writable(Path(request.out_path))
    from workers.paths import data_dir

    folder = data_dir() / "brush-renders"
    folder.mkdir(parents=True, exist_ok=True)
    return path_inside(folder, safe_name("session id", request.session_id) + ".png")
