"""The OpenAI-compatible REST surface: speech, transcriptions, chat, voices, speech edits, models, and health."""

from __future__ import annotations

import time

from fastapi import APIRouter, Path

from stepaudio.engines.editx.editor import Editor
from stepaudio.server import chat, edits, speech, transcription, voice_design, voices
from stepaudio.server.context import Context
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.schemas import Health, ModelCard, ModelList

models_router = APIRouter(tags=["models"])
_STARTED = int(time.time())


@models_router.get("/v1/models", response_model=ModelList)
async def list_models(ctx: Context) -> ModelList:
    """One model id per capability of the engine; requests accept any model name and use the engine."""
    return ModelList(data=[ModelCard(id=name, created=_STARTED) for name in ctx.model_ids()])


@models_router.get("/v1/models/{model_id}", response_model=ModelCard, responses=error_responses(404))
async def get_model(ctx: Context, model_id: str = Path(max_length=256)) -> ModelCard:
    if model_id not in ctx.model_ids():
        raise ApiError(404, f"the model {model_id!r} does not exist; see GET /v1/models", code="model_not_found",
                       param="model")
    return ModelCard(id=model_id, created=_STARTED)


@models_router.get("/health", response_model=Health, tags=["health"])
async def health(ctx: Context) -> Health:
    engine = ctx.engine
    capabilities = {"transcription": engine.transcriber is not None, "chat": engine.chat is not None,
                    "speech": engine.synthesizer is not None,
                    "voice_cloning": engine.synthesizer is not None and engine.abilities.clones_voices,
                    "speech_editing": engine.abilities.edits_speech and isinstance(engine.synthesizer, Editor),
                    "audio_input": engine.chat is not None and engine.abilities.hears_audio,
                    "tools": engine.chat is not None and engine.abilities.tool_calls}
    return Health(engine=engine.name, capabilities=capabilities, voices=ctx.store.count())


def rest_router() -> APIRouter:
    router = APIRouter()
    for part in (models_router, speech.router, transcription.router, chat.router, voices.router, voice_design.router,
                 edits.router):
        router.include_router(part)
    return router
