"""Every failure leaves as an OpenAI-style JSON error: `{"error": {"message", "type", "param", "code"}}`.

The package's typed errors map to status codes here, once; routes raise them (or `ApiError`) and never
build error responses themselves. Unexpected exceptions become a 500 without internal details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from stepaudio.errors import (
    AudioError,
    CheckpointError,
    MissingExtraError,
    StepAudioError,
    TagError,
    UnsupportedError,
)
from stepaudio.server.schemas import ErrorResponse
from stepaudio.store.voices import VoiceExistsError, VoiceNotFoundError, VoiceStoreError

log = logging.getLogger("stepaudio.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
          405: "invalid_request_error", 408: "timeout_error", 409: "conflict_error",
          413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
          503: "server_busy_error"}

# What each status means here, for the published schema.
STATUS_DESCRIPTIONS = {
    400: "a request the server refuses (bad value, unusable audio, unknown Host header)",
    401: "missing or invalid API key",
    403: "a browser page on another origin",
    404: "no such model, voice or capability",
    408: "the request body stalled",
    409: "the voice name is taken",
    413: "over a size, length, count or duration limit",
    415: "the body is not of the content type the route reads",
    422: "the body or a parameter does not match this schema",
    500: "the engine or the server failed",
    503: "the engine is busy (retry after `Retry-After` seconds) or a model is unavailable",
}
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
_HEADERS = {401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
            503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds, when busy"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the error envelope as its body."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS[status]}
        if status in _HEADERS:
            responses[status]["headers"] = _HEADERS[status]
    return responses


class ApiError(StarletteHTTPException):
    """An error the server reports on purpose, with its status code. It is an HTTPException so that FastAPI
    passes it through unchanged when it is raised while a request body is read."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status,
                        headers=dict(headers) if headers else None)


def to_api_error(exc: BaseException) -> ApiError:
    """The status and code a package error deserves."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, VoiceNotFoundError):
        return ApiError(404, f"{exc}; list the registered voices with GET /v1/voices", code="voice_not_found",
                        param="voice")
    if isinstance(exc, VoiceExistsError):
        return ApiError(409, str(exc), code="voice_exists", param="name")
    if isinstance(exc, VoiceStoreError):
        return ApiError(400, str(exc), code="invalid_voice")
    if isinstance(exc, AudioError):
        message = str(exc)
        if "longer than" in message:
            return ApiError(413, message, code="audio_too_long")
        if "larger than" in message:
            return ApiError(413, message, code="file_too_large")
        return ApiError(400, message, code="invalid_audio")
    if isinstance(exc, TagError):
        return ApiError(400, str(exc), code="invalid_instruction", param="instructions")
    if isinstance(exc, UnsupportedError):  # asked of an engine that cannot do it (a voice it cannot speak in...)
        return ApiError(400, str(exc), code="unsupported")
    if isinstance(exc, MissingExtraError):
        return ApiError(503, str(exc), code="missing_dependency")
    if isinstance(exc, CheckpointError):
        return ApiError(503, str(exc), code="model_unavailable")
    if isinstance(exc, StepAudioError):
        return ApiError(500, str(exc), code="engine_error")
    return ApiError(500, "internal server error", code="internal_error")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's 405 names only the first route that matched
    the path, but GET and DELETE of one resource are separate routes; each method is tried on the routes."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]


def install_error_handlers(app: FastAPI) -> None:
    async def on_package_error(request: Request, exc: Exception) -> JSONResponse:
        error = to_api_error(exc)
        if error.status >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(error.status, error.message, error.code, error.param, error.headers)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}"
        return error_response(exc.status_code, message, headers=headers or None)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = exc.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        param = ".".join(location) or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg', 'invalid')}" for item in problems[:5]
        )
        return error_response(422, message or "invalid request", code="invalid_value", param=param)

    app.add_exception_handler(ApiError, on_package_error)
    app.add_exception_handler(StepAudioError, on_package_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_package_error)
