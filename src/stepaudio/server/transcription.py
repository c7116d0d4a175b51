"""POST /v1/audio/transcriptions: speech to text as json, text, verbose_json, srt or vtt, or streamed events.

The upload is read with a size cap before it is decoded, and the decoded audio is checked against the
duration cap. `timestamp_granularities[]=word` adds OpenAI's `words` to verbose_json where the transcriber
can time words (`WordTranscriber`); elsewhere it is refused with a 400 before any decoding. Streaming sends
the transcript segment by segment once it is known (the transcribers here work on whole utterances), in the
OpenAI `transcript.text.delta` / `transcript.text.done` event shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from stepaudio.engines.base import Segment, Transcript, WordTranscriber
from stepaudio.server.context import Context
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.schemas import Transcription, TranscriptionVerbose, sse_content
from stepaudio.server.streaming import SSE_HEADERS, run_blocking, sse

router = APIRouter(tags=["audio"])
TranscriptFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
Granularity = Literal["word", "segment"]


async def read_upload(file: UploadFile, limit: int, field: str = "file") -> bytes:
    """At most `limit` bytes of an uploaded file; more is a 413, nothing is a 400."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the uploaded {field} is larger than the {limit} bytes allowed",
                       code="file_too_large", param=field)
    if not data:
        raise ApiError(400, f"the uploaded {field} is empty", code="invalid_audio", param=field)
    return data


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "json or verbose_json, text, srt or vtt, or `transcript.text.*` server-sent events",
          "model": Transcription | TranscriptionVerbose,
          "content": {"text/plain": {"schema": {"type": "string"}},
                      **sse_content()}},
    **error_responses(400, 404, 413, 503),
}


@router.post("/v1/audio/transcriptions", responses=_RESPONSES)
async def create_transcription(
    ctx: Context,
    file: Annotated[UploadFile, File(description="audio: wav, flac, mp3, ogg/opus")],
    model: Annotated[str, Form(max_length=256)] = "whisper-1",
    language: Annotated[str | None, Form(max_length=16, pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{2,8})?$")] = None,
    prompt: Annotated[str | None, Form(max_length=4096)] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    stream: Annotated[bool, Form()] = False,
    timestamp_granularities: Annotated[list[Granularity] | None, Form(
        alias="timestamp_granularities[]", max_length=2,
        description="`word` (needs `verbose_json` and a transcriber that times words) and/or `segment`")] = None,
) -> Response:
    transcriber = ctx.transcriber()
    granularities = set(timestamp_granularities or ())
    words = "word" in granularities
    if words and response_format != "verbose_json":
        raise ApiError(400, "timestamp_granularities 'word' needs response_format 'verbose_json'",
                       code="invalid_value", param="timestamp_granularities")
    if words and not isinstance(transcriber, WordTranscriber):
        raise ApiError(400, f"the {ctx.engine.name!r} engine's transcriber cannot time words; leave out "
                       "timestamp_granularities 'word' (segment timestamps work), or serve the lite engine",
                       code="unsupported_value", param="timestamp_granularities")
    data = await read_upload(file, ctx.settings.max_upload_bytes)
    audio = await ctx.decode_audio(data, ctx.settings.max_transcription_seconds)
    run = transcriber.transcribe_words if isinstance(transcriber, WordTranscriber) and words else \
        transcriber.transcribe
    async with ctx.gate.hold("transcriber"):
        result = await run_blocking(run, audio, language.lower() if language else None)
    duration = result.duration or audio.duration
    if stream:
        return StreamingResponse(_events(result), media_type="text/event-stream", headers=SSE_HEADERS)
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(result, response_format, duration))
    if response_format == "verbose_json":
        body = verbose(result, duration)
        if words:
            body["words"] = [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words]
            if granularities == {"word"}:  # as OpenAI: asked for words only, segments are left out
                del body["segments"]
        return JSONResponse(body)
    return JSONResponse({"text": result.text, "usage": {"type": "duration", "seconds": round(duration, 3)}})


def _segments(result: Transcript, duration: float) -> tuple[Segment, ...]:
    return result.segments or ((Segment(0.0, duration, result.text),) if result.text else ())


def verbose(result: Transcript, duration: float) -> dict[str, Any]:
    segments = [
        {"id": i, "seek": 0, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "tokens": [],
         "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        for i, s in enumerate(_segments(result, duration))
    ]
    return {"task": "transcribe", "language": result.language or "unknown", "duration": round(duration, 3),
            "text": result.text, "segments": segments, "usage": {"type": "duration", "seconds": round(duration, 3)}}


def _stamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(result: Transcript, kind: str, duration: float) -> str:
    separator = "," if kind == "srt" else "."
    blocks = []
    for i, segment in enumerate(_segments(result, duration), start=1):
        timing = f"{_stamp(segment.start, separator)} --> {_stamp(segment.end, separator)}"
        text = segment.text.strip()
        blocks.append(f"{i}\n{timing}\n{text}\n" if kind == "srt" else f"{timing}\n{text}\n")
    body = "\n".join(blocks)
    return body if kind == "srt" else "WEBVTT\n\n" + body


async def _events(result: Transcript) -> AsyncIterator[bytes]:
    """Deltas whose concatenation is the final text: one per segment when the segments add up to it."""
    pieces = [segment.text for segment in result.segments]
    if not pieces or "".join(pieces).strip() != result.text:
        pieces = [result.text]
    else:
        pieces[0] = pieces[0].lstrip()
        pieces[-1] = pieces[-1].rstrip()
    for piece in pieces:
        if piece:
            yield sse({"type": "transcript.text.delta", "delta": piece})
    yield sse({"type": "transcript.text.done", "text": result.text})
