"""session.update in, session objects out: the GA session fields mapped onto `SessionConfig` changes.

What the client named (voice name, speed, transcription model, token limit) is kept in a small `SessionView`
so that session.created/updated echo it back as the GA session object, while the `SessionConfig` holds the
resolved values (a `Voice`, `SpeechInstructions`, `GenerationOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from stepaudio.engines.base import GenerationOptions, SpeechInstructions, ToolSpec
from stepaudio.realtime.session import SessionConfig
from stepaudio.realtime.turns import TurnDetectionConfig
from stepaudio.server.context import ServerContext
from stepaudio.server.realtime_schemas import ServerVad, SessionFields
from stepaudio.server.realtime_wire import AUDIO_FORMAT


@dataclass(frozen=True)
class SessionView:
    """The client's own words for settings whose resolved value differs (echoed in session objects)."""

    session_id: str
    voice: str
    max_output_tokens: int | Literal["inf"]
    speed: float = 1.0
    transcription: dict[str, Any] | None = None

    def render(self, config: SessionConfig) -> dict[str, Any]:
        detection = config.turn_detection
        turn = None if detection is None else {
            "type": "server_vad", "threshold": detection.threshold, "prefix_padding_ms": detection.prefix_padding_ms,
            "silence_duration_ms": detection.silence_duration_ms, "create_response": detection.create_response,
            "interrupt_response": detection.interrupt_response, "idle_timeout_ms": detection.idle_timeout_ms}
        tools = [{"type": "function", "name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                 for t in config.tools]
        return {
            "type": "realtime", "object": "realtime.session", "id": self.session_id, "model": "stepaudio-realtime",
            "output_modalities": list(config.modalities), "instructions": config.system_prompt,
            "audio": {
                "input": {"format": AUDIO_FORMAT, "transcription": self.transcription, "noise_reduction": None,
                          "turn_detection": turn},
                "output": {"format": AUDIO_FORMAT, "voice": self.voice, "speed": self.speed},
            },
            "tools": tools, "tool_choice": "auto", "max_output_tokens": self.max_output_tokens,
            "tracing": None, "truncation": "auto", "prompt": None, "include": None,
        }


async def session_changes(fields: SessionFields, view: SessionView, context: ServerContext
                          ) -> tuple[dict[str, Any], SessionView]:
    """The `RealtimeSession.update` keyword changes and the new view; raises `ApiError` for an unknown voice."""
    changes: dict[str, Any] = {}
    if fields.instructions is not None:
        changes["system_prompt"] = fields.instructions
    if fields.output_modalities is not None:
        changes["modalities"] = tuple(fields.output_modalities)
    if fields.tools is not None:
        changes["tools"] = tuple(ToolSpec(t.name, t.description, t.parameters) for t in fields.tools)
    if fields.max_output_tokens is not None:
        limit = context.settings.max_new_tokens if fields.max_output_tokens == "inf" else fields.max_output_tokens
        changes["generation"] = GenerationOptions(max_new_tokens=min(limit, context.settings.max_new_tokens))
        view = replace(view, max_output_tokens=fields.max_output_tokens)
    audio = fields.audio
    if audio is not None and audio.input is not None:
        if "turn_detection" in audio.input.model_fields_set:
            changes["turn_detection"] = _turn_detection(audio.input.turn_detection)
        if "transcription" in audio.input.model_fields_set:  # null: no transcripts where the engine hears audio
            wanted = audio.input.transcription
            changes["transcribe_input"] = wanted is not None
            view = replace(view, transcription=wanted.model_dump(exclude_none=True) if wanted else None)
            if wanted is not None:
                changes["language"] = wanted.language
    if audio is not None and audio.output is not None:
        if audio.output.voice is not None:
            changes["voice"] = await context.resolve_voice(audio.output.voice)
            view = replace(view, voice=audio.output.voice)
        if audio.output.speed is not None:
            speed = audio.output.speed
            changes["speech_instructions"] = SpeechInstructions(speed=speed) if speed != 1.0 else None
            view = replace(view, speed=speed)
    return changes, view


def _turn_detection(vad: ServerVad | None) -> TurnDetectionConfig | None:
    if vad is None:
        return None
    return TurnDetectionConfig(threshold=vad.threshold, prefix_padding_ms=vad.prefix_padding_ms,
                               silence_duration_ms=vad.silence_duration_ms, create_response=vad.create_response,
                               interrupt_response=vad.interrupt_response, idle_timeout_ms=vad.idle_timeout_ms)


def initial_config(context: ServerContext, max_buffer_seconds: float) -> SessionConfig:
    # as the OpenAI API: no input transcripts until the client asks (engines that read make them anyway)
    return SessionConfig(voice=context.settings.default_voice, max_buffer_seconds=max_buffer_seconds,
                         transcribe_input=False,
                         generation=GenerationOptions(max_new_tokens=min(512, context.settings.max_new_tokens)))
