"""The edge of every HTTP request and WebSocket handshake, before any route reads a byte of its body.

Host and Origin checks (origin.py: other web pages and DNS rebinding), the API-key check (when a key is
configured; WebSocket handshakes too), the body size cap per kind of route (declared length and the bytes
actually received), the content type a route accepts (415 otherwise), and an idle timeout while waiting for
the next piece of a body, so a slow or stalled client cannot hold a worker.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepaudio.server.errors import ApiError, error_body
from stepaudio.server.origin import OriginPolicy
from stepaudio.server.settings import ServerSettings

UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/voices", "/v1/audio/voices", "/v1/audio/edits")
JSON_ROUTES = ("/v1/audio/speech", "/v1/chat/completions", "/v1/voices/design")
OPEN_PATHS = ("/health", "/", "/docs", "/openapi.json", "/docs/oauth2-redirect")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_UPLOAD_SLACK = 1024 * 1024  # form fields and multipart framing beside the file


@dataclass(frozen=True)
class BodyRule:
    limit: int
    content_types: tuple[str, ...]


def body_rule(settings: ServerSettings, method: str, path: str) -> BodyRule | None:
    """The size cap and content types of a route's body; None for routes that read no body (every body route is
    a POST: another method there is left to the router's 405)."""
    if method != "POST":
        return None
    if path in UPLOAD_ROUTES:
        return BodyRule(settings.max_upload_bytes + _UPLOAD_SLACK, _FORM_TYPES)
    if path in JSON_ROUTES:
        return BodyRule(settings.max_json_bytes, ("application/json",))
    return None


def key_required(settings: ServerSettings, path: str) -> bool:
    """Whether a request to `path` needs the API key: the /v1 routes, when a key is configured."""
    return bool(settings.api_key) and path.startswith("/v1") and path not in OPEN_PATHS


class EdgeGuard:
    """Pure ASGI middleware: rejects early with JSON errors, and bounds what a request body can cost."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.policy = OriginPolicy.from_settings(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["type"] == "websocket":
            refusal = self._origin_refusal(headers)
            if refusal is None and not self._key_ok(path, headers, websocket=True):
                refusal = ApiError(401, "missing or invalid API key")
            if refusal is None:
                await self.app(scope, receive, send)
            else:  # refuse the handshake (the client sees HTTP 403); 1008: policy violation
                await receive()
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            refusal = self._origin_refusal(headers)
            if refusal is not None:
                raise refusal
            if scope["method"] != "OPTIONS":
                self._check_key(path, headers)
            rule = body_rule(self.settings, scope["method"], path)
            if rule is not None:
                self._check_declared(rule, headers)
        except ApiError as exc:
            await _send_error(send, exc)
            return
        limit = rule.limit if rule is not None else self.settings.max_json_bytes
        await self.app(scope, _bounded_receive(receive, limit, self.settings.idle_timeout_s), send)

    def _origin_refusal(self, headers: dict[str, str]) -> ApiError | None:
        host = headers.get("host")
        reason = self.policy.host_error(host)
        if reason is not None:
            return ApiError(400, reason, code="host_not_allowed")
        reason = self.policy.origin_error(headers.get("origin"), host)
        if reason is not None:
            return ApiError(403, reason, code="origin_not_allowed")
        return None

    def _check_key(self, path: str, headers: dict[str, str]) -> None:
        if not self._key_ok(path, headers):
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def _key_ok(self, path: str, headers: dict[str, str], websocket: bool = False) -> bool:
        """The key from `Authorization: Bearer`, `X-Api-Key`, or for browsers' WebSockets (which cannot set
        headers) the subprotocol `openai-insecure-api-key.<key>`, as OpenAI's realtime API accepts it."""
        key = self.settings.api_key
        if not key or not key_required(self.settings, path):
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        candidates = [token.strip() if scheme.lower() == "bearer" else "", headers.get("x-api-key", "")]
        if websocket:
            prefix = "openai-insecure-api-key."
            protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
            candidates += [p[len(prefix):] for p in protocols if p.startswith(prefix)]
        return any(hmac.compare_digest(given.encode(), key.encode()) for given in candidates if given)

    @staticmethod
    def _check_declared(rule: BodyRule, headers: dict[str, str]) -> None:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "invalid Content-Length header", code="invalid_header")
            if int(length) > rule.limit:
                raise ApiError(413, f"the request body is {length} bytes, more than the {rule.limit} allowed",
                               code="request_too_large")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in rule.content_types:
            raise ApiError(415, f"unsupported Content-Type {content_type or '(none)'!r}; "
                           f"send {' or '.join(rule.content_types)}", code="unsupported_media_type")


def _bounded_receive(receive: Receive, limit: int, idle_timeout: float) -> Receive:
    """`receive` that counts body bytes against `limit` and waits at most `idle_timeout` for each piece."""
    state = {"received": 0, "complete": False}

    async def bounded() -> Message:
        if state["complete"]:
            return await receive()  # after the body: disconnect notices, no timeout
        try:
            with anyio.fail_after(idle_timeout):
                message = await receive()
        except TimeoutError:
            raise ApiError(408, f"no request data for {idle_timeout:g} s", code="request_timeout") from None
        if message["type"] == "http.request":
            state["received"] += len(message.get("body", b""))
            if state["received"] > limit:
                raise ApiError(413, f"the request body is larger than the {limit} bytes allowed",
                               code="request_too_large")
            state["complete"] = not message.get("more_body", False)
        else:
            state["complete"] = True
        return message

    return bounded


async def _send_error(send: Send, exc: ApiError) -> None:
    body = json.dumps(error_body(exc.status, exc.message, exc.code, exc.param)).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())]
    extra: Mapping[str, Any] = exc.headers or {}
    headers += [(k.lower().encode(), str(v).encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
