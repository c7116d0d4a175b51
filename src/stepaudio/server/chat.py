"""POST /v1/chat/completions: text and spoken turns in; text, tool calls and (with `modalities`) audio out.

Spoken user turns without text are transcribed first (where the engine has a transcriber and its chat model
does not declare `accepts_audio = True`), and keep their audio for engines that listen directly. Audio output
speaks the reply with the requested voice: whole and base64-encoded in `message.audio`, or, when streaming,
sentence by sentence as `delta.audio` pcm16 chunks.
Capabilities are always taken in the order transcriber, chat, synthesizer, so requests cannot deadlock.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from stepaudio.engines.base import CancelToken, ChatDelta, Synthesizer, ToolCall, Voice
from stepaudio.server.audio_out import check_format, encode, pcm_bytes
from stepaudio.server.chat_convert import ConvertedChat, convert_request
from stepaudio.server.context import Context, ServerContext
from stepaudio.server.errors import ApiError
from stepaudio.server.schemas import ChatRequest
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

router = APIRouter(tags=["chat"])
_SENTENCE_END = re.compile(r"[.!?;](?=\s)|[。！？；\n]")


@dataclasses.dataclass(frozen=True)
class _Spoken:
    synthesizer: Synthesizer
    voice: Voice | str | None
    fmt: str


@router.post("/v1/chat/completions", responses={200: {"content": {"application/json": {},
                                                                  "text/event-stream": {}}}})
async def create_chat_completion(body: ChatRequest, ctx: Context) -> Response:
    chat = ctx.chat()
    spoken = await _spoken(body, ctx)
    converted = await run_blocking(convert_request, body, ctx.settings)
    converted = await _transcribe_spoken_turns(converted, ctx)
    cancel = CancelToken()
    leases: list[Lease] = []
    try:
        leases.append(await ctx.gate.acquire("chat"))
        if spoken is not None:
            leases.append(await ctx.gate.acquire("synthesizer"))
        deltas = await primed(iterate_blocking(
            lambda: chat.respond(converted.messages, converted.tools, converted.options, cancel), cancel))
        meta = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = with_error_event(_stream(deltas, meta, spoken, include_usage, ctx, cancel))
            response = ClosingStreamingResponse(events, lease=_Both(list(leases)), media_type="text/event-stream",
                                                headers=SSE_HEADERS)
            leases.clear()  # the response releases them when the stream ends
            return response
        return JSONResponse(await _whole(deltas, meta, spoken, ctx, cancel))
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


async def _transcribe_spoken_turns(converted: ConvertedChat, ctx: ServerContext) -> ConvertedChat:
    transcriber = ctx.engine.transcriber
    pending = [i for i, m in enumerate(converted.messages) if m.audio is not None and not m.content.strip()]
    listens = bool(getattr(ctx.engine.chat, "accepts_audio", False))  # e.g. Step-Audio chat hears audio itself
    if not pending or transcriber is None or listens or not ctx.settings.transcribe_chat_audio:
        return converted
    messages = list(converted.messages)
    async with ctx.gate.hold("transcriber"):
        for index in pending:
            text = (await run_blocking(transcriber.transcribe, messages[index].audio, None)).text
            messages[index] = dataclasses.replace(messages[index], content=text.strip())
    return dataclasses.replace(converted, messages=messages)


def _tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}}
    if index is not None:
        out["index"] = index
    return out


async def _synthesize(spoken: _Spoken, text: str, cancel: CancelToken) -> np.ndarray:
    def run() -> np.ndarray:
        rate = spoken.synthesizer.sample_rate
        pieces = [np.asarray(c.samples, dtype=np.float32).reshape(-1)
                  for c in spoken.synthesizer.synthesize(text, spoken.voice, None, cancel)]
        return np.concatenate(pieces) if pieces else np.zeros(int(rate * 0.05), dtype=np.float32)

    return await run_blocking(run)


async def _whole(deltas: AsyncIterator[ChatDelta], meta: dict[str, Any], spoken: _Spoken | None,
                 ctx: ServerContext, cancel: CancelToken) -> dict[str, Any]:
    text: list[str] = []
    calls: list[ToolCall] = []
    finish = "stop"
    async for delta in deltas:
        text.append(delta.text)
        calls.extend(delta.tool_calls)
        finish = delta.finish_reason or finish
    reply = "".join(text)
    message: dict[str, Any] = {"role": "assistant", "content": reply}
    if calls:
        message["tool_calls"] = [_tool_call_json(c) for c in calls]
        finish = "tool_calls"
    if spoken is not None and reply.strip():
        samples = await _synthesize(spoken, reply, cancel)
        data = await run_blocking(encode, samples, spoken.synthesizer.sample_rate, spoken.fmt)
        message["audio"] = {"id": "audio_" + secrets.token_hex(12), "data": base64.b64encode(data).decode(),
                            "expires_at": int(time.time()) + ctx.settings.audio_expiry_s, "transcript": reply}
        message["content"] = None
    return {**meta, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}


def _chunk(meta: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse({**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})


async def _stream(deltas: AsyncIterator[ChatDelta], meta: dict[str, Any], spoken: _Spoken | None,
                  include_usage: bool, ctx: ServerContext, cancel: CancelToken) -> AsyncIterator[bytes]:
    audio_id = "audio_" + secrets.token_hex(12)
    yield _chunk(meta, {"role": "assistant", "content": ""})
    finish = "stop"
    pending = ""
    tool_index = 0
    async for delta in deltas:
        if delta.text:
            if spoken is None:
                yield _chunk(meta, {"content": delta.text})
            else:
                pending += delta.text
                ready, pending = _split_ready(pending)
                if ready:
                    yield await _audio_delta(meta, audio_id, spoken, ready, cancel)
        if delta.tool_calls:
            calls = [_tool_call_json(c, tool_index + i) for i, c in enumerate(delta.tool_calls)]
            tool_index += len(calls)
            yield _chunk(meta, {"tool_calls": calls})
            finish = "tool_calls"
        if delta.finish_reason and finish != "tool_calls":
            finish = delta.finish_reason
    if spoken is not None:
        if pending.strip():
            yield await _audio_delta(meta, audio_id, spoken, pending, cancel)
        yield _chunk(meta, {"audio": {"id": audio_id, "expires_at": int(time.time()) + ctx.settings.audio_expiry_s}})
    yield _chunk(meta, {}, finish)
    if include_usage:
        yield sse({**meta, "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
    yield sse("[DONE]")


async def _audio_delta(meta: dict[str, Any], audio_id: str, spoken: _Spoken, text: str,
                       cancel: CancelToken) -> bytes:
    samples = await _synthesize(spoken, text, cancel) if text.strip() else np.zeros(0, dtype=np.float32)
    data = base64.b64encode(pcm_bytes(samples)).decode()
    return _chunk(meta, {"audio": {"id": audio_id, "data": data, "transcript": text}})


def _split_ready(text: str) -> tuple[str, str]:
    """Complete sentences at the front of `text`, and the unfinished rest."""
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return "", text
    cut = ends[-1].end()
    return text[:cut], text[cut:]

