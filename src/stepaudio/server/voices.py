"""/v1/voices: register a cloned voice from a wav and its transcript, list, show and delete voices.

Also reachable as /v1/audio/voices with the OpenAI client's field names (`audio_sample`; `consent` is
accepted and ignored). Without a transcript the engine's transcriber writes one, where it has one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile

from stepaudio.audio.io import load_audio
from stepaudio.server.context import Context
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.schemas import VoiceCard, VoiceDeleted, VoiceList
from stepaudio.server.streaming import run_blocking
from stepaudio.server.transcription import read_upload
from stepaudio.store.voices import MAX_NAME_CHARS, MAX_TRANSCRIPT_CHARS, StoredVoice

router = APIRouter(tags=["voices"])
VoiceKey = Annotated[str, Path(min_length=1, max_length=256)]


def card(voice: StoredVoice) -> VoiceCard:
    return VoiceCard(id=voice.id, name=voice.name, created_at=voice.created_at, transcript=voice.transcript,
                     duration=round(voice.duration, 3), type="blend" if voice.is_blend else "audio_sample")


@router.post("/v1/voices", response_model=VoiceCard, status_code=201,
             responses=error_responses(400, 409, 413, 503))
@router.post("/v1/audio/voices", response_model=VoiceCard, status_code=201, include_in_schema=False)
async def create_voice(
    ctx: Context,
    name: Annotated[str, Form(min_length=1, max_length=MAX_NAME_CHARS)],
    file: Annotated[UploadFile | None, File(description="prompt audio, 0.5-30 s")] = None,
    audio_sample: Annotated[UploadFile | None, File(description="alias of file (OpenAI client)")] = None,
    transcript: Annotated[str | None, Form(max_length=MAX_TRANSCRIPT_CHARS)] = None,
    consent: Annotated[str | None, Form(max_length=256)] = None,
) -> VoiceCard:
    ctx.require_cloning()  # before reading anything: a voice this engine cannot use is not stored
    upload = file or audio_sample
    if upload is None:
        raise ApiError(400, "send the prompt audio as the multipart file 'file' (or 'audio_sample')",
                       code="missing_file", param="file")
    store = ctx.store
    data = await read_upload(upload, min(ctx.settings.max_upload_bytes, store.max_bytes))
    audio = await run_blocking(lambda: load_audio(data, max_seconds=store.max_seconds, max_bytes=store.max_bytes))
    text = (transcript or "").strip()
    if not text:
        if ctx.engine.transcriber is None:
            raise ApiError(400, "a cloned voice needs 'transcript', the exact words of its prompt audio",
                           code="missing_transcript", param="transcript")
        transcriber = ctx.engine.transcriber
        async with ctx.gate.hold("transcriber"):
            text = (await run_blocking(transcriber.transcribe, audio, None)).text.strip()
        if not text:
            raise ApiError(400, "no speech was recognised in the prompt audio; send 'transcript'",
                           code="missing_transcript", param="transcript")
    stored = await run_blocking(store.add, name, audio, text)
    return card(stored)


@router.get("/v1/voices", response_model=VoiceList, responses=error_responses(503))
@router.get("/v1/audio/voices", response_model=VoiceList, include_in_schema=False)
async def list_voices(ctx: Context) -> VoiceList:
    """Registered voices, then the engine's built-in ones (`type` 'builtin')."""
    cards = [card(v) for v in await run_blocking(ctx.store.list)]
    if ctx.engine.synthesizer is not None:
        builtins = await run_blocking(ctx.engine.synthesizer.voices)
        cards += [VoiceCard(id=name, name=name, type="builtin", created_at=0) for name in builtins]
    return VoiceList(data=cards)


@router.get("/v1/voices/{voice_id}", response_model=VoiceCard, responses=error_responses(404))
async def get_voice(voice_id: VoiceKey, ctx: Context) -> VoiceCard:
    return card(await run_blocking(ctx.store.get, voice_id))


@router.delete("/v1/voices/{voice_id}", response_model=VoiceDeleted, responses=error_responses(404))
@router.delete("/v1/audio/voices/{voice_id}", response_model=VoiceDeleted, include_in_schema=False)
async def delete_voice(voice_id: VoiceKey, ctx: Context) -> VoiceDeleted:
    deleted = await run_blocking(ctx.store.delete, voice_id)
    return VoiceDeleted(id=deleted.id)
