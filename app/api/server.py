"""The HTTP app: OpenAI's routes over one :class:`~app.api.hub.JobHub`.

``create_app`` is what both doors run: ``hearth serve`` (headless, its own supervisor) and the
window's Local API switch (the window's supervisor, so API jobs and the window's are arbitrated
together and show in the same Jobs panel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from app.api.chat import ChatEndpoints, EmbeddingEndpoint
from app.api.errors import ApiError, error_response
from app.api.guard import MAX_JSON_BODY, ApiGuard, BodyTooLarge
from app.api.hub import JobHub, TooManyJobs
from app.api.media import FileLinks, MediaEndpoints
from app.api.model_list import listing


def client_of(request: Request) -> str:
    """Who the per-client job cap counts against: the peer's address (one machine, one client)."""
    return request.client.host if request.client else "unknown"


def create_app(hub: JobHub, key: str, base_url: Callable[[], str], cors_origins: Sequence[str] = ()):
    app = FastAPI(title="Hearth local API", docs_url=None, redoc_url=None, openapi_url=None)
    chat = ChatEndpoints(hub)
    embedding = EmbeddingEndpoint(hub)
    media = MediaEndpoints(hub, FileLinks(), base_url)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(TooManyJobs)
    async def _too_many(request, exc: TooManyJobs):
        return error_response(429, str(exc), type="rate_limit_error", code="too_many_jobs")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc: BodyTooLarge):
        return error_response(
            413, f"the request body is larger than {MAX_JSON_BODY // 2**20} MiB", code="request_too_large"
        )

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return error_response(
            exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None
        )

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": listing()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        found = next((row for row in listing() if row["id"] == model_id), None)
        if found is None:
            raise ApiError(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return found

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await chat.chat_completions(request, client_of(request))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await chat.completions(request, client_of(request))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await embedding.embeddings(request, client_of(request))

    @app.post("/v1/images/generations")
    async def image_generations(request: Request):
        return await media.generations(request, client_of(request))

    @app.post("/v1/images/edits")
    async def image_edits(request: Request):
        return await media.edits(request, client_of(request))

    @app.post("/v1/videos")
    async def create_video(request: Request):
        return await media.create_video(request, client_of(request))

    @app.get("/v1/videos/{video_id}")
    async def video(video_id: str):
        return JSONResponse(media.video(video_id).as_json())

    @app.delete("/v1/videos/{video_id}")
    async def delete_video(video_id: str):
        return media.delete_video(video_id)

    @app.get("/v1/videos/{video_id}/content")
    async def video_content(video_id: str):
        return media.video_content(video_id)

    @app.post("/v1/audio/music")
    async def music(request: Request):
        return await media.music(request, client_of(request))

    @app.get("/v1/files/{token}")
    async def file(token: str):
        return media.file(token)

    guarded = ApiGuard(app, key)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        return CORSMiddleware(
            guarded,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return guarded
