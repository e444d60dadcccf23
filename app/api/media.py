"""Images, video and music over HTTP: OpenAI's image and video shapes, and Hearth's own music endpoint.

Every request becomes the same typed job the window submits (``ImageRequest``,
``BrushBaseRequest`` + ``BrushRenderRequest``, ``VideoRequest``, ``MusicRequest``); its Hearth
parameters beyond OpenAI's are extra body fields under their schema names.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.responses import FileResponse, JSONResponse, Response

from app.api.bodies import form_values, int_field, json_body, take_extras, text_field
from app.api.errors import ApiError, bad_input
from app.api.follow import run_to_end
from app.api.hub import JobHub, JobWatch
from app.api.model_list import require_model
from models.catalog import ModelKind
from models.image_profile import recommended_profile, recommended_settings
from workers.errors import BadInput
from workers.protocol import (
    AUDIO_FORMATS,
    Cancelled,
    Failed,
    Finished,
    ImageRequest,
    MusicRequest,
    Output,
    Progress,
    Started,
    VideoRequest,
)

MAX_IMAGES = 10
"""OpenAI's own limit of ``n``."""
URL_LIFETIME_S = 3600.0
"""How long a ``response_format=url`` link stays valid (OpenAI's last an hour too)."""
AUDIO_MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}


def parse_size(value: object, cls: type) -> dict:
    """``"WIDTHxHEIGHT"`` as request fields; absent: {} (the size the model is made for, else the declared one)."""
    if value in (None, "auto"):
        return {}
    if isinstance(value, str):
        width, sep, height = value.lower().partition("x")
        if sep and width.isascii() and width.isdigit() and height.isascii() and height.isdigit():
            if len(width) <= 5 and len(height) <= 5:
                return {"width": int(width), "height": int(height)}
    raise ApiError(400, f"size must be WIDTHxHEIGHT (e.g. 512x512), got {value!r}", param="size")


class FileLinks:
    """Capability URLs for outputs: an unguessable token per file, valid for an hour."""

    def __init__(self) -> None:
        self._links: dict[str, tuple[Path, float]] = {}

    def add(self, path: str) -> str:
        now = time.monotonic()
        self._links = {t: (p, at) for t, (p, at) in self._links.items() if now - at < URL_LIFETIME_S}
        token = secrets.token_urlsafe(24)
        self._links[token] = (Path(path), now)
        return token

    def path(self, token: str) -> Path | None:
        found = self._links.get(token)
        if found is None or time.monotonic() - found[1] >= URL_LIFETIME_S:
            return None
        return found[0]


@dataclass
class VideoJob:
    """What ``GET /v1/videos/{id}`` reports: OpenAI's video object, kept while the server runs."""

    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "queued"
    progress: int = 0
    path: str = ""
    error: dict | None = None
    completed_at: int | None = None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": None,
            "prompt": self.prompt,
            "seconds": self.seconds,
            "size": self.size,
            "remixed_from_video_id": None,
            "error": self.error,
        }


