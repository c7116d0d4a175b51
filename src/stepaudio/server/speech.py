"""POST /v1/audio/speech: text to speech, as a whole file, a chunked audio stream, or server-sent events."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response

from stepaudio.audio.io import resample, to_pcm16
from stepaudio.engines.base import AudioChunk, CancelToken
from stepaudio.server.audio_out import (
    MEDIA_TYPES,
    PCM_RATE,
    STREAMABLE,
    PcmStream,
    check_format,
    encode,
    streaming_wav_header,
)
from stepaudio.server.context import Context
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.instructions import speech_instructions
from stepaudio.server.schemas import SpeechRequest, sse_content
from stepaudio.server.streaming import (
    SSE_HEADERS,
    ClosingStreamingResponse,
    iterate_blocking,
    primed,
    run_blocking,
    sse,
    with_error_event,
)

router = APIRouter(tags=["audio"])

_AUDIO_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {media: {} for media in sorted(set(MEDIA_TYPES.values()))} | sse_content(),
          "description": "the audio, or server-sent `speech.audio.delta` / `speech.audio.done` events"},
    **error_responses(400, 404, 413, 503),
}


@router.post("/v1/audio/speech", response_class=Response, responses=_AUDIO_RESPONSES)
async def create_speech(body: SpeechRequest, ctx: Context) -> Response:
    """Synthesise `input`. Extensions: a registered voice id or name as `voice`, instruction options."""
    if len(body.input) > ctx.settings.max_input_chars:
        raise ApiError(400, f"input has {len(body.input)} characters; at most {ctx.settings.max_input_chars} "
                       "are allowed", code="input_too_long", param="input")
    fmt = check_format(body.response_format)
    if body.stream_format == "sse" and fmt not in STREAMABLE:
        raise ApiError(400, "stream_format 'sse' needs response_format 'pcm' or 'wav'",
                       code="unsupported_format", param="stream_format")
    synthesizer = ctx.synthesizer()
    voice = await ctx.resolve_voice(body.voice)
    instructions = speech_instructions(body)
    rate = int(synthesizer.sample_rate)
    cancel = CancelToken()
    lease = await ctx.gate.acquire("synthesizer")
    try:
        chunks = await primed(iterate_blocking(
            lambda: synthesizer.synthesize(body.input, voice, instructions, cancel), cancel))
        if body.stream_format == "audio" and fmt not in STREAMABLE:
            samples = [piece async for piece in _samples(chunks, rate)]
            lease.release()
            audio = np.concatenate(samples) if samples else np.zeros(rate // 100, dtype=np.float32)  # a valid file
            data = await run_blocking(encode, audio, rate, fmt)
            return Response(data, media_type=MEDIA_TYPES[fmt])
    except BaseException:
        lease.release()
        raise
    headers = {"X-Sample-Rate": str(PCM_RATE if fmt == "pcm" else rate)}
    if body.stream_format == "sse":
        return ClosingStreamingResponse(with_error_event(_events(chunks, rate, fmt)), lease=lease,
                                        media_type="text/event-stream", headers=SSE_HEADERS | headers)
    return ClosingStreamingResponse(_audio(chunks, rate, fmt), lease=lease, media_type=MEDIA_TYPES[fmt],
                                    headers=headers)


async def _samples(chunks: AsyncIterator[AudioChunk], rate: int) -> AsyncIterator[np.ndarray]:
    """Chunk samples at the synthesizer's declared rate (resampled if a chunk differs)."""
    async for chunk in chunks:
        samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
        if chunk.sample_rate != rate:
            samples = resample(samples, chunk.sample_rate, rate)
        if samples.size:
            yield samples


async def _pieces(chunks: AsyncIterator[AudioChunk], rate: int, fmt: str) -> AsyncIterator[tuple[bytes, int]]:
    """The streamed body in pieces, each with the number of synthesizer samples it holds: a wav header and 16-bit
    samples at `rate`, or raw pcm at `PCM_RATE` (a piece may be empty while the resampler fills)."""
    if fmt == "wav":
        yield streaming_wav_header(rate), 0
        async for samples in _samples(chunks, rate):
            yield to_pcm16(samples), samples.size
        return
    pcm = PcmStream(rate)
    async for samples in _samples(chunks, rate):
        yield pcm.push(samples), samples.size
    yield pcm.finish(), 0


async def _audio(chunks: AsyncIterator[AudioChunk], rate: int, fmt: str) -> AsyncIterator[bytes]:
    async for data, _ in _pieces(chunks, rate, fmt):
        if data:
            yield data


async def _events(chunks: AsyncIterator[AudioChunk], rate: int, fmt: str) -> AsyncIterator[bytes]:
    total = 0
    prefix = b""
    async for data, size in _pieces(chunks, rate, fmt):
        total += size
        if size == 0 and fmt == "wav":  # the header travels with the first samples
            prefix = data
        elif prefix + data:
            yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(prefix + data).decode()})
            prefix = b""
    if prefix:
        yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(prefix).decode()})
    yield sse({"type": "speech.audio.done", "seconds": round(total / rate, 3),
               "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})
