"""Errors in the shape OpenAI's API sends them: ``{"error": {"message", "type", "param", "code"}}``.

The ``openai`` client turns the status into its exception class (401 ``AuthenticationError``,
404 ``NotFoundError``, ...) and shows ``message``; ``param`` names the request field at fault.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from workers.errors import BadInput, ErrorKind


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, type=self.type, param=self.param, code=self.code)


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def bad_input(exc: BadInput, renames: dict[str, str] | None = None) -> ApiError:
    """A schema refusal as a 400 naming the field by the name the client sent it under."""
    field = exc.field or None
    if field and renames:
        field = renames.get(field, field)
    return ApiError(400, str(exc), param=field)


def missing_model(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{model}' does not exist or Hearth cannot find it",
        param="model",
        code="model_not_found",
    )


def job_failed(kind: ErrorKind, message: str, model: str = "") -> ApiError:
    """A job that failed in its worker, as the status a client can act on."""
    match kind:
        case ErrorKind.bad_input:
            return ApiError(400, message)
        case ErrorKind.missing_model:
            return ApiError(404, message, param="model", code="model_not_found")
        case ErrorKind.out_of_memory:
            return ApiError(503, message, type="server_error", code="out_of_memory")
        case _:
            return ApiError(500, message, type="server_error", code=kind.value)