class MediaEndpoints:
    def __init__(self, hub: JobHub, links: FileLinks, base_url) -> None:
        self.hub, self.links, self.base_url = hub, links, base_url
        self.videos: dict[str, VideoJob] = {}
        self._video_tasks: set[asyncio.Task] = set()

    def _submit(self, request, client: str) -> JobWatch:
        try:
            request.validate()
            return self.hub.submit(request, client)
        except BadInput as exc:
            raise bad_input(exc) from None

    # -- images -----------------------------------------------------------------------------

    async def generations(self, request, client: str):
        body = await json_body(request)
        used = {
            "prompt",
            "model",
            "n",
            "size",
            "response_format",
            "user",
            "quality",
            "style",
            "background",
            "output_format",
            "moderation",
        }
        prompt = text_field(body, "prompt", required=True)
        model = require_model(body.get("model") or _default(ImageRequest), ModelKind.image)
        count = int_field(body, "n", 1, low=1, high=MAX_IMAGES)
        response_format = _response_format(body)
        # Paths on this machine (an init image, LoRA files) are never taken from a client; n is the batch.
        extras = take_extras(
            body,
            ImageRequest,
            used=used,
            exclude=("model", "out_path", "init_image", "loras", "upscale", "batch_count"),
        )
        seed = extras.pop("seed", _default(ImageRequest, "seed"))
        profile = recommended_profile(model)  # size, steps, guidance the model is made for
        made_for = recommended_settings(profile) if profile is not None else {}
        jobs = []
        for index in range(count):  # n images: n seeds in a row, as a batch in the window would be
            seed_i = {"seed": seed + index if isinstance(seed, int) and not isinstance(seed, bool) else seed}
            try:
                job = ImageRequest(
                    prompt=prompt,
                    model=model,
                    **{**made_for, **parse_size(body.get("size"), ImageRequest), **extras, **seed_i},
                )
            except TypeError as exc:
                raise ApiError(400, str(exc)) from None
            jobs.append(self._submit(job, client))
        results = []
        try:
            for watch in jobs:
                results.append(await run_to_end(self.hub, watch, request, model))
        finally:
            for watch in jobs:
                self.hub.cancel(watch)
        paths = [_last_of(r.outputs, "image/png") for r in results]
        return JSONResponse(
            {"created": int(time.time()), "data": [self._image_item(p, response_format) for p in paths]}
        )

    async def edits(self, request, client: str):
        from app.api.image_edit import plan_edit

        form = await _form(request)
        try:
            plan = await asyncio.to_thread(plan_edit, form)
        except BadInput as exc:
            raise bad_input(exc) from None
        response_format = _response_format(form)
        try:
            base = self._submit(plan.base, client)
            await run_to_end(self.hub, base, request, plan.base.model)
            render = self._submit(plan.render(), client)
            result = await run_to_end(self.hub, render, request, plan.base.model)
        finally:
            plan.discard_upload()
        path = _last_of(result.outputs, "image/png")
        return JSONResponse({"created": int(time.time()), "data": [self._image_item(path, response_format)]})

    def _image_item(self, path: str, response_format: str) -> dict:
        if response_format == "url":
            return {"url": f"{self.base_url()}/v1/files/{self.links.add(path)}", "revised_prompt": None}
        return {"b64_json": base64.b64encode(Path(path).read_bytes()).decode("ascii"), "revised_prompt": None}

    # -- video ------------------------------------------------------------------------------

    async def create_video(self, request, client: str):
        body = await _json_or_form(request, VideoRequest)
        used = {"prompt", "model", "seconds", "size", "input_reference"}
        prompt = text_field(body, "prompt", required=True)
        model = require_model(body.get("model") or _default(VideoRequest), ModelKind.video)
        if body.get("input_reference") is not None:
            raise ApiError(
                400, "input_reference (image-to-video) is not supported yet", param="input_reference"
            )
        # "image" names a file on this machine: the API never opens a path a client sends.
        extras = take_extras(body, VideoRequest, used=used, exclude=("model", "out_path", "format", "image"))
        fields = {**parse_size(body.get("size"), VideoRequest), **extras}
        seconds = body.get("seconds")
        if seconds is not None:
            try:
                seconds_value = float(seconds)
            except (TypeError, ValueError):
                raise ApiError(400, "seconds must be a number", param="seconds") from None
            fps = fields.get("fps", _default(VideoRequest, "fps"))
            if isinstance(fps, int) and not isinstance(fps, bool) and fps > 0 and 0 < seconds_value <= 3600:
                fields["frames"] = max(1, round(seconds_value * fps))
            else:
                raise ApiError(400, "seconds must be between 0 and 3600", param="seconds")
        try:
            job = VideoRequest(prompt=prompt, model=model, format="mp4", **fields)
        except TypeError as exc:
            raise ApiError(400, str(exc)) from None
        watch = self._submit(job, client)
        video = VideoJob(
            id="video_" + watch.job_id,
            model=body.get("model") or _default(VideoRequest),
            prompt=prompt,
            seconds=f"{job.frames / job.fps:g}",
            size=f"{job.width}x{job.height}",
        )
        self.videos[video.id] = video
        task = asyncio.get_running_loop().create_task(self._follow_video(video, watch))
        self._video_tasks.add(task)
        task.add_done_callback(self._video_tasks.discard)
        return JSONResponse(video.as_json())

    async def _follow_video(self, video: VideoJob, watch: JobWatch) -> None:
        """A video job outlives its request (OpenAI's videos are polled), so nothing cancels it but
        ``DELETE /v1/videos/{id}`` or the Jobs panel."""
        while not watch.ended:
            event = await watch.next_event()
            match event:
                case Started():
                    video.status = "in_progress"
                case Progress(step=step, total=total) if total:
                    video.status, video.progress = "in_progress", min(99, int(100 * step / total))
                case Output(path=path, media_type="video/mp4"):
                    video.path = path
                case Finished():
                    video.status, video.progress = "completed", 100
                    video.completed_at = int(time.time())
                case Failed(kind=kind, message=message):
                    video.status, video.error = "failed", {"code": kind.value, "message": message}
                case Cancelled():
                    video.status, video.error = "failed", {"code": "cancelled", "message": "cancelled"}

    def video(self, video_id: str) -> VideoJob:
        found = self.videos.get(video_id)
        if found is None:
            raise ApiError(404, f"no video with id {video_id!r}", param="video_id", code="not_found")
        return found

    def video_content(self, video_id: str):
        video = self.video(video_id)
        if video.status != "completed" or not video.path:
            raise ApiError(409, f"video {video_id} is {video.status}, not completed", code="video_not_ready")
        return FileResponse(video.path, media_type="video/mp4")

    def delete_video(self, video_id: str):
        video = self.video(video_id)
        self.hub.supervisor.cancel(video_id.removeprefix("video_"))
        return JSONResponse({"id": video.id, "object": "video.deleted", "deleted": True})

    # -- music ------------------------------------------------------------------------------

    async def music(self, request, client: str):
        body = await json_body(request)
        used = {"prompt", "model", "format"}
        prompt = text_field(body, "prompt", required=True)
        model = require_model(body.get("model") or _default(MusicRequest), ModelKind.music)
        audio_format = text_field(body, "format", default="wav") or "wav"
        if audio_format not in AUDIO_FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(AUDIO_FORMATS)}", param="format")
        extras = take_extras(body, MusicRequest, used=used, exclude=("model", "out_path", "format"))
        try:
            job = MusicRequest(prompt=prompt, model=model, format=audio_format, **extras)
        except TypeError as exc:
            raise ApiError(400, str(exc)) from None
        result = await run_to_end(self.hub, self._submit(job, client), request, model)
        media_type = AUDIO_MEDIA_TYPES[audio_format]
        path = _last_of(result.outputs, media_type)
        return FileResponse(path, media_type=media_type, filename=Path(path).name)

    # -- files ------------------------------------------------------------------------------

    def file(self, token: str):
        path = self.links.path(token)
        if path is None or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path)


