"""POST /v1/chat/completions: text and spoken turns in; text, tool calls and (with `modalities`) audio out.

The turn itself is `realtime.turn.run_turn`, as everywhere: an engine that hears audio gets the user's speech
(and any text of the same message), others get a transcript. Audio output speaks the reply sentence by
sentence with the requested voice: whole and base64-encoded in `message.audio`, or, when streaming, as
`delta.audio` pcm16 chunks (24 kHz) with each sentence's transcript.
Capabilities are always taken in the order transcriber, chat, synthesizer, so requests cannot deadlock.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from stepaudio.engines.base import CancelToken, Synthesizer, ToolCall, Usage, Voice
from stepaudio.realtime.turn import (
    ReplyAudio,
    ReplyText,
    ToolCalled,
    TurnDone,
    TurnEvent,
    TurnSettings,
    needs_transcriber,
    run_turn,
)
from stepaudio.server.audio_out import PcmStream, check_format, encode
from stepaudio.server.chat_convert import convert_request
from stepaudio.server.context import Context, ServerContext
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.schemas import ChatCompletion, ChatRequest, sse_content
from stepaudio.server.streaming import (
    SSE_HEADERS,
    ClosingStreamingResponse,
    Lease,
    iterate_blocking,
    primed,
    run_blocking,
    sse,
    with_error_event,
)
from stepaudio.text.sentences import continuation

router = APIRouter(tags=["chat"])


@dataclass(frozen=True)
class _Spoken:
    synthesizer: Synthesizer
    voice: Voice | str | None
    fmt: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the completion, or with `stream` its `chat.completion.chunk` server-sent events",
          "model": ChatCompletion, "content": sse_content()},
    **error_responses(400, 404, 413, 503),
}


@router.post("/v1/chat/completions", responses=_RESPONSES)
async def create_chat_completion(body: ChatRequest, ctx: Context) -> Response:
    ctx.chat()
    spoken = await _spoken(body, ctx)
    converted = await run_blocking(convert_request, body, ctx.settings)
    settings = TurnSettings(voice=spoken.voice if spoken else None, options=converted.options,
                            tools=tuple(converted.tools or ()), speak=spoken is not None)
    listens = needs_transcriber(ctx.engine, converted.messages, settings)
    if listens:
        ctx.transcriber()  # an engine that can neither hear nor transcribe is refused before any work
    cancel = CancelToken()
    leases: list[Lease] = []
    try:
        for capability, wanted in (("transcriber", listens), ("chat", True), ("synthesizer", spoken is not None)):
            if wanted:
                leases.append(await ctx.gate.acquire(capability))
        events = await primed(iterate_blocking(
            lambda: run_turn(ctx.engine, converted.messages, settings, cancel), cancel))
        meta = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = with_error_event(_stream(events, meta, spoken, include_usage, ctx))
            response = ClosingStreamingResponse(stream, lease=_Both(list(leases)), media_type="text/event-stream",
                                                headers=SSE_HEADERS)
            leases.clear()  # the response releases them when the stream ends
            return response
        return JSONResponse(await _whole(events, meta, spoken, ctx))
    finally:
        _Both(leases).release()


class _Both(Lease):
    """Several leases released together."""

    def __init__(self, leases: list[Lease]) -> None:
        self._leases = leases

    def release(self) -> None:
        for lease in reversed(self._leases):
            lease.release()


async def _spoken(body: ChatRequest, ctx: ServerContext) -> _Spoken | None:
    if "audio" not in (body.modalities or []):
        if body.audio is not None:
            raise ApiError(400, "'audio' is set but 'modalities' does not include 'audio'",
                           code="invalid_value", param="modalities")
        return None
    if body.audio is None:
        raise ApiError(400, "audio output needs the 'audio' parameter ({voice, format})", code="invalid_value",
                       param="audio")
    if body.stream and body.audio.format != "pcm16":
        raise ApiError(400, "streamed audio output needs audio.format 'pcm16'", code="unsupported_format",
                       param="audio.format")
    fmt = check_format(body.audio.format, "audio.format")
    return _Spoken(ctx.synthesizer(), await ctx.resolve_voice(body.audio.voice), fmt)


def _tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}}
    if index is not None:
        out["index"] = index
    return out


def _finish(done: TurnDone) -> str:
    return "stop" if done.finish_reason == "cancelled" else done.finish_reason


async def _whole(events: AsyncIterator[TurnEvent], meta: dict[str, Any], spoken: _Spoken | None,
                 ctx: ServerContext) -> dict[str, Any]:
    pieces: list[np.ndarray] = []
    rate = spoken.synthesizer.sample_rate if spoken else 0
    done = TurnDone("", "stop")
    async for event in events:
        if isinstance(event, ReplyAudio):
            pieces.append(np.asarray(event.chunk.samples, dtype=np.float32).reshape(-1))
            rate = event.chunk.sample_rate
        elif isinstance(event, TurnDone):
            done = event
    message: dict[str, Any] = {"role": "assistant", "content": done.reply}
    if done.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in done.tool_calls]
    if spoken is not None and pieces:
        assert spoken is not None
        data = await run_blocking(encode, np.concatenate(pieces), rate, spoken.fmt)
        message["audio"] = {"id": "audio_" + secrets.token_hex(12), "data": base64.b64encode(data).decode(),
                            "expires_at": int(time.time()) + ctx.settings.audio_expiry_s, "transcript": done.reply}
        message["content"] = None
    body = {**meta, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(done), "logprobs": None}]}
    if done.usage is not None:
        body["usage"] = _usage(done.usage)
    return body


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def _chunk(meta: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse({**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})


async def _stream(events: AsyncIterator[TurnEvent], meta: dict[str, Any], spoken: _Spoken | None,
                  include_usage: bool, ctx: ServerContext) -> AsyncIterator[bytes]:
    audio_id = "audio_" + secrets.token_hex(12)
    pcm: PcmStream | None = None
    yield _chunk(meta, {"role": "assistant", "content": ""})
    finish = "stop"
    usage: Usage | None = None
    tool_index = 0
    said = ""  # the transcript so far: each sentence's delta continues it
    async for event in events:
        if isinstance(event, ReplyText) and spoken is None:
            yield _chunk(meta, {"content": event.text})
        elif isinstance(event, ReplyAudio):
            pcm = pcm or PcmStream(event.chunk.sample_rate)
            data = base64.b64encode(pcm.push(event.chunk.samples)).decode()
            piece = continuation(said, event.sentence)
            said += piece
            yield _chunk(meta, {"audio": {"id": audio_id, "data": data, "transcript": piece}})
        elif isinstance(event, ToolCalled):
            yield _chunk(meta, {"tool_calls": [_tool_call_json(event.call, tool_index)]})
            tool_index += 1
        elif isinstance(event, TurnDone):
            finish = _finish(event)
            usage = event.usage
    if spoken is not None:
        audio: dict[str, Any] = {"id": audio_id, "expires_at": int(time.time()) + ctx.settings.audio_expiry_s}
        tail = pcm.finish() if pcm is not None else b""
        if tail:
            audio["data"] = base64.b64encode(tail).decode()
        yield _chunk(meta, {"audio": audio})
    yield _chunk(meta, {}, finish)
    if include_usage and usage is not None:  # (an engine that does not count its tokens sends none)
        yield sse({**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(usage)})
    yield sse("[DONE]")
