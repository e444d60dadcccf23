"""The API's door: the key is checked before anything else, then the body's size, as it arrives.

Pure ASGI (no ``BaseHTTPMiddleware``), so a streamed answer and a client's disconnect pass
through untouched.
"""

from __future__ import annotations

from app.api.errors import error_response
from app.api.keys import key_matches

MAX_JSON_BODY = 8 * 1024 * 1024
"""A long conversation is a few hundred kB of JSON; 8 MiB leaves room without inviting abuse."""
MAX_UPLOAD_BODY = 64 * 1024 * 1024
"""An image edit carries an image and a mask (multipart); 64 MiB holds a 4096² PNG pair."""
UPLOAD_PATHS = ("/v1/images/edits",)
OPEN_PREFIXES = ("/v1/files/",)
"""Capability URLs (``response_format=url``): the unguessable token in the path is the credential,
so an image tag or a browser can fetch them without the key."""


class BodyTooLarge(Exception):
    pass


class ApiGuard:
    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope.get("method") == "OPTIONS":  # CORS pre-flight carries no key
            return await self.app(scope, receive, send)
        if not path.startswith(OPEN_PREFIXES) and not key_matches(headers.get("authorization"), self.key):
            response = error_response(
                401,
                "Incorrect API key provided. Hearth's key is printed by `hearth api-key` "
                "(and shown under Settings → Local API).",
                code="invalid_api_key",
            )
            return await response(scope, receive, send)
        limit = MAX_UPLOAD_BODY if path in UPLOAD_PATHS else MAX_JSON_BODY
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(limit)(scope, receive, send)
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await _too_large(limit)(scope, receive, send)


def _too_large(limit: int):
    return error_response(
        413, f"the request body is larger than {limit // (1024 * 1024)} MiB", code="request_too_large"
    )