def _default(cls: type, name: str = "model"):
    from workers.schema import default_of

    return default_of(cls, name)


def _response_format(body) -> str:
    value = body.get("response_format") or "b64_json"
    if value not in ("b64_json", "url"):
        raise ApiError(400, "response_format must be b64_json or url", param="response_format")
    return value


def _last_of(outputs: list[Output], media_type: str) -> str:
    path = next((o.path for o in reversed(outputs) if o.media_type == media_type), "")
    if not path:
        raise ApiError(500, f"the job finished without writing {media_type}", type="server_error")
    return path


async def _form(request) -> dict:
    """A multipart body as ``{name: str | bytes}``; files are read into memory (the guard capped it)."""
    from app.api.guard import MAX_UPLOAD_BODY

    try:
        form = await request.form(max_files=4, max_fields=64, max_part_size=MAX_UPLOAD_BODY)
    except Exception as exc:  # noqa: BLE001 - the parser's own errors: a malformed upload
        raise ApiError(400, f"the request must be multipart/form-data ({exc})") from None
    found = {}
    for name, value in form.multi_items():
        if hasattr(value, "read"):
            found[name if name not in found else f"{name}[]"] = await value.read()
        else:
            found[name] = value
    await form.close()
    return found


async def _json_or_form(request, cls: type) -> dict:
    """The ``openai`` client sends some bodies as multipart forms, whose values are all strings."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return form_values(await _form(request), cls)
    return await json_body(request)
