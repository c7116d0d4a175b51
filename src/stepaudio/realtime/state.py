"""The controller's state: phases, configuration, pending user items and the response in progress.

All frozen: a transition builds a new state, so any state can be kept, compared and replayed in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from stepaudio.engines.base import ToolCall
from stepaudio.realtime import events as ev
from stepaudio.realtime.playback import Playback
from stepaudio.realtime.speculative import Speculation, SpeculationMetrics
from stepaudio.realtime.turns import TurnDetectionConfig, TurnState


class Phase(str, Enum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    RESPONDING = "responding"
    SPEAKING = "speaking"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ControllerConfig:
    turn_detection: TurnDetectionConfig | None = field(default_factory=TurnDetectionConfig)
    modalities: tuple[str, ...] = ("audio",)
    # user audio waits for its transcript before it enters the context; False (an engine that hears audio,
    # no transcript asked for): it enters as audio at once
    transcribe_audio: bool = True

    @property
    def audio_out(self) -> bool:
        return "audio" in self.modalities


@dataclass(frozen=True)
class UserItem:
    """A user item not yet in the context: committed, or the speculative item of the turn in progress."""

    item_id: str
    kind: Literal["audio", "text", "tool"]
    start_ms: int = 0
    end_ms: int = 0
    committed: bool = True
    text: str | None = None
    requested_end_ms: int | None = None  # the span end the worker was asked to transcribe
    error: str | None = None  # why the transcription failed
    call_id: str | None = None  # a tool result answers this call


@dataclass(frozen=True)
class Response:
    response_id: str
    item_id: str
    user_item_ids: tuple[str, ...]
    speculation: Speculation | None = None  # set while uncommitted, and kept for metrics
    speculative: bool = False
    held: tuple[ev.GenerationText | ev.GenerationAudio | ev.GenerationToolCall | ev.GenerationDone, ...] = ()
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    audio_out: bool = True
    playback: Playback = field(default_factory=Playback)
    generation_done: bool = False
    in_context: bool = False
    context_mark: int | None = None  # context edits count when cancelled: unchanged, the turn may still go in


@dataclass(frozen=True)
class ControllerState:
    config: ControllerConfig = field(default_factory=ControllerConfig)
    audio_ms: int = 0
    buffer_start_ms: int = 0
    turns: TurnState = field(default_factory=TurnState)
    speech_item_id: str | None = None
    interrupted: bool = False
    items: tuple[UserItem, ...] = ()
    response: Response | None = None
    last_response: Response | None = None
    last_item_id: str | None = None
    next_id: int = 1
    idle_since: float | None = None
    interruptions: int = 0
    context_edits: int = 0
    metrics: SpeculationMetrics = field(default_factory=SpeculationMetrics)

    @property
    def phase(self) -> Phase:
        response = self.response
        if response is not None and not response.speculative:
            return Phase.SPEAKING if response.playback.sent_ms > 0 else Phase.RESPONDING
        if response is not None:
            return Phase.RESPONDING
        if self.turns.in_speech:
            return Phase.INTERRUPTED if self.interrupted else Phase.USER_SPEAKING
        return Phase.LISTENING
