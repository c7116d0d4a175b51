"""What every route needs (engine, settings, store, capability gate), and the lookups they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import ChatModel, Engine, Synthesizer, Transcriber, Voice
from stepaudio.server.errors import ApiError
from stepaudio.server.schemas import VoiceRef
from stepaudio.server.settings import ServerSettings
from stepaudio.server.streaming import CapabilityGate, run_blocking
from stepaudio.store.voices import VoiceStore

# Voice names OpenAI clients send by habit; they select the engine's default voice.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                           "shimmer", "verse", "marin", "cedar"})


@dataclass(frozen=True)
class ServerContext:
    engine: Engine
    settings: ServerSettings
    store: VoiceStore
    gate: CapabilityGate

    def model_ids(self) -> list[str]:
        name, engine = self.engine.name, self.engine
        present = {"chat": engine.chat, "tts": engine.synthesizer, "asr": engine.transcriber}
        return [f"{name}-{kind}" for kind, capability in present.items() if capability is not None]

    def synthesizer(self) -> Synthesizer:
        if self.engine.synthesizer is None:
            raise _missing(self.engine.name, "speech synthesis")
        return self.engine.synthesizer

    def transcriber(self) -> Transcriber:
        if self.engine.transcriber is None:
            raise _missing(self.engine.name, "transcription")
        return self.engine.transcriber

    def chat(self) -> ChatModel:
        if self.engine.chat is None:
            raise _missing(self.engine.name, "chat")
        return self.engine.chat

    def require_cloning(self) -> None:
        """Refuse a cloned voice up front where the engine cannot speak in one."""
        if self.engine.synthesizer is None or not self.engine.abilities.clones_voices:
            raise ApiError(400, f"the {self.engine.name} engine cannot clone voices: use one of its built-in "
                           "voices (GET /v1/voices), or serve an engine that clones (e.g. --engine step)",
                           code="voice_cloning_unsupported", param="voice")

    def require_design(self) -> None:
        """Refuse a designed (blended) voice where the engine cannot speak one."""
        if self.engine.synthesizer is None or not self.engine.abilities.designs_voices:
            raise ApiError(400, f"the {self.engine.name} engine cannot speak designed voices (blends of built-in "
                           "voices): serve --engine lite", code="voice_design_unsupported", param="voice")

    async def resolve_voice(self, voice: str | VoiceRef | None) -> Voice | str | None:
        """A registered voice (id or name), a built-in voice of the engine, or an OpenAI voice name.
        Lookups run in a worker thread: listing an engine's voices may load its model."""
        if voice is None:
            return self.settings.default_voice
        key = voice.id if isinstance(voice, VoiceRef) else voice
        stored = await run_blocking(self.store.find, key)
        if stored is not None:
            if stored.is_blend:
                self.require_design()
            else:
                self.require_cloning()
            return stored.as_voice()
        builtins = await run_blocking(self.synthesizer().voices)
        if key in builtins:
            return key
        if key.lower() in OPENAI_VOICES:
            return self.settings.default_voice
        shown = ", ".join(builtins[:20]) or "(none)"
        raise ApiError(404, f"unknown voice {key!r}: built-in voices are {shown}; registered voices are listed "
                       "by GET /v1/voices (create one with POST /v1/voices)", code="voice_not_found", param="voice")

    async def decode_audio(self, data: bytes, max_seconds: float, sample_rate: int | None = None) -> Audio:
        """Decode uploaded bytes (already size-capped) in a worker thread, with the duration cap."""
        return await run_blocking(
            lambda: load_audio(data, sample_rate=sample_rate, max_seconds=max_seconds,
                               max_bytes=self.settings.max_upload_bytes)
        )


def get_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


def _missing(engine: str, what: str) -> ApiError:
    return ApiError(404, f"the {engine!r} engine does not provide {what}", code="model_not_found", param="model")


Context = Annotated[ServerContext, Depends(get_context)]
